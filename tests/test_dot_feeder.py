"""The DOT feeder's hazards (``hw.dot_feeder``), checked by SymbiYosys on the feeder alone.

The claim: every beat the feeder hands the engine was read when the activation memory held
what program order says it holds. Versions stand for data: per hazard region, the harness
counts the REQ results issued and those written (landed). A DOT taken when ``issued[r]``
writes had been issued must read region ``r`` after exactly that many have landed: fewer is
a read before a write it follows (RAW), more is a read after a write that follows it (WAR).
The read port is not transparent, so a word read in cycle t shows the writes landed before
t. The environment is any the core can make: DOTs with 1..words beats at aligned addresses,
REQ results landing in any order and after any delay (at most ``writes_in_flight`` in
flight), a REQ never issued while the feeder blocks it nor with a DOT, any engine stalls.
Bounded: every input sequence of ``DEPTH`` cycles from reset (several DOTs and REQs
interleaved with stalls), on a feeder of 4 one-lane words tracked per word and per region of
two; and two mutants (no first-beat wait; no blocking of REQs) must fail. (k-induction does
not close without invariants tying the queue to the harness's versions; minutes a
configuration, so the second tier runs it.)

On a convolution machine (``conv=True``) the DOTs are also window DOTs (of one of two
windows, ``WINDOWS``, fixed for a run: symbolic ones left the solver hours; at any output
pixel over it and its borders and any base whose kept taps are all in the memory:
``dot_fault`` low when taken; the stream holds a DOT's payload until it is taken) and DOTs
into the lane banks (their read-out any), and DOTs with no kept tap are dropped, with
each ``window_wait`` (0, 1, 2: a window DOT taken that many cycles after it is first
offered); a third mutant (a window DOT's regions up to its last tap's word, not its
highest) must fail. About 4 and 1 minutes for the first two configurations, 8 for each
window one: the second tier proves the cores' window wait (2), ``make formal`` all three."""

import pytest
from amaranth.hdl import Array, Assert, Assume, Cat, Elaboratable, Module, Signal
from amaranth.lib import data

from sparq.hw.dot_feeder import DotFeeder, WindowTaps, dot_layout
from tests.sby import run_sby

pytestmark = [pytest.mark.formal, pytest.mark.long]

DEPTH = 10
BITS = 3  # version counters, modulo 8: at most 3 writes in flight, 3 DOTs


class _HazardHarness(Elaboratable):
    def __init__(self, *, window=None, **params):
        self.dut = DotFeeder(**params)
        self.p = self.dut.params
        self.conv, self.window = self.p["conv"], window
        if self.conv:  # the DOTs' fields but the window (``window``, SETG's: constants)
            layout = dot_layout(self.p["prog_depth"], conv=True)
            self.fields = Signal(data.StructLayout({k: f.shape for k, f in layout
                                                    if k != "geom"}))

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        p = self.p
        words = p["x_depth"] // p["lanes"]
        g_bits = p["hazard_words"].bit_length() - 1
        low = (p["lanes"] - 1).bit_length()
        regions = words >> g_bits
        issued = Array(Signal(BITS, name=f"issued{r}") for r in range(regions))
        landed = Array(Signal(BITS, name=f"landed{r}") for r in range(regions))
        inflight = Signal(range(p["writes_in_flight"] + 2))
        wr_r, land_r = dut.wr_addr >> (low + g_bits), dut.wr_land_addr >> (low + g_bits)

        # the environment: what the core can present
        d = dut.dot.payload
        in_range = ((d.beats != 0) & (d.xaddr[:low] == 0 if low else 1)
                    & ((d.xaddr >> low) + d.beats <= words))
        if self.conv:
            in_range = d.win | in_range  # (a window DOT's: ``_window_environment``)
        m.d.comb += [
            Assume(~(dut.dot.valid & dut.wr_issue)),
            Assume(~dut.wr_issue | ~dut.wr_blocked),
            Assume(~dut.dot.valid | in_range),
            Assume(dut.wr_addr < p["x_depth"]), Assume(dut.wr_land_addr < p["x_depth"]),
            Assume(~dut.wr_land | (issued[land_r] != landed[land_r])),
            Assume(inflight + dut.wr_issue <= p["writes_in_flight"]),
        ]
        for r in range(regions):
            m.d.sync += [issued[r].eq(issued[r] + (dut.wr_issue & (wr_r == r))),
                         landed[r].eq(landed[r] + (dut.wr_land & (land_r == r)))]
        m.d.sync += inflight.eq(inflight + dut.wr_issue - dut.wr_land)

        # the DOTs taken and not yet finished, each with ``issued`` as it was when taken
        snap = [Signal(BITS * regions, name=f"snap{k}") for k in range(3)]
        count = Signal(range(5))
        take, done = dut.dot.valid & dut.dot.ready, dut.tag.valid
        if self.conv:
            self._window_environment(m)
            take = take & ~dut.dot_empty  # (a DOT with no kept tap is dropped)
        now = Signal(BITS * regions)
        m.d.comb += now.eq(Cat(*issued))
        m.d.sync += count.eq(count + take - done)
        with m.If(done):
            m.d.sync += [snap[0].eq(snap[1]), snap[1].eq(snap[2])]
        slot = count - done
        for k in range(3):
            with m.If(take & (slot == k)):
                m.d.sync += snap[k].eq(now)
        m.d.comb += Assert(count <= 3)

        # the word read in the cycle before: its region and what had landed there
        seen, seen_r = Signal(BITS), Signal(range(regions))
        m.d.sync += [seen_r.eq(dut.x_addr >> g_bits), seen.eq(landed[dut.x_addr >> g_bits])]
        with m.If(dut.o.valid & dut.o.ready):
            m.d.comb += [Assert(count != 0),
                         Assert(seen == snap[0].word_select(seen_r, BITS))]
        return m

    def _window_environment(self, m):
        """Window DOTs the core can present: kept taps in the memory (golden raises
        otherwise), a payload held until taken; the window ``window`` (set before: this
        keeps the solver's arithmetic small), output pixels over it and its borders."""
        dut, d, f = self.dut, self.dut.dot.payload, self.fields
        m.d.comb += [d[k].eq(f[k]) for k, _ in f.shape()]
        m.d.comb += [d.geom[k].eq(v) for k, v in self.window.items()]
        held, last = Signal(), Signal.like(f.as_value())
        m.d.sync += [held.eq(dut.dot.valid & ~dut.dot.ready), last.eq(f.as_value())]
        m.d.comb += [
            Assume(~(dut.dot.valid & dut.dot.ready & dut.dot_fault)),
            Assume(~held | (dut.dot.valid & (f.as_value() == last))),
            Assume((f.i0 < 4) & (f.i1 < 4) & (f.xaddr < 16)),
            Assume((f.waddr == 0) & (f.zp == 0)),  # (not in the claim: fewer choices)
        ]


def _check(tmp_path, **params):
    harness = _HazardHarness(**params)
    dut = harness.dut
    ports = [dut.dot.valid, dut.dot.payload.as_value(), dut.o.ready, dut.wr_issue,
             dut.wr_addr, dut.wr_land, dut.wr_land_addr, dut.o.valid, dut.wr_blocked]
    if harness.conv:
        ports[1:2] = [harness.fields.as_value(), dut.bank_busy_next]
    return run_sby(tmp_path, harness, ports, depth=DEPTH, mode="bmc")


SMALL = dict(lanes=1, x_depth=4, w_depth=4, prog_depth=4, writes_in_flight=3)
# windows for 4 words: rows closer than a row of taps (the highest word is not always the
# last tap's), padding on every side; a strided one
WINDOWS = {"near_rows": dict(ih=3, iw=3, kw=2, pt=1, pl=1, sy=1, sx=1, pixpitch=2, rowpitch=1),
           "strided": dict(ih=2, iw=4, kw=3, pt=1, pl=1, sy=2, sx=1, pixpitch=1, rowpitch=2)}


@pytest.mark.parametrize("hazard_words", [1, 2])
def test_feeder_reads_what_program_order_says(tmp_path, hazard_words):
    _check(tmp_path, hazard_words=hazard_words, **SMALL)


def test_feeder_proof_fails_without_the_first_beat_wait(tmp_path, monkeypatch):
    real = DotFeeder._pending_writes

    def never_waits(self, m):
        real(self, m)
        return Signal(self._regions)  # no region ever has a write in flight
    monkeypatch.setattr(DotFeeder, "_pending_writes", never_waits)
    with pytest.raises(AssertionError, match="FAIL"):
        _check(tmp_path, hazard_words=1, **SMALL)


def test_feeder_proof_fails_without_blocking_reqs(tmp_path, monkeypatch):
    real = DotFeeder.elaborate

    def unblocked(self, platform):
        m = real(self, platform)
        m.d.comb += self.wr_blocked.eq(0)
        return m
    monkeypatch.setattr(DotFeeder, "elaborate", unblocked)
    with pytest.raises(AssertionError, match="FAIL"):
        _check(tmp_path, hazard_words=1, **SMALL)


# (the cores' window wait, spec.params.WINDOW_WAIT, in the second tier; the others, about
# 8 minutes each, in make formal only)
DEEP = pytest.mark.deep


@pytest.mark.parametrize("window,hazard_words,window_wait",
                         [pytest.param("near_rows", 2, 0, marks=DEEP),
                          pytest.param("strided", 1, 1, marks=DEEP), ("near_rows", 1, 2)])
def test_feeder_with_window_dots_reads_what_program_order_says(tmp_path, window,
                                                                hazard_words, window_wait):
    _check(tmp_path, hazard_words=hazard_words, conv=True, window_wait=window_wait,
           window=WINDOWS[window], **SMALL)


def test_window_proof_fails_with_regions_to_the_last_tap(tmp_path, monkeypatch):
    real = WindowTaps.elaborate

    def last_tap_only(self, platform):
        m = real(self, platform)
        m.d.comb += self.o.two.eq(0)  # the row before the last's last tap not counted
        return m
    monkeypatch.setattr(WindowTaps, "elaborate", last_tap_only)
    with pytest.raises(AssertionError, match="FAIL"):
        _check(tmp_path, hazard_words=2, conv=True, window=WINDOWS["near_rows"], **SMALL)
