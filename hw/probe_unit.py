"""ProbeUnit: the representative value a SETP compares, read from the core's memories.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import isa
from sparq.spec import params as spec_params

from .arith import adder_tree, popcount
from .encodings import Src
from .sequencer import probe_layout


class ProbeUnit(wiring.Component):
    """Answers a ``probe`` with its ``value`` (``golden.sequencer``'s SETP sources): one
    weight (``W``) or activation (``X``), or over a block of ``beats`` words from ``addr``:
    the largest ``|x - zp|`` (``XMAXABS``), whether every activation is the zero point
    (``XZERO``), the activations other than it (``XNNZ``), the non-zero weights (``WNNZ``);
    ``zp`` is the probe's (the activation zero point SETL set).

    ============== ===== ==========================================================
    ``probe``      In    stream of ``probe_layout``; the payload must stay as taken until
                         ``value`` is taken (the Sequencer's SETP holds it)
    ``value``      Out   stream of int16, the answer
    ``blocked``    In    no probe may start (the DOT feeder reads the memories)
    ``x_writes``   In    activation writes are in flight: only weight probes may start
    ``reading``    Out   the probe drives the read ports (``rd_addr``) this cycle
    ``rd_addr``    Out   the word to read; ``x_data`` / ``w_data`` show it a cycle later
    ============== ===== ==========================================================

    Timing: ``value.valid`` 3 cycles after the handshake's for a single element, ``beats + 3``
    for a block of ``beats`` words: each word is registered, reduced to partial terms per
    group of four lanes (registered), and those into the accumulators (``golden.core``'s
    cycle model counts these).
    """

    def __init__(self, *, lanes=16):
        self._p = dict(lanes=spec_params.int_in("lanes", lanes, 1, 64))
        low = (lanes - 1).bit_length()
        super().__init__({
            "probe": In(stream.Signature(probe_layout())),
            "value": Out(stream.Signature(signed(16))),
            "blocked": In(1), "x_writes": In(1), "reading": Out(1),
            "rd_addr": Out(isa.field_width("addr", "SETP") - low),
            "x_data": In(unsigned(8 * lanes)), "w_data": In(data.ArrayLayout(signed(8), lanes)),
        })

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        lanes = self._p["lanes"]
        low = (lanes - 1).bit_length()
        q = self.probe.payload
        zp = q.zp
        beat = Signal(4)  # the beat whose words the read ports show this cycle
        value = Signal(signed(16), name="probe_value")
        count = Signal(range(16 * lanes + 1))  # the block's counts
        maxabs = Signal(9)
        groups = (lanes + 3) // 4
        a = Signal(data.StructLayout({"mx": data.ArrayLayout(9, groups),
                                      "nx": data.ArrayLayout(3, groups),
                                      "nw": data.ArrayLayout(3, groups)}), name="probe_part")
        lane = q.addr[:low] if low else Const(0, 1)
        single = (q.src == Src.W) | (q.src == Src.X)

        # a probe's registered words: a single element's value, or a beat's partial terms
        px, pw = Signal(8 * lanes, name="probe_x"), Signal(8 * lanes, name="probe_w")
        p_valid, a_valid = Signal(), Signal()
        pxs = [px[8 * i:8 * i + 8].as_signed() for i in range(lanes)]
        pws = [pw[8 * i:8 * i + 8].as_signed() for i in range(lanes)]
        with m.If(p_valid):
            m.d.sync += _beat_terms(m, a, pxs, pws, zp) + [a_valid.eq(~single)]
            with m.If(single):
                m.d.sync += value.eq(Mux(q.src == Src.W, pw.word_select(lane, 8),
                                         px.word_select(lane, 8)).as_signed())
        # the terms of the beat before into the accumulators
        mx = Signal(9)
        m.d.comb += mx.eq(_max_tree(m, [maxabs] + list(a.mx), "probe_max"))
        cnt_x, cnt_w = count + adder_tree(a.nx), count + adder_tree(a.nw)
        with m.If(a_valid):
            m.d.sync += [maxabs.eq(mx), count.eq(Mux(q.src == Src.WNNZ, cnt_w, cnt_x))]

        with m.FSM(name="probe") as fsm:
            with m.State("IDLE"):
                with m.If(self.probe.valid & self.probe.ready):
                    m.d.sync += [beat.eq(0), count.eq(0), maxabs.eq(0)]
                    m.next = "PROBE"
            with m.State("PROBE"):
                # the read ports show beat `beat`: its words are registered, and reduced
                # from the registers the cycle after
                m.d.sync += [px.eq(self.x_data), pw.eq(self.w_data.as_value()),
                             p_valid.eq(1), beat.eq(beat + 1)]
                with m.If(single | (beat == q.beats - 1)):
                    m.next = "DRAIN"
            with m.State("DRAIN"):  # the last words are reduced now
                m.d.sync += p_valid.eq(0)
                with m.If(single):
                    m.next = "VALUE"
                with m.Else():
                    m.next = "REDUCE"
            with m.State("REDUCE"):  # the last beat's terms are accumulated now: the value
                m.d.sync += a_valid.eq(0)
                with m.Switch(q.src):
                    with m.Case(Src.XMAXABS):
                        m.d.sync += value.eq(mx)
                    with m.Case(Src.XZERO):
                        m.d.sync += value.eq(cnt_x == 0)
                    with m.Case(Src.XNNZ):
                        m.d.sync += value.eq(cnt_x)
                    with m.Case(Src.WNNZ):
                        m.d.sync += value.eq(cnt_w)
                m.next = "VALUE"
            with m.State("VALUE"):
                with m.If(self.value.ready):
                    m.next = "IDLE"
        # (outside the FSM's cases: plain assignments in the Verilog, which simulators
        # evaluate at time 0 even when no input ever changes)
        idle, probing = fsm.ongoing("IDLE"), fsm.ongoing("PROBE")
        m.d.comb += [
            self.probe.ready.eq(idle & ~self.blocked & (~self.x_writes | (q.src == Src.W)
                                                        | (q.src == Src.WNNZ))),
            self.reading.eq(probing | (idle & self.probe.valid & ~self.blocked)),
            self.rd_addr.eq(Mux(probing, (q.addr >> low) + beat + 1, q.addr >> low)),
            self.value.valid.eq(fsm.ongoing("VALUE")), self.value.payload.eq(value)]
        return m


def _beat_terms(m, part, xs, ws, zp):
    """The assignments of one beat's partial probe terms to ``part``, per group of four
    lanes: the largest ``|x - zp|``, the count of activations other than ``zp`` and of
    non-zero weights."""
    out = []
    for k, g in enumerate(range(0, len(xs), 4)):
        d = [Signal(9, name=f"absdiff{g + i}") for i in range(len(xs[g:g + 4]))]
        for di, xv in zip(d, xs[g:g + 4], strict=True):
            m.d.comb += di.eq(Mux(xv >= zp, xv - zp, zp - xv))
        out += [part.mx[k].eq(_max_tree(m, d, f"lanemax{k}")),
                part.nx[k].eq(popcount(Cat(*[xv != zp for xv in xs[g:g + 4]]))),
                part.nw[k].eq(popcount(Cat(*[wv != 0 for wv in ws[g:g + 4]])))]
    return out


def _max_tree(m, terms, name):
    """The largest of unsigned ``terms`` as a balanced tree of named signals."""
    level = 0
    while len(terms) > 1:
        nxt = []
        for k in range(0, len(terms), 2):
            if k + 1 == len(terms):
                nxt.append(terms[k])
                continue
            s = Signal(9, name=f"{name}{level}_{k // 2}")
            m.d.comb += s.eq(Mux(terms[k] > terms[k + 1], terms[k], terms[k + 1]))
            nxt.append(s)
        terms, level = nxt, level + 1
    return terms[0]
