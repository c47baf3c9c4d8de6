# amaranth: UnusedElaboratable=no
"""Window DOTs and lane banks in the DotFeeder (``hw.dot_feeder``, ``conv=True``).

The checks, each on random stimulus with fixed printed seeds (a broken design fails them:
no first-beat wait, no wait for a bank's read-out, a wrong step of the walk, no block for
the held beat's word, each tried once):

- ``WindowTaps`` (what the feeder computes of a window DOT when it takes it; combinational,
  and with its two halves registered, a new DOT every cycle) against
  ``golden.sequencer._dot_beats``: the taps its outputs describe, walked as the feeder walks
  them, are golden's kept taps in order (activation and weight words), their lowest, last
  and highest words, and the out-of-range fault; the feeder's ``dot_empty`` and
  ``dot_fault`` (with each window wait: from that many cycles after a DOT is offered).
- The feeder in a small model of the core around it (``_Core``: the uops in order, REQs and
  REQWs and their results landing, CLR, lane banks read out, an engine whose front end
  takes a beat when free and keeps it busy for the beat's cycles, memories whose words
  carry their address and a version per write) on random programs mixing window DOTs
  (random geometry with padding, strides 1..3, kernels up to 7 wide, up to 15 beats, output
  pixels at the borders and inside, some with every tap dropped) with plain DOTs: every
  beat's words and their order (golden's), the version of every word read (the writes
  program order puts before the DOT: no read before a write it follows, none after one
  that follows it), the tags, the cycle every uop is taken and every beat is handed to the
  engine, against ``_Model``: ``golden.core._Timing`` itself, logging, with the window wait
  of the feeder under test.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparq.golden.core import _Timing
from sparq.golden.isa import IllegalInstruction
from sparq.golden.sequencer import Offsets, _dot_beats
from sparq.hw.dot_feeder import DotFeeder, WindowTaps
from sparq.spec import params as spec_params
from sparq.spec.isa import N_ACC, N_BANKS
from tests.conftest import SEED

LANES = 4
MACHINE = dict(lanes=LANES, x_depth=1024, w_depth=1024, prog_depth=64)
WORDS, W_WORDS = MACHINE["x_depth"] // LANES, MACHINE["w_depth"] // LANES
DOT_LATENCY, REQ_LATENCY = 4, 3  # the model core's engine and Requantizer
GEOM = ("ih", "iw", "kw", "pt", "pl", "sy", "sx", "pixpitch", "rowpitch")


# ---------------------------------------------------------------------------- golden

def golden_taps(dot, *, x_depth=MACHINE["x_depth"]):
    """``(x word, w word)`` of each beat of ``dot`` (golden.sequencer._dot_beats), or None
    where golden raises IllegalInstruction; a tap word below 0 counts as outside the
    memory too (golden's ``_block`` checks only the top: reported)."""
    taps = _golden_addresses(dot, x_depth)
    if taps is None or any(a < 0 for a, _ in taps):
        return None
    return [(a // LANES, b // LANES) for a, b in taps]


def _golden_addresses(dot, x_depth):
    cfg = SimpleNamespace(lanes=LANES, x_depth=x_depth)
    m = SimpleNamespace(cfg=cfg, params=SimpleNamespace(w=np.zeros(1 << 15, np.int8)),
                        window=dot["geom"] if dot["win"] else None)
    ins = SimpleNamespace(xaddr=dot["xaddr"], xi=0, waddr=dot["waddr"], wi=0,
                          beats=dot["beats"], win=dot["win"])
    try:
        return _dot_beats(m, ins, Offsets(i0=dot["i0"], i1=dot["i1"]))
    except IllegalInstruction:
        return None


def _all_taps(dot):
    """Every kept tap of window DOT ``dot`` as (activation, weight) element addresses, in
    range or not (golden refuses a negative address: its addresses are taken from a base far
    enough up that none is, then moved back)."""
    base = 1 << 20
    return [(a - base, b) for a, b in _golden_addresses(dict(dot, xaddr=dot["xaddr"] + base),
                                                         1 << 30)]


class _Model(_Timing):
    """``golden.core._Timing`` logging when each uop is taken (``takes``) and each beat
    handed over (``handed``), with its window DOTs' wait ``win_wait`` (golden's is
    ``spec.params.WINDOW_WAIT``; ``DotFeeder(window_wait=0)`` has none)."""

    def __init__(self, p, *, win_wait=spec_params.WINDOW_WAIT):
        super().__init__(p)
        self.dot_latency, self.req_latency = DOT_LATENCY, REQ_LATENCY
        self.window_wait = win_wait
        self.takes, self.handed = [], []

    def clr(self, ins, eff, dots):
        super().clr(ins, eff, dots)
        self.takes.append(self.t - 1)

    def req(self, ins, eff, dots):
        super().req(ins, eff, dots)
        self.takes.append(self.t - 1)

    def dot(self, ins, eff, dots):
        super().dot(ins, eff, dots)
        self.takes.append(self.t - 1)

    def nop(self):
        self.t += 1
        self.takes.append(self.t - 1)


def model_run(program, *, hazard_words, win_wait=spec_params.WINDOW_WAIT):
    """Run ``program`` (``random_program``'s uops) through ``_Model``; returns it."""
    p = spec_params.core(**MACHINE, hazard_words=hazard_words, conv=True)
    st = _Model(p, win_wait=win_wait)
    st.dot_latency, st.req_latency = DOT_LATENCY, REQ_LATENCY
    for u in program:
        ins = SimpleNamespace(acc=u.get("acc", 0), win=u.get("win", 0))
        if u["op"] == "DOT":
            st.dot(ins, dict(x_words=[x for x, _ in u["taps"]]), iter([u["costs"]]))
        elif u["op"] == "REQ":
            st.req(ins, dict(o_word=u["word"], lanes=u["lanes"]), None)
        elif u["op"] == "CLR":
            st.clr(ins, None, None)
        elif hasattr(st, "nop"):
            st.nop()
        else:
            st.t += 1
    return st


# ---------------------------------------------------------------------------- stimulus

def random_geom(rng):
    """A window: small images and pitches mostly (the taps fit the memory), some wide."""
    kw = int(rng.integers(1, 8))
    g = dict(ih=int(rng.integers(1, 10)), iw=int(rng.integers(1, 10)), kw=kw,
             pt=int(rng.integers(0, 4)), pl=int(rng.integers(0, 4)),
             sy=int(rng.integers(1, 4)), sx=int(rng.integers(1, 4)),
             pixpitch=int(rng.integers(0, 4)), rowpitch=int(rng.integers(0, 4 * kw + 4)))
    if rng.random() < 0.1:
        g.update(ih=int(rng.integers(1, 128)), iw=int(rng.integers(1, 128)))
    if rng.random() < 0.1:
        g.update(pixpitch=int(rng.integers(0, 32)), rowpitch=int(rng.integers(0, 40)))
    if rng.random() < 0.3:  # rows closer than a row of taps: the highest word may not be
        g.update(pixpitch=int(rng.integers(1, 4)))  # the last tap's
        g.update(rowpitch=int(rng.integers(0, max(1, (kw - 1) * g["pixpitch"]))))
    return g


def random_dot(rng, geom, *, pc, acc=None, target=None, fit=True):
    """A DOT into ``acc`` (else a random one): a window DOT of window ``geom`` at a random
    output pixel (``i0``, ``i1``: at the borders, inside, and beyond: every tap dropped),
    or a plain one; one of its words ``target`` where it can; ``fit``: every kept tap in
    the memory (``xaddr`` chosen for it, new pixels tried else). ``taps``: golden's;
    ``costs``: the engine's cycles for each beat."""
    for _ in range(100):
        beats, win = int(rng.integers(1, 16)), int(rng.random() < 0.65)
        d = dict(op="DOT", win=win, beats=beats, pc=pc, geom=dict(geom),
                 acc=int(rng.integers(0, N_ACC + N_BANKS)) if acc is None else acc,
                 waddr=int(rng.integers(0, W_WORDS - beats + 1)) * LANES,
                 zp=int(rng.integers(-128, 128)), i0=0, i1=0, xaddr=0)
        if win:
            beyond = 3 if rng.random() < 0.25 else 1
            d["i0"] = min(255, int(rng.integers(0, (geom["ih"] + geom["pt"]) // geom["sy"]
                                               + beyond)))
            d["i1"] = min(255, int(rng.integers(0, (geom["iw"] + geom["pl"]) // geom["sx"]
                                               + beyond)))
            d["xaddr"] = _window_base(rng, d, target) if fit else \
                int(rng.integers(0, 1 << 12)) * LANES
            if d["xaddr"] is None:
                continue
        else:
            first = int(rng.integers(0, WORDS - beats + 1))
            if target is not None:
                first = min(max(target - int(rng.integers(0, beats)), 0), WORDS - beats)
            d["xaddr"] = first * LANES
        d["taps"] = golden_taps(d)
        if d["taps"] is None and fit:
            continue
        costs = rng.choice([1, 1, 2, 3, 4, 7], size=len(d["taps"] or []))
        d["costs"] = [int(c) for c in costs]
        return d
    raise AssertionError("no DOT found")


def _window_base(rng, d, target):
    """An ``xaddr`` for window DOT ``d`` whose kept taps are all in the memory (one of them
    at word ``target`` when it can), or None."""
    offsets = [a // LANES for a, _ in _all_taps(dict(d, xaddr=0))]
    if not offsets:  # every tap dropped: any base
        return int(rng.integers(0, 1 << 12)) * LANES
    lo, hi = min(offsets), max(offsets)
    first, top = -lo, min(WORDS - hi, (1 << 14) // LANES)  # (xaddr may pass the memory)
    if first >= top:
        return None
    if target is not None:
        base = target - int(rng.choice(offsets))
        if first <= base < top:
            return base * LANES
    return int(rng.integers(first, top)) * LANES


def random_program(rng, n):
    """``n`` uops: DOTs (window and plain), REQs (one element; on a bank: a REQW of a
    word), CLRs and others (one cycle, nothing in the datapath); a new window now and
    then. REQs write words recent DOTs read, DOTs read words recent REQs write, and a
    DOT into a bank often follows the bank's REQW: hazards and waits for the read-out."""
    geom, prog, read, written = random_geom(rng), [], [0], [0]
    for i in range(n):
        r = rng.random()
        if r < 0.05:
            geom = random_geom(rng)
        last = prog[-1] if prog else dict(op="NOP")
        if r < 0.55 or (last["op"] == "REQ" and last["lanes"] > 1 and rng.random() < 0.5):
            bank = last["acc"] if last["op"] == "REQ" and last["lanes"] > 1 else None
            target = int(rng.choice(written)) if rng.random() < 0.5 else None
            d = random_dot(rng, geom, pc=i % MACHINE["prog_depth"], acc=bank, target=target)
            read = [x for x, _ in d["taps"]] or read
            prog.append(d)
        elif r < 0.75:
            word = int(rng.choice(read)) if rng.random() < 0.7 else int(rng.integers(0, WORDS))
            word = min(max(word + int(rng.integers(-2, 3)), 0), WORDS - 1)
            bank = rng.random() < 0.35
            acc = int(rng.integers(N_ACC, N_ACC + N_BANKS)) if bank else \
                int(rng.integers(0, N_ACC))
            prog.append(dict(op="REQ", acc=acc, word=word, lanes=LANES if bank else 1,
                             lane=0 if bank else int(rng.integers(0, LANES))))
            written = (written + [word])[-4:]
        elif r < 0.82:
            prog.append(dict(op="CLR", acc=int(rng.integers(0, N_ACC + N_BANKS))))
        else:
            prog.append(dict(op="NOP"))
    return prog


# ---------------------------------------------------------------------------- the model core

def _x_word(word, version):
    """An activation word's content: its address and how many writes it has had."""
    return word | (version << 12)


def _w_word(word):
    return [word & 0x7F, word >> 7] + [0] * (LANES - 2)


class _Core:
    """The core around a DotFeeder, cycle by cycle (an amaranth.sim testbench): the uops in
    order, each taken when the core would (DOT: ``dot.ready``; REQ: its accumulator has no
    DOT pending nor result coming, the Requantizer free, not ``wr_blocked``; a REQ on a bank
    (REQW) holds the Requantizer and reads the bank out for ``LANES`` cycles; CLR: no DOT
    pending, the bank read out; others: a cycle), REQ results landing ``lanes +
    REQ_LATENCY - 1`` cycles after (the last lane's), the engine's input taken when its
    front end frees (``o.ready``) and the front end busy for each beat's cost, a DOT's
    result ``DOT_LATENCY`` after its last beat leaves the front end, and memories read a
    cycle after their address, the activation words with their versions."""

    def __init__(self, dut, program):
        self.dut, self.program = dut, program
        self.takes, self.handed, self.done = [], [], []
        self.acc_ready = [0] * (N_ACC + N_BANKS)
        self.pending = [0] * (N_ACC + N_BANKS)
        self.bank_free = [0] * (N_ACC + N_BANKS)
        self.req_free = self.in_free = self.fe_free = 0
        self.lands, self.inflight, self.costs = {}, [], []
        self.ver, self.prog_ver = [0] * WORDS, [0] * WORDS
        self.flags = dict(empty=0, waits=0)

    async def bench(self, ctx):
        dut, cycle, i = self.dut, 0, 0
        x_rd, w_rd = 0, 0
        while i < len(self.program) or self.inflight or any(c >= cycle for c in self.lands):
            assert cycle < 100_000, "the feeder does not finish"
            u = self.program[i] if i < len(self.program) else dict(op="END")
            self._offer(ctx, u)
            land = self.lands.get(cycle)
            ctx.set(dut.wr_land, land is not None)
            ctx.set(dut.wr_land_addr, land[0] if land else 0)
            ctx.set(dut.o.ready, cycle >= self.in_free)
            ctx.set(dut.x_data, x_rd)
            for k, v in enumerate(_w_word(w_rd)):
                ctx.set(dut.w_data[k], v)
            taken = self._take(ctx, u, cycle)
            if taken:
                self.takes.append(cycle)
                i += 1
            ctx.set(dut.bank_busy_next, sum(1 << b for b in range(N_BANKS)
                                            if self.bank_free[N_ACC + b] > cycle + 1))
            self._engine(ctx, cycle)
            x_addr, w_rd = ctx.get(dut.x_addr), ctx.get(dut.w_addr)
            x_rd = _x_word(x_addr, self.ver[x_addr])  # (the port is not transparent)
            if land is not None:
                self.ver[land[1]] += 1
            await ctx.tick()
            ctx.set(dut.wr_issue, 0)
            cycle += 1

    def _offer(self, ctx, u):
        dut = self.dut
        ctx.set(dut.dot.valid, u["op"] == "DOT")
        if u["op"] == "DOT":
            p = dut.dot.payload
            for k in ("xaddr", "waddr", "beats", "acc", "zp", "pc", "win", "i0", "i1"):
                ctx.set(getattr(p, k), u[k])
            for k in GEOM:
                ctx.set(getattr(p.geom, k), u["geom"][k])
        ctx.set(dut.wr_addr, u["word"] * LANES + u["lane"] if u["op"] == "REQ" else 0)

    def _take(self, ctx, u, cycle):
        """Whether the uop offered is taken now (and what follows)."""
        dut, acc = self.dut, u.get("acc", 0)
        idle = self.pending[acc] == 0 and cycle >= self.acc_ready[acc]
        if u["op"] == "DOT":
            if not ctx.get(dut.dot.ready):
                return False
            assert ctx.get(dut.dot_empty) == (not u["taps"]) and not ctx.get(dut.dot_fault)
            if not u["taps"]:
                self.acc_ready[acc] = max(self.acc_ready[acc], cycle + 1)
                self.flags["empty"] += 1
                return True
            self.pending[acc] += 1
            self.inflight.append(dict(u, want=[(x, w, self.prog_ver[x]) for x, w in u["taps"]],
                                      got=[]))
            self.costs += u["costs"]
            return True
        if u["op"] == "REQ":
            if not (idle and cycle >= self.req_free) or ctx.get(dut.wr_blocked):
                self.flags["waits"] += idle and cycle >= self.req_free
                return False
            ctx.set(dut.wr_issue, 1)
            self.req_free = self.bank_free[acc] = cycle + u["lanes"]
            at = cycle + u["lanes"] + REQ_LATENCY - 1
            assert at not in self.lands
            self.lands[at] = (u["word"] * LANES + u["lane"], u["word"])
            self.prog_ver[u["word"]] += 1
            return True
        if u["op"] == "CLR":
            return idle and cycle >= self.bank_free[acc]
        return u["op"] == "NOP"

    def _engine(self, ctx, cycle):
        """The engine's side of ``o`` and the tag."""
        dut = self.dut
        handed = ctx.get(dut.o.valid) and cycle >= self.in_free
        assert ctx.get(dut.tag.valid) == (handed and ctx.get(dut.o.payload.last))
        if not handed:
            return
        d = self.inflight[0]
        x = sum((ctx.get(dut.o.payload.x[k]) & 0xFF) << (8 * k) for k in range(LANES))
        w = [ctx.get(dut.o.payload.w[k]) for k in range(2)]
        d["got"].append((x & 0xFFF, w[0] | (w[1] << 7), x >> 12))
        bank = d["acc"] >= N_ACC
        assert ctx.get(dut.zp) == d["zp"] and ctx.get(dut.o.payload.bank) == bank
        assert not bank or ctx.get(dut.o.payload.bank_sel) == d["acc"] - N_ACC
        self.handed.append(cycle)
        s = max(cycle + 1, self.fe_free)
        self.in_free, self.fe_free = s, s + self.costs.pop(0)
        if ctx.get(dut.o.payload.last):
            assert (ctx.get(dut.tag.payload.acc), ctx.get(dut.tag.payload.pc)) == \
                (d["acc"], d["pc"])
            self.acc_ready[d["acc"]] = self.fe_free + DOT_LATENCY
            self.pending[d["acc"]] -= 1
            self.done.append(self.inflight.pop(0))


def run_core(program, *, hazard_words, window_wait):
    """The feeder (``conv=True``) run through ``program`` in ``_Core``; returns the core."""
    dut = DotFeeder(conv=True, window_wait=window_wait, hazard_words=hazard_words,
                    writes_in_flight=LANES + REQ_LATENCY + 1, **MACHINE)
    core = _Core(dut, program)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(core.bench)
    sim.run()
    return core


# ---------------------------------------------------------------------------- the tests

def _any_window_dot(rng):
    """A window DOT over the fields' whole ranges (some all-zero windows: none set yet,
    every tap dropped), at any pixel and base; golden's taps with an unbounded memory."""
    g = random_geom(rng)
    if rng.random() < 0.3:
        g.update(ih=int(rng.integers(1, 128)), iw=int(rng.integers(1, 128)),
                 rowpitch=int(rng.integers(0, 1024)), pixpitch=int(rng.integers(0, 32)))
    if rng.random() < 0.1:  # (a stride 0: every output pixel's window the same)
        g.update({"sy" if rng.random() < 0.5 else "sx": 0})
    if rng.random() < 0.05:
        g = dict.fromkeys(GEOM, 0)
    beats = int(rng.integers(0, 16)) if rng.random() < 0.05 else int(rng.integers(1, 16))
    where = rng.random()  # output pixels on the image (borders included), past it, anywhere

    def index(n, pad, stride):
        if where < 0.8:
            return int(rng.integers(0, max(1, (n + pad) // max(stride, 1)) + 1))
        return int(rng.integers(0, (n + pad) // max(stride, 1) + 4 if where < 0.9 else 256))
    i0, i1 = index(g["ih"], g["pt"], g["sy"]), index(g["iw"], g["pl"], g["sx"])
    d = dict(win=1, geom=g, beats=beats, i0=min(i0, 255), i1=min(i1, 255),
             xaddr=int(rng.integers(0, 1 << 14)) // LANES * LANES,
             waddr=int(rng.integers(0, W_WORDS - 15)) * LANES)
    if beats == 0 or g["kw"] == 0:  # (golden: no such DOT; a window never set)
        d["taps"] = []
    else:
        d["taps"] = [(a // LANES, b // LANES) for a, b in _all_taps(d)]
    return d


def _walk(t):
    """The taps ``WindowTaps``'s outputs ``t`` (a dict) describe, walked as the feeder's
    ``_step`` walks them (unbounded words)."""
    if not t["nonempty"]:
        return []
    taps, xr, xw, wr, ww = [], t["lo"], t["lo"], t["w0"], t["w0"]
    col, rows, last = t["ncol"], t["rows"], t["last0"]
    while len(taps) <= 15:
        taps.append((xw, ww))
        if last:
            return taps
        end = col == 0
        col, rows = t["ncol"] if end else col - 1, rows - end
        last = rows == 0 and col == t["lastcol"]
        xr, wr = xr + t["rp"] * end, wr + t["kw"] * end
        xw, ww = (xr, wr) if end else (xw + t["pp"], ww + 1)
    raise AssertionError(f"the walk does not end: {t}")


@pytest.mark.parametrize("latency", [0, 1])
def test_window_taps_against_golden(latency):
    """``WindowTaps`` on random window DOTs: the taps it describes are golden's kept taps
    in order, its lowest and highest words theirs (``hi_a`` the last tap's). With
    ``latency`` 1 a new DOT is presented every cycle: the outputs show the one before."""
    seed = SEED + 230 + latency
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    dut = WindowTaps(lanes=LANES, w_depth=MACHINE["w_depth"], latency=latency)
    dots = [_any_window_dot(rng) for _ in range(3000)]
    counts = dict(empty=0, two=0, border=0)

    def present(ctx, d):
        for k in ("xaddr", "waddr", "beats", "i0", "i1"):
            ctx.set(getattr(dut.i, k), d[k])
        for k in GEOM:
            ctx.set(getattr(dut.i.geom, k), d["geom"][k])

    async def bench(ctx):
        for n, d in enumerate(dots):
            present(ctx, d)
            if latency:
                await ctx.tick()
                present(ctx, dots[(n + 1) % len(dots)])
            t = {k: ctx.get(getattr(dut.o, k)) for k, _ in dut.o.shape()}
            want = d["taps"]
            assert _walk(t) == want, (d, t)
            counts["empty"] += not want
            if want:
                xs = [x for x, _ in want]
                high = max(t["hi_a"], t["hi_b"] if t["two"] else -1 << 20)
                assert (t["lo"], t["hi_a"], high) == (min(xs), xs[-1], max(xs)), (d, t)
                counts["two"] += xs[-1] != max(xs)
                counts["border"] += len(want) < d["beats"]

    sim = Simulator(dut)
    if latency:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    print(counts)
    assert counts["empty"] > 100 and counts["two"] > 30 and counts["border"] > 500


def test_window_taps_latency_is_checked():
    with pytest.raises(ValueError, match="latency must be 0 or 1, not 2"):
        WindowTaps(lanes=LANES, w_depth=MACHINE["w_depth"], latency=2)
    with pytest.raises(ValueError, match="window_wait must be 0, or 1 or 2 with conv=True"):
        DotFeeder(conv=True, window_wait=3, **MACHINE)


@pytest.mark.parametrize("window_wait", [0, 1, 2])
def test_feeder_empty_and_fault_flags(window_wait):
    """The feeder's ``dot_empty`` and ``dot_fault`` for the window DOT offered (with
    ``window_wait``, from ``window_wait`` cycles after it is first offered; ``dot_fault``
    low before, and high from then): no kept tap; a kept tap outside the activation
    memory (golden raises IllegalInstruction)."""
    seed = SEED + 240 + window_wait
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    dut = DotFeeder(conv=True, window_wait=window_wait, **MACHINE)
    dots = [_any_window_dot(rng) for _ in range(800)]
    for d in dots[::2]:  # half of them moved into the memory where they fit
        base = _window_base(rng, d, None) if d["taps"] else None
        if base is not None:
            d.update(xaddr=base, taps=golden_taps(dict(d, xaddr=base)))
    counts = dict(empty=0, fault=0, ok=0)

    async def bench(ctx):
        p = dut.dot.payload
        ctx.set(dut.dot.valid, 1)  # plain DOTs fill the queue (the engine takes nothing)
        for k, v in dict(beats=1, win=0).items():
            ctx.set(getattr(p, k), v)
        await ctx.tick().repeat(3)  # (one in the input register, two queued)
        assert not ctx.get(dut.dot.ready)
        for d in dots:  # then each window DOT offered (not taken) for window_wait cycles
            for k in ("xaddr", "waddr", "beats", "i0", "i1", "win"):
                ctx.set(getattr(p, k), d[k])
            for k in GEOM:
                ctx.set(getattr(p.geom, k), d["geom"][k])
            await ctx.tick().repeat(max(window_wait, 1))
            fault = bool(d["taps"]) and golden_taps(d) is None
            got = ctx.get(dut.dot_empty), ctx.get(dut.dot_fault)
            assert got == (not d["taps"], fault), (d, got)
            counts["empty" if not d["taps"] else "fault" if fault else "ok"] += 1
            if fault and window_wait:  # offered anew: no fault in its first window_wait
                ctx.set(dut.dot.valid, 0)  # cycles
                await ctx.tick()
                ctx.set(dut.dot.valid, 1)
                for _ in range(window_wait):
                    assert not ctx.get(dut.dot_fault)
                    await ctx.tick()
                assert ctx.get(dut.dot_fault)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    print(counts)
    assert min(counts.values()) > 100


@pytest.mark.parametrize("window_wait,hazard_words",
                         [(0, 1), (0, 4), (1, 1), (1, 8), (2, 1), (2, 4), (2, 16)])
def test_feeder_window_dots(window_wait, hazard_words):
    """Random programs through the feeder in ``_Core``: every beat's words in order (golden's
    taps), what it reads (the versions program order says), the tags, and when each uop is
    taken and each beat handed to the engine (``_Model`` with ``win_wait=window_wait``)."""
    seed = SEED + 260 + 10 * window_wait + hazard_words
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    totals = dict(uops=0, beats=0, window=0, empty=0, req_waits=0)
    for _ in range(4):
        program = random_program(rng, 200)
        core = run_core(program, hazard_words=hazard_words, window_wait=window_wait)
        model = model_run(program, hazard_words=hazard_words, win_wait=window_wait)
        for d in core.done:  # (words and versions: want == got, beat by beat)
            assert d["got"] == d["want"], (d["pc"], d["got"], d["want"])
        assert len(core.done) == sum(1 for u in program if u["op"] == "DOT" and u["taps"])
        assert core.takes == model.takes
        assert core.handed == model.handed
        totals["uops"] += len(program)
        totals["beats"] += len(core.handed)
        totals["window"] += sum(1 for u in program if u["op"] == "DOT" and u["win"])
        totals["empty"] += core.flags["empty"]
        totals["req_waits"] += core.flags["waits"]
    print(totals)
    assert totals["beats"] > 1500 and totals["empty"] > 50 and totals["req_waits"] > 300
