"""DotFeeder: the core's DOT queue, which streams each DOT's beats into the engine, and the
hazards between those reads and the activation writes of REQ results in flight; on a
convolution machine (``conv=True``) also window DOTs (``WindowTaps``: which taps of SETG's
window are kept) and DOTs into the lane banks.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import isa
from sparq.spec import params as spec_params

from .encodings import ZP_BITS
from .seq_execute import window_layout
from .sparse_dot import beat_layout

N_ACC, N_BANKS = isa.N_ACC, isa.N_BANKS
LOOP_INDEX_BITS = isa.field_width("count", "LOOP")  # i0, i1: loop indices of levels 0, 1
MAX_BEATS = (1 << isa.field_width("beats", "DOT")) - 1
MAX_KW = (1 << isa.field_width("kw", "SETG")) - 1


def acc_shape(conv=False):
    """An accumulator number: 0..N_ACC-1, and on a convolution machine the banks too."""
    return range(N_ACC + (N_BANKS if conv else 0))


def dot_layout(prog_depth, *, conv=False):
    """A DOT to run: ``beats`` words of activations from element address ``xaddr`` (aligned)
    and of weights from ``waddr`` (both effective addresses), into accumulator ``acc``, with
    the activation zero point ``zp``; ``pc`` names its instruction. With ``conv``: ``win``
    (a window DOT: its beats are the taps of the window ``geom`` kept at output pixel
    ``(i0, i1)``, the loop indices of levels 0 and 1) and ``acc`` up to the banks."""
    fields = {
        "xaddr": isa.field_width("xaddr", "DOT"), "waddr": isa.field_width("waddr", "DOT"),
        "beats": isa.field_width("beats", "DOT"), "acc": acc_shape(conv), "zp": signed(ZP_BITS),
        "pc": range(prog_depth)}
    if conv:
        fields.update(win=1, i0=LOOP_INDEX_BITS, i1=LOOP_INDEX_BITS, geom=window_layout())
    return data.StructLayout(fields)


def tag_layout(prog_depth, *, conv=False):
    """What a DOT's result needs when the engine delivers it: its accumulator and pc."""
    return data.StructLayout({"acc": acc_shape(conv), "pc": range(prog_depth)})


def _bounds(shape_lo, shape_hi):
    """The shape holding every integer in [shape_lo, shape_hi]."""
    return Shape.cast(range(shape_lo, shape_hi + 1))


def window_dot_layout():
    """The fields of a DOT (``dot_layout(conv=True)``'s) that choose a window's taps."""
    full = dot_layout(2, conv=True)
    return data.StructLayout({k: full[k].shape
                              for k in ("xaddr", "waddr", "beats", "i0", "i1", "geom")})


def taps_layout(*, lanes, w_depth):
    """What ``WindowTaps`` finds for a DOT (words are activation / weight word indices;
    ``(y0, x0)`` the first kept tap, rows ``y0..yl`` kept, columns ``x0..x1`` of each, the
    last row's up to ``xl``):

    ============ ========================================================================
    ``nonempty`` some tap is kept
    ``lo``       the first kept tap's word: the lowest (the pitches are not negative)
    ``hi_a``     the last tap's word (tap ``(yl, xl)``)
    ``hi_b``     the last word of the row before (tap ``(yl - 1, x1)``)
    ``two``      that word counts (the last row is cut short by ``beats`` and not the
                 first): the highest word is the larger of the two, else ``hi_a``
    ``w0``       the first kept tap's weight word, ``waddr / lanes + y0 * kw + x0``
    ``ncol``     ``x1 - x0``; ``rows``: ``yl - y0``; ``lastcol``: ``x1 - xl``
    ``last0``    the first kept tap is the only one
    ``rp``, ``pp``, ``kw``: the row and pixel pitches and the kernel width (the walk's steps)
    ============ ========================================================================
    """
    xw_max = ((1 << isa.field_width("xaddr", "DOT")) - 1) // lanes
    rpm, ppm = _pitch_max()
    return data.StructLayout({
        "nonempty": 1, "two": 1, "last0": 1,
        "lo": _bounds(-3 * rpm - 3 * ppm, xw_max),
        "hi_a": _bounds(-4 * rpm - 4 * ppm, xw_max + 15 * rpm + 7 * ppm),
        "hi_b": _bounds(-5 * rpm - 4 * ppm, xw_max + 15 * rpm + 7 * ppm),
        "w0": range(w_depth // lanes),
        "ncol": range(MAX_BEATS), "rows": range(MAX_BEATS), "lastcol": range(MAX_BEATS),
        "rp": isa.field_width("rowpitch", "SETG"), "pp": isa.field_width("pixpitch", "SETG"),
        "kw": isa.field_width("kw", "SETG")})


def _pitch_max():
    """The largest row and pixel pitches."""
    return ((1 << isa.field_width("rowpitch", "SETG")) - 1,
            (1 << isa.field_width("pixpitch", "SETG")) - 1)


def _span_layout(*, lanes, w_depth):
    """What ``WindowTaps``' first half hands its second (``window_span``): the fields it
    passes on, its comparisons, the small indices, and its products (``r*`` of the row
    pitch, ``p*`` of the pixel pitch, by the candidates for ``yl + 1`` and ``xl + 1``)."""
    rp, pp = isa.field_width("rowpitch", "SETG"), isa.field_width("pixpitch", "SETG")
    rpm, ppm = _pitch_max()
    low = (lanes - 1).bit_length()
    flags = ("some", "cut", "bc0", "bc1", "x1k", "qx_lt_e", "qx_lt_k", "e_pos", "x_pos")
    return data.StructLayout({
        "xw": isa.field_width("xaddr", "DOT") - low, "ww": range(w_depth // lanes),
        "kw": isa.field_width("kw", "SETG"), "rp": rp, "rp3": rp + 2, "pp": pp, "pp3": pp + 2,
        "my": 2, "mx": 2, "y0": 2, "x0": 2, **dict.fromkeys(flags, 1),
        "ey_lo": 4, "ex_lo": 3, "qy": range(MAX_BEATS), "qx": range(MAX_KW),
        "rey": rp + 4, "rq": rp + 4, "rqp": rp + 4, "pkw": pp + 3, "pex": pp + 3, "pqp": pp + 3,
        "ka": _bounds(-4 * rpm - 4 * ppm, (1 << isa.field_width("xaddr", "DOT") - low) - 1),
        "kb": _bounds(-5 * rpm - 4 * ppm, (1 << isa.field_width("xaddr", "DOT") - low) - 1)})


class WindowTaps(wiring.Component):
    """The taps of a window DOT (``dot_layout(conv=True)``'s fields) that are kept, as
    ``taps_layout`` describes them. Tap ``k < beats`` is ``(ky, kx) = divmod(k, kw)`` at
    word ``xaddr / lanes + (ky - pt) * rowpitch + (kx - pl) * pixpitch``; it is kept when
    ``0 <= i0 * sy + ky - pt < ih`` and ``0 <= i1 * sx + kx - pl < iw``. The kept taps are
    rows ``y0..yl`` of columns ``x0..x1`` (the last row up to ``xl``): ``y0 = max(0, pt -
    i0 * sy)``, rows below ``ey = ih + pt - i0 * sy`` and within ``beats``; columns likewise
    (below ``ex = iw + pl - i1 * sx``) and below ``kw``. A window with ``ih``, ``iw`` or
    ``kw`` 0 (none set) keeps no tap.

    ``latency`` 0: combinational; 1: a register (``window_span``) between the two halves
    below, so the outputs show the DOT presented in the cycle before.

    Bit-exact reference: ``golden.sequencer._dot_beats`` (the taps, in order).

    Arithmetic, in two halves of at most three adders in series each. With the base ``b =
    xw - (pt + 1) * rowpitch - (pl + 1) * pixpitch`` (``xw = xaddr / lanes``), tap ``(ky,
    kx)``'s word is ``b + (ky + 1) * rowpitch + (kx + 1) * pixpitch``: ``hi_a`` is that of
    ``(yl, xl)``, ``hi_b`` that of ``(yl - 1, x1)`` (from the base ``b - rowpitch``), and
    ``lo = xw - (pt - y0) * rowpitch - (pl - x0) * pixpitch``. The first half: ``i0 * sy``
    a shift-and-add (``sy`` <= 3), ``ey`` one subtraction after it, compared with ``qy`` and
    ``qy + 1`` (``divmod(beats - 1, kw)`` and what follows from it: a table of ``beats`` and
    ``kw``); the columns' likewise (``ex`` with ``kw`` and ``qx + 1``); ``i0 * sy < pt``
    from a table of the low bits (no product); the bases (a multiplexer of a pitch's
    multiples, ``3r`` one adder, then two subtractions); and a pitch's products by each
    candidate for ``yl + 1`` (``ey``, ``qy``, ``qy + 1``) and for ``xl + 1`` (``ex``,
    ``kw``, ``qx + 1``), of four bits or fewer: radix-4 digits (multiplexers of ``0, r, 2r,
    3r``) summed, one adder. The second half chooses the last row and column from the
    comparisons (multiplexers of small values) and adds: ``hi_a``, ``hi_b`` and ``lo`` two
    adders each after a multiplexer, ``w0`` a short shift-and-add beside one adder, then one.
    """

    def __init__(self, *, lanes=16, w_depth=4096, latency=0):
        m = spec_params.machine(lanes=lanes, w_depth=w_depth, x_depth=lanes)  # (the checks)
        if latency not in (0, 1):
            raise ValueError(f"latency must be 0 or 1, not {latency!r}")
        self._p = dict(lanes=m["lanes"], w_depth=m["w_depth"], latency=latency)
        super().__init__({"i": In(window_dot_layout()),
                          "o": Out(taps_layout(lanes=lanes, w_depth=w_depth))})

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        layout = _span_layout(lanes=self._p["lanes"], w_depth=self._p["w_depth"])
        span = Signal(layout, name="span")
        self._first_half(m, span)
        if self._p["latency"]:
            held = Signal(layout, name="window_span")
            m.d.sync += held.eq(span)
            span = held
        self._second_half(m, span)
        return m

    def _first_half(self, m, s):
        """From the DOT's fields: ``s`` (``_span_layout``)."""
        u, g = self.i, self.i.geom
        low = (self._p["lanes"] - 1).bit_length()
        rp, pp = g.rowpitch, g.pixpitch
        s_y, s_x = _times(m, g.sy, u.i0, "s_y"), _times(m, g.sx, u.i1, "s_x")
        # rows ky < ey and columns kx < ex are inside the image (ky >= pt - i0 * sy, ...)
        s_max = (1 << LOOP_INDEX_BITS) - 1
        ey = Signal(_bounds(-3 * s_max, (1 << len(g.ih)) + 2), name="ey")
        ex = Signal(_bounds(-3 * s_max, (1 << len(g.iw)) + 2), name="ex")
        m.d.comb += [ey.eq(g.ih + g.pt - s_y), ex.eq(g.iw + g.pl - s_x)]
        # the rows and columns the window has above and left of the image: y0, x0 dropped
        lt_y, lt_x = _below(u.i0, g.sy, g.pt), _below(u.i1, g.sx, g.pl)
        x0 = Signal(2, name="x0")
        m.d.comb += [x0.eq(Mux(lt_x, g.pl - s_x[:2], 0)),
                     s.my.eq(Mux(lt_y, s_y[:2], g.pt)), s.mx.eq(Mux(lt_x, s_x[:2], g.pl)),
                     s.y0.eq(Mux(lt_y, g.pt - s_y[:2], 0)), s.x0.eq(x0)]
        q = _divmod_table(m, u.beats, g.kw)
        # the last row is qy (qy - 1 when row qy's columns end before x0: ``cut``) unless the
        # image ends at or above it (ey <= it: ``bc0``, ``bc1``); the last column qx if
        # below ex - 1 and kw - 1, else the row's last: x1 = min(ex, kw) - 1
        m.d.comb += [s.some.eq((g.kw != 0) & (u.beats != 0)), s.cut.eq(x0 > q.qx),
                     s.bc0.eq(ey <= q.qy), s.bc1.eq(ey < q.qy), s.x1k.eq(ex >= g.kw),
                     s.qx_lt_e.eq(q.qx_next < ex), s.qx_lt_k.eq(q.qx_inside),
                     s.e_pos.eq(ey > 0), s.x_pos.eq(ex > 0), s.ey_lo.eq(ey[:4]),
                     s.ex_lo.eq(ex[:3]), s.qy.eq(q.qy), s.qx.eq(q.qx)]
        m.d.comb += [s.xw.eq(u.xaddr >> low), s.ww.eq(u.waddr >> low), s.kw.eq(g.kw),
                     s.rp.eq(rp), s.rp3.eq(rp + (rp << 1)), s.pp.eq(pp),
                     s.pp3.eq(pp + (pp << 1))]
        # the products (their multiplexers read ``rp3``, ``pp3``: one adder before)
        r, p = (rp, s.rp3), (pp, s.pp3)
        m.d.comb += [s.rey.eq(_product(m, ey[:4], *r, "rey")),
                     s.rq.eq(_product(m, q.qy, *r, "rq")),
                     s.rqp.eq(_product(m, q.qy_next, *r, "rqp")),
                     s.pkw.eq(_product(m, g.kw, *p, "pkw")),
                     s.pex.eq(_product(m, ex[:3], *p, "pex")),
                     s.pqp.eq(_product(m, q.qx_next, *p, "pqp"))]
        pt1, pl1 = _digit_plus_one(g.pt, *r), _digit_plus_one(g.pl, *p)
        m.d.comb += [s.ka.eq(s.xw - pt1 - pl1), s.kb.eq(s.xw - rp - pt1 - pl1)]

    def _second_half(self, m, s):
        """From ``s`` (``_span_layout``): the outputs."""
        o = self.o
        border, xlq = Signal(name="border"), Signal(name="xl_is_qx")
        yl = Signal(range(-1, MAX_BEATS), name="yl")  # -1: no row kept (x1 -1: no column)
        x1, xl = Signal(range(-1, MAX_KW), name="x1"), Signal(range(-1, MAX_KW), name="xl")
        m.d.comb += [border.eq(Mux(s.cut, s.bc1, s.bc0)),
                     yl.eq(Mux(border, Mux(s.e_pos, s.ey_lo - 1, -1), s.qy - s.cut)),
                     x1.eq(Mux(s.x1k, s.kw - 1, Mux(s.x_pos, s.ex_lo - 1, -1))),
                     xlq.eq(~s.cut & ~s.bc0 & s.qx_lt_e & s.qx_lt_k),
                     xl.eq(Mux(xlq, s.qx, x1))]
        m.d.comb += [o.nonempty.eq(s.some & (s.x0 <= x1) & (s.y0 <= yl)),
                     o.two.eq((yl > s.y0) & xlq), o.last0.eq((yl == s.y0) & (xl == s.x0)),
                     o.ncol.eq(x1 - s.x0), o.rows.eq(yl - s.y0), o.lastcol.eq(x1 - xl),
                     o.rp.eq(s.rp), o.pp.eq(s.pp), o.kw.eq(s.kw)]
        # (yl + 1) * rowpitch, (x1 + 1) and (xl + 1) * pixpitch: chosen among the products
        yp, xe, xlp = (Signal(len(s[k]), name=n)
                       for k, n in (("rq", "yl_rp"), ("pkw", "x1_pp"), ("pkw", "xl_pp")))
        m.d.comb += [yp.eq(Mux(border, s.rey, Mux(s.cut, s.rq, s.rqp))),
                     xe.eq(Mux(s.x1k, s.pkw, s.pex)), xlp.eq(Mux(xlq, s.pqp, xe))]
        r, p = (s.rp, s.rp3), (s.pp, s.pp3)
        m.d.comb += [o.hi_a.eq(s.ka + yp + xlp), o.hi_b.eq(s.kb + yp + xe),
                     o.lo.eq(s.xw - _digit(s.my, *r) - _digit(s.mx, *p)),
                     o.w0.eq((s.ww + s.x0) + _times(m, s.y0, s.kw, "y0_kw"))]


def _times(m, v, r, name):
    """``v * r`` for a small unsigned ``v``: a shift-and-add over ``v``'s bits."""
    parts = [Mux(v[k], r << k, 0) for k in range(len(v))]
    while len(parts) > 1:  # a balanced tree of adders
        parts = [parts[k] + parts[k + 1] if k + 1 < len(parts) else parts[k]
                 for k in range(0, len(parts), 2)]
    s = Signal(len(r) + len(v), name=name)
    m.d.comb += s.eq(parts[0])
    return s


def _digit(d, r, r3):
    """``d * r`` for a digit ``d`` of one or two bits (``r3`` is ``3r``): a multiplexer."""
    if len(d) == 1:
        return Mux(d[0], r, 0)
    return Mux(d[1], Mux(d[0], r3, r << 1), Mux(d[0], r, 0))


def _digit_plus_one(d, r, r3):
    """``(d + 1) * r`` for a two-bit ``d`` (``r3`` is ``3r``): a multiplexer."""
    return Mux(d[1], Mux(d[0], r << 2, r3), Mux(d[0], r << 1, r))


def _product(m, v, r, r3, name):
    """``v * r`` for ``v`` of up to four bits: its radix-4 digits' multiples of ``r``
    (``_digit``) summed, one adder."""
    if len(v) > 4:
        raise ValueError(f"a factor of at most 4 bits, not {len(v)}")
    digits = [_digit(v[k:k + 2], r, r3) << k for k in range(0, len(v), 2)]
    s = Signal(len(r) + len(v), name=name)
    m.d.comb += s.eq(sum(digits[1:], digits[0]))
    return s


def _below(i, s, v):
    """``i * s < v`` for two-bit ``s`` and ``v``, without the product: with ``s`` > 0 only
    ``i`` < 4 can be below ``v`` <= 3, so a table of ``i``'s two low bits, ``s`` and ``v``."""
    table = sum(1 << (16 * a + 4 * b + c)
                for a in range(4) for b in range(4) for c in range(4) if a * b < c)
    return ((i[2:] == 0) | (s == 0)) & Const(table, 64).bit_select(Cat(v, s, i[:2]), 1)


def _divmod_table(m, beats, kw):
    """``divmod(beats - 1, kw)`` (``qy``, ``qx``; ``kw`` 1..7, ``beats`` 1..; else 0, 0),
    ``qy + 1``, ``qx + 1`` and whether ``qx < kw - 1`` (``qx_inside``), from a table."""
    layout = data.StructLayout({"qy": range(MAX_BEATS), "qx": range(MAX_KW),
                                "qy_next": range(MAX_BEATS + 1), "qx_next": range(MAX_KW + 1),
                                "qx_inside": 1})

    def entry(b, k):
        qy, qx = divmod(b - 1, k) if b and k else (0, 0)
        return layout.const({"qy": qy, "qx": qx, "qy_next": qy + 1, "qx_next": qx + 1,
                             "qx_inside": int(qx < k - 1)}).as_value()
    table = Array(entry(b, k) for k in range(MAX_KW + 1) for b in range(MAX_BEATS + 1))
    q = Signal(layout, name="beats_divmod")
    m.d.comb += q.eq(table[Cat(beats, kw)])
    return q


class DotFeeder(wiring.Component):
    """A queue of two DOTs, each taken from ``dot`` in one cycle, whose beats it streams
    into the engine (``o``): an address stage (``x_addr``, ``w_addr`` into the activation
    and weight memories' synchronous read ports), then the words read (``x_data``,
    ``w_data``) in the engine's input register with each weight's precision level
    (``level``). So the Sequencer goes on with other uops while a DOT runs.

    Ports:

    ================== ===== ======================================================
    ``dot``            In    stream of ``dot_layout(prog_depth, conv=conv)``: ready while
                             the queue has room (a window DOT with ``window_wait``: and
                             it was offered in each of the ``window_wait`` cycles
                             before)
    ``o``              Out   stream of ``sparse_dot.beat_layout(lanes, banks=conv)``, to
                             the engine
    ``zp``             Out   the zero point of the DOT whose beat ``o`` shows (the
                             engine's ``x_zero_point``, which it samples with each beat)
    ``tag``            Out   pulse (``valid``) with a DOT's ``acc`` and ``pc`` when its
                             last beat is handed over; the receiver must have room
                             (``ready`` is not looked at: the core takes a DOT only while
                             it has)
    ``x_addr``         Out   activation word to read (``x_data`` shows it the cycle after)
    ``w_addr``         Out   weight word to read (``w_data`` the cycle after)
    ``w_nz``           In    (``stored_nz``) the word's non-zero bits, beside ``w_data``
                             (``WeightBanks(nz_bits=True)``): the beat's ``wnz``
    ``wr_issue``       In    a REQ is issued now that will write element ``wr_addr``
    ``wr_blocked``     Out   that REQ must wait: a queued DOT, or the beat in the engine's
                             input register, reads its region (comb from ``wr_addr``)
    ``wr_land``        In    a REQ result is written now, to element ``wr_land_addr``
    ``busy``           Out   a DOT queued or a beat in the input register
    ``dot_empty``      Out   (conv) the DOT offered has no kept tap: taken, it is dropped
                             (nothing reaches the engine, no ``tag``: not pending)
    ``dot_fault``      Out   (conv) the window DOT offered keeps a tap outside the
                             activation memory (``golden.sequencer`` raises
                             IllegalInstruction there; with ``window_wait``, known
                             ``window_wait`` cycles after it is first offered, low
                             before): the core does not offer it (taken, it would run,
                             its words wrapped)
    ``bank_busy_next`` In    (conv) bit ``b``: lane bank ``b`` is read out in the next
                             cycle (a REQW taken now included)
    ================== ===== ======================================================

    Hazards, by region of ``hazard_words`` activation words: a DOT's first beat waits
    until no REQ result in flight (issued, not yet written; one written in this cycle
    still counts: the read port is not transparent) will write a region it reads (a
    counter per region, up to ``writes_in_flight``), and ``wr_blocked`` holds a REQ back
    while a DOT not yet fully read reads its region, or the beat in the input register
    (re-read while it waits) its word's. So every beat reads the words program order says
    it reads (the proof: ``tests/test_dot_feeder.py``). A window DOT reads the regions
    from its lowest to its highest kept tap word (not only those of its words); the beat
    held in the input register after its DOT left the queue blocks its own word's region
    (a window DOT's last tap need not be its highest word: ``golden.core._Timing`` blocks
    the highest region there, which lets a REQ write the word the held beat re-reads).

    Convolution machine (``conv=True``): a window DOT (``win``) streams the kept taps of
    SETG's window (``WindowTaps``) in tap order, one a cycle (a dropped tap costs none): a
    DOT with none is dropped when taken (``dot_empty``). The walk keeps the next tap's
    words in the queue's head (a step: ``+ pixpitch`` along a row, the row's first word
    ``+ rowpitch`` at its end), so the read address is a register. A DOT into a lane bank
    (``acc`` 4, 5) addresses its first beat only once the bank is read out
    (``bank_busy_next``), and its beats tell the engine (``o``'s ``bank``, ``bank_sel``,
    ``sparse_dot.beat_layout(banks=True)``). A plain
    DOT is a window of one row of ``beats`` taps a word apart. ``conv=False`` elaborates
    none of this.

    Timing: a beat a cycle while the engine takes them. The first-beat verdict (hazards,
    bank) is a flip-flop, computed the cycle before for each DOT that may head the queue
    next (the choice last: it waits for the engine's handshake); the read addresses depend
    on whether the input register moves on, not on the issue decision (words read but not
    issued are not used). Neither changes a cycle (``golden.core.predict_cycles``). A window
    DOT's taps (``WindowTaps``, then its regions) are found in the cycle it is taken
    (``window_wait=0``: a long path: the window's arithmetic, the regions' comparisons,
    the first-beat verdict). With ``window_wait`` 1 or 2, ``WindowTaps``' outputs and
    whether a kept tap is outside the memory are registered (``window_taps``; with 2,
    ``WindowTaps``' two halves too: ``latency=1``), so the cycle that takes a window DOT
    starts from registers (its regions' comparisons with constants, the first-beat
    verdict, ``dot_fault``), and a window DOT is taken at the earliest ``window_wait``
    cycles after it is first offered (the stream holds it; ``dot_shown`` counts the
    cycles): ``golden.core._Timing.dot`` takes a window DOT at ``c = max(t +
    window_wait, pops[-2] + 1)``, ``t`` the cycle it is first offered in
    (``spec.params.WINDOW_WAIT``).
    """

    def __init__(self, *, conv=False, window_wait=0, stored_nz=False, **params):
        if conv not in (False, True):
            raise ValueError(f"conv must be False or True, not {conv!r}")
        self._stored_nz = spec_params.flag("stored_nz", stored_nz)
        if window_wait not in (0, 1, 2) or (window_wait and not conv):
            raise ValueError("window_wait must be 0, or 1 or 2 with conv=True, not "
                             f"{window_wait!r} (conv={conv!r})")
        self._p = p = dict(spec_params.dot_feeder(**params), conv=bool(conv),
                           window_wait=int(window_wait))
        lanes, pd = p["lanes"], p["prog_depth"]
        # hazard regions, and the shift from an element address to its region
        self._regions = p["x_depth"] // lanes // p["hazard_words"]
        self._rlow = (lanes - 1).bit_length() + p["hazard_words"].bit_length() - 1
        ports = {
            "dot": In(stream.Signature(dot_layout(pd, conv=conv))),
            "o": Out(stream.Signature(beat_layout(lanes, banks=conv, wnz=self._stored_nz))),
            "zp": Out(signed(ZP_BITS)),
            "tag": Out(stream.Signature(tag_layout(pd, conv=conv))),
            "x_addr": Out(range(p["x_depth"] // lanes)),
            "w_addr": Out(range(p["w_depth"] // lanes)),
            "x_data": In(unsigned(8 * lanes)),
            "w_data": In(data.ArrayLayout(signed(8), lanes)),
            **({"w_nz": In(lanes)} if self._stored_nz else {}),
            "wr_issue": In(1), "wr_addr": In(isa.field_width("oaddr", "REQ")),
            "wr_blocked": Out(1),
            "wr_land": In(1), "wr_land_addr": In(range(p["x_depth"])),
            "busy": Out(1),
        }
        if conv:
            ports.update(dot_empty=Out(1), dot_fault=Out(1), bank_busy_next=In(N_BANKS))
        super().__init__(ports)

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        p = self._p
        conv = p["conv"]
        words, w_words = p["x_depth"] // p["lanes"], p["w_depth"] // p["lanes"]
        low = (p["lanes"] - 1).bit_length()
        desc = self._entry_layout(words, w_words)
        qd = [Signal(desc, name=f"dotq{k}") for k in range(2)]
        qv = [Signal(name=f"dotq{k}_valid") for k in range(2)]  # qv[1] implies qv[0]
        b = Signal(data.StructLayout({"valid": 1, "last": 1, "acc": acc_shape(conv),
                                      "zp": signed(ZP_BITS),
                                      "pc": range(p["prog_depth"]), "xw": range(words),
                                      "ww": range(w_words)}), name="beat")
        kept = self._pending_writes(m)
        ow = self.wr_addr >> self._rlow
        m.d.comb += self.wr_blocked.eq(
            ((Mux(qv[0], qd[0].reads, 0) | Mux(qv[1], qd[1].reads, 0)).bit_select(ow, 1))
            | (b.valid & ((b.xw >> (self._rlow - low)) == ow)))

        def waits_next(entry, *, queued=True):
            """A DOT ``entry`` meets a REQ result in flight next cycle (or, into a lane
            bank, its read-out); a DOT taken now (not ``queued``) cannot meet this cycle's
            REQ, which would be the same uop, so its verdict has no term for it (a shorter
            path)."""
            reads = entry.reads
            pushed = self.wr_issue & reads.bit_select(ow, 1) if queued else 0
            wait = (reads & kept).any() | pushed
            if conv:
                bank = (entry.acc - N_ACC)[:max(1, (N_BANKS - 1).bit_length())]
                wait = wait | ((entry.acc >= N_ACC) & self.bank_busy_next.bit_select(bank, 1))
            return wait

        raw = Signal()  # dotq0's first beat must wait (a flip-flop)
        if conv:
            pop = self._walk(m, qd[0], qv[0], b, raw)
            new, empty, may_take = self._intake(m, desc)
        else:
            pop = self._issue(m, qd[0], qv[0], b, raw)
            new = self._describe(m, desc)
        # ``raw`` follows dotq0: the verdict for each DOT that may be dotq0 next cycle is
        # computed before the late choice (pop waits for the engine's handshake)
        w0, w1 = waits_next(qd[0]), waits_next(qd[1])
        wn = waits_next(new, queued=False)
        take = self.dot.valid & self.dot.ready
        if conv:  # a DOT with no kept tap is taken and dropped
            enq, ready = take & ~empty, ~qv[1] & may_take
        else:
            enq, ready = take, ~qv[1]
        m.d.comb += [self.dot.ready.eq(ready), self.busy.eq(qv[0] | b.valid)]
        m.d.sync += raw.eq(w0)
        with m.If(pop):  # (a take needs dotq1 free)
            m.d.sync += [qd[0].eq(Mux(qv[1], qd[1], new)), qv[0].eq(qv[1] | enq),
                         qv[1].eq(0), raw.eq(Mux(qv[1], w1, wn))]
        with m.Elif(enq):
            with m.If(qv[0]):
                m.d.sync += [qd[1].eq(new), qv[1].eq(1)]
            with m.Else():
                m.d.sync += [qd[0].eq(new), qv[0].eq(1), raw.eq(wn)]
        return m

    def _entry_layout(self, words, w_words):
        """A queue entry: a plain DOT's words and beats; with ``conv``, the walk's state
        (the next tap's words ``xw``, ``ww``, its row's first ``xr``, ``wr``; ``col``: taps
        left in the row after it, ``rows``: rows left; ``last``, ``first``) and its steps.
        ``reads`` bit k: the DOT reads region k."""
        p = self._p
        if not p["conv"]:
            return data.StructLayout({"xw": range(words), "ww": range(w_words),
                                      "beats": len(self.dot.payload.beats),
                                      "acc": range(N_ACC), "zp": signed(ZP_BITS),
                                      "pc": range(p["prog_depth"]), "reads": self._regions})
        taps = taps_layout(lanes=p["lanes"], w_depth=p["w_depth"])
        return data.StructLayout({
            "xw": range(words), "ww": range(w_words), "xr": range(words), "wr": range(w_words),
            "col": range(MAX_BEATS), "rows": range(MAX_BEATS), "last": 1, "first": 1,
            **{k: taps[k].shape for k in ("ncol", "lastcol", "rp", "pp", "kw")},
            "acc": acc_shape(True), "zp": signed(ZP_BITS), "pc": range(p["prog_depth"]),
            "reads": self._regions})

    def _pending_writes(self, m):
        """Per region, a counter of REQ results in flight; returns ``kept``: the regions
        that still have one in flight after this cycle's arrivals."""
        bound = self._p["writes_in_flight"]
        ow, lw = self.wr_addr >> self._rlow, self.wr_land_addr >> self._rlow
        kept = Signal(self._regions)
        for k in range(self._regions):
            pend = Signal(range(bound + 1), name=f"pend_region{k}")
            down = self.wr_land & (lw == k)
            m.d.sync += pend.eq(pend + (self.wr_issue & (ow == k)) - down)
            m.d.comb += kept[k].eq(Mux(down, pend > 1, pend != 0))
        return kept

    def _describe(self, m, desc):
        """The queue entry of the DOT offered on ``dot``. It reads words [x0, x0 + beats):
        region k (words [kg, (k+1)g)) when the two meet; compares with constants and one
        short sum (a shifted mask of ones was a carry chain and a barrel shifter on the ECP5
        critical path)."""
        u, g = self.dot.payload, self._p["hazard_words"]
        low = (self._p["lanes"] - 1).bit_length()
        new = Signal(desc)
        # (the first word as the read address takes it, ``range(words)``: a DOT in range,
        # every one the Sequencer issues, is read from words [x0, x0 + beats) of that range,
        # and the sum and its comparisons stay as narrow as the word index)
        x0 = Signal(desc["xw"].shape, name="dot_x0")
        end = Signal(len(x0) + 1, name="dot_xend")
        m.d.comb += [x0.eq(u.xaddr >> low), end.eq(x0 + u.beats)]
        m.d.comb += [new.xw.eq(x0), new.ww.eq(u.waddr >> low),
                     new.beats.eq(u.beats), new.acc.eq(u.acc), new.zp.eq(u.zp),
                     new.pc.eq(u.pc),
                     new.reads.eq(Cat(*[(u.beats != 0) & (x0 < (k + 1) * g) & (end > k * g)
                                        for k in range(self._regions)]))]
        return new

    def _issue(self, m, head, head_valid, b, raw):
        """The address stage and the engine's input register: beat ``j`` of the queue's
        head is read when the input register moves on (its first beat not while ``raw``);
        returns ``pop``, the head's last beat issued."""
        j = Signal(len(head.beats))  # the next beat of the head to address
        advance, issue, last, pop = Signal(), Signal(), Signal(), Signal()
        m.d.comb += [advance.eq(~b.valid | self.o.ready),
                     issue.eq(head_valid & advance & ((j != 0) | ~raw)),
                     last.eq(j == head.beats - 1), pop.eq(issue & last)]
        xw, ww = head.xw + j, head.ww + j
        # the next beat's words, or the held beat's again while the input register keeps it
        with m.If(advance):
            m.d.comb += [self.x_addr.eq(xw), self.w_addr.eq(ww)]
        with m.Else():
            m.d.comb += [self.x_addr.eq(b.xw), self.w_addr.eq(b.ww)]
        with m.If(issue):
            m.d.sync += [b.valid.eq(1), b.last.eq(last), b.acc.eq(head.acc), b.pc.eq(head.pc),
                         b.zp.eq(head.zp),
                         b.xw.eq(xw), b.ww.eq(ww), j.eq(Mux(last, 0, j + 1))]
        with m.Elif(advance):
            m.d.sync += b.valid.eq(0)
        self._to_engine(m, b)
        return pop

    def _to_engine(self, m, b):
        """The engine's input: the beat read in the cycle before, and the tag."""
        lanes = self._p["lanes"]
        m.d.comb += [self.o.valid.eq(b.valid), self.o.payload.last.eq(b.last),
                     self.zp.eq(b.zp)]
        for i in range(lanes):
            w = self.w_data[i]
            m.d.comb += [self.o.payload.w[i].eq(w),
                         self.o.payload.x[i].eq(self.x_data[8 * i:8 * i + 8].as_signed()),
                         self.o.payload.lvl[i].eq(level(w))]
        if self._stored_nz:
            m.d.comb += self.o.payload.wnz.eq(self.w_nz)
        m.d.comb += [self.tag.payload.acc.eq(b.acc), self.tag.payload.pc.eq(b.pc),
                     self.tag.valid.eq(b.valid & b.last & self.o.ready)]
        if self._p["conv"]:  # (lane banks: the one place the beat's bank fields are set)
            bank = (b.acc - N_ACC)[:len(self.o.payload.bank_sel)]
            m.d.comb += [self.o.payload.bank.eq(b.acc >= N_ACC), self.o.payload.bank_sel.eq(bank)]

    # -- the convolution machine's (conv=True) ---------------------------------------------

    def _intake(self, m, desc):
        """The queue entry of the DOT offered on ``dot`` (returned: ``new``), whether it
        keeps no tap (``empty``) and whether it may be taken now (``may_take``): a window
        DOT's taps from ``WindowTaps`` (with ``window_wait``: its halves registered when 2,
        then its outputs and ``_outside`` in ``window_taps``; taken once it was offered in
        the ``window_wait`` cycles before: the stream holds its payload), a plain DOT's
        from its fields; then ``_entry``."""
        u, p = self.dot.payload, self._p
        wait = p["window_wait"]
        m.submodules.window = win = WindowTaps(lanes=p["lanes"], w_depth=p["w_depth"],
                                               latency=max(wait - 1, 0))
        m.d.comb += [getattr(win.i, k).eq(getattr(u, k)) for k, _ in win.i.shape()]
        taps, out, shown = win.o, self._outside(m, win.o), 1
        if wait:  # (the cycle that takes the DOT starts from these flip-flops)
            taps_r, out_r = Signal(win.o.shape(), name="window_taps"), Signal(name="window_out")
            m.d.sync += [taps_r.eq(taps), out_r.eq(out)]
            taps, out, shown = taps_r, out_r, self._shown(m, wait)
        sel = Signal(win.o.shape(), name="dot_taps")
        m.d.comb += sel.eq(Mux(u.win, taps, self._plain_taps(m, win.o.shape())))
        new = self._entry(m, desc, sel)
        m.d.comb += self.dot_fault.eq(u.win & shown & sel.nonempty & out)
        return new, ~sel.nonempty, ~u.win | shown

    def _shown(self, m, wait):
        """``dot_shown``: the DOT offered now was offered (and not taken) in each of the
        ``wait`` cycles before (a flip-flop a cycle: offered in the one before and the
        count so far)."""
        held, shown = self.dot.valid & ~self.dot.ready, 1
        for k in range(wait):
            count = Signal(name="dot_shown" if k == wait - 1 else f"dot_shown_{k + 1}")
            m.d.sync += count.eq(held & shown)
            shown = count
        return shown

    def _outside(self, m, t):
        """Whether taps ``t`` (``taps_layout``) keep a word outside the activation memory:
        ``lo`` below 0, ``hi_a`` (with ``two`` or ``hi_b``) ``words`` or more (with
        ``words`` a power of two, a test of their top bits)."""
        words = self._p["x_depth"] // self._p["lanes"]
        n = words.bit_length() - 1

        def beyond(v):
            if words != 1 << n:
                return v >= words
            return ~v[-1] & v[n:len(v) - 1].any()
        out = Signal(name="window_outside")
        m.d.comb += out.eq((t.lo < 0) | beyond(t.hi_a) | (t.two & beyond(t.hi_b)))
        return out

    def _plain_taps(self, m, layout):
        """A plain DOT as a window: one row of ``beats`` taps a word apart."""
        u, low = self.dot.payload, (self._p["lanes"] - 1).bit_length()
        t = Signal(layout, name="plain_taps")
        x0 = Signal(range(self._p["x_depth"] // self._p["lanes"]), name="dot_x0")
        m.d.comb += [x0.eq(u.xaddr >> low), t.nonempty.eq(u.beats != 0),
                     t.lo.eq(x0), t.hi_a.eq(x0 + u.beats - 1), t.w0.eq(u.waddr >> low),
                     t.ncol.eq(u.beats - 1), t.last0.eq(u.beats == 1), t.pp.eq(1)]
        return t

    def _entry(self, m, desc, t):
        """The queue entry of a DOT with taps ``t`` (``taps_layout``) and ``dot_empty``.
        Its highest word is ``t.hi_a`` or ``t.hi_b``; it reads region k (words [kg,
        (k+1)g)) when ``[t.lo, highest]`` meets it: compares with constants, as wide as a
        word index (a DOT in the memory, every one but those ``dot_fault`` names, has its
        words there: exact modulo the width)."""
        u, g = self.dot.payload, self._p["hazard_words"]
        words = self._p["x_depth"] // self._p["lanes"]
        new = Signal(desc)
        lo, hi_a, hi_b = (Signal(range(words), name=f"dot_{n}") for n in ("lo", "hi_a", "hi_b"))
        m.d.comb += [lo.eq(t.lo), hi_a.eq(t.hi_a), hi_b.eq(t.hi_b)]
        m.d.comb += [
            new.xw.eq(t.lo), new.xr.eq(t.lo), new.ww.eq(t.w0), new.wr.eq(t.w0),
            new.col.eq(t.ncol), new.rows.eq(t.rows), new.last.eq(t.last0), new.first.eq(1),
            *[new[k].eq(t[k]) for k in ("ncol", "lastcol", "rp", "pp", "kw")],
            new.acc.eq(u.acc), new.zp.eq(u.zp), new.pc.eq(u.pc),
            new.reads.eq(Cat(*[t.nonempty & (lo < (k + 1) * g)
                               & ((hi_a >= k * g) | (t.two & (hi_b >= k * g)))
                               for k in range(self._regions)])),
            self.dot_empty.eq(~t.nonempty)]
        return new

    def _walk(self, m, head, head_valid, b, raw):
        """The address stage and the engine's input register: the queue head's next tap
        (``head.xw``, ``head.ww``) is read when the input register moves on (its first not
        while ``raw``), and the head steps to the tap after it (``_step``); returns
        ``pop``, the head's last tap issued."""
        advance, issue, pop = Signal(), Signal(), Signal()
        m.d.comb += [advance.eq(~b.valid | self.o.ready),
                     issue.eq(head_valid & advance & (~head.first | ~raw)),
                     pop.eq(issue & head.last)]
        # the next tap's words, or the held beat's again while the input register keeps it
        with m.If(advance):
            m.d.comb += [self.x_addr.eq(head.xw), self.w_addr.eq(head.ww)]
        with m.Else():
            m.d.comb += [self.x_addr.eq(b.xw), self.w_addr.eq(b.ww)]
        with m.If(issue):
            m.d.sync += [b.valid.eq(1), b.last.eq(head.last), b.acc.eq(head.acc),
                         b.pc.eq(head.pc), b.zp.eq(head.zp), b.xw.eq(head.xw),
                         b.ww.eq(head.ww)]
        with m.Elif(advance):
            m.d.sync += b.valid.eq(0)
        with m.If(issue & ~head.last):
            self._step(m, head)
        self._to_engine(m, b)
        return pop

    def _step(self, m, head):
        """The head's next kept tap: the next column (``+ pp``, weight ``+ 1``), or at the
        row's end the next row's first (``xr + rp``, weight ``wr + kw``); ``last`` again."""
        end = Signal(name="walk_row_end")
        col, rows = Signal(range(MAX_BEATS), name="walk_col"), Signal(range(MAX_BEATS),
                                                                       name="walk_rows")
        m.d.comb += [end.eq(head.col == 0), col.eq(Mux(end, head.ncol, head.col - 1)),
                     rows.eq(head.rows - end)]
        m.d.sync += [head.first.eq(0), head.col.eq(col), head.rows.eq(rows),
                     head.last.eq((rows == 0) & (col == head.lastcol))]
        with m.If(end):
            m.d.sync += [head.xr.eq(head.xr + head.rp), head.xw.eq(head.xr + head.rp),
                         head.wr.eq(head.wr + head.kw), head.ww.eq(head.wr + head.kw)]
        with m.Else():
            m.d.sync += [head.xw.eq(head.xw + head.pp), head.ww.eq(head.ww + 1)]


def level(w):
    """The smallest precision level that holds int8 weight ``w`` (default widths 2, 4, 8)."""
    return Mux(w == 0, 0, Mux((w >= -2) & (w <= 1), 1, Mux((w >= -8) & (w <= 7), 2, 3)))
