"""RequantWriteback: the core's REQ path, from an accumulator (or a lane bank, REQW) to the
activations written back.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from sparq.spec import isa
from sparq.spec import params as spec_params

from .requant import Requantizer, bad_params, input_layout, refused_by_rounding

ADDR_FIFO_DEPTH = 16  # the results' addresses (in block RAM on the iCE40: depth is free)
_Q31_KEYS = ("multiplier", "shift", "output_zero_point", "act_min", "act_max")


def param_word_layout():
    """A channel's word in the parameter memory: its bias and requantizer parameters."""
    return data.StructLayout({"bias": signed(32), "multiplier": signed(32), "shift": signed(6),
                              "output_zero_point": signed(8), "act_min": signed(8),
                              "act_max": signed(8)})


def stored_param_layout():
    """A channel's word as a core stores it: ``param_word_layout``'s fields and ``refused``,
    the checks of ``requant.bad_params`` (the core's mode: single; a convolution core's
    dual, those that do not depend on the REQ's rounding), made when the word is written
    (``stored_param``): read from memory late in the cycle, the word then needs no
    comparison before the fault (a convolution core's fault register, another core's error
    capture)."""
    return data.StructLayout({**{k: f.shape for k, f in param_word_layout()}, "refused": 1})


def stored_param(p, mode="dual"):
    """The ``stored_param_layout`` word of ``param_word_layout`` value ``p`` for a
    Requantizer in ``mode`` (``"single"`` or ``"dual"``)."""
    p = data.View(param_word_layout(), p)
    return Cat(p.as_value(), bad_params(p, mode=mode, double=Const(1)))


def conv_input_layout(prog_depth):
    """A REQ offered to a convolution machine's writeback: the scalar accumulator's value
    (``acc``), whether it reads a lane bank (``bank``: a REQW) and which (``bank_no``), its
    rounding (``round``: 1 tflite, 0 single), channel ``ch``, output element ``addr`` (lane
    aligned for a REQW) and ``pc``."""
    return data.StructLayout({
        "acc": signed(32), "bank": 1, "bank_no": range(isa.N_BANKS), "round": 1,
        "ch": isa.field_width("ch", "REQ"), "addr": isa.field_width("oaddr", "REQ"),
        "pc": range(prog_depth)})


class RequantWriteback(wiring.Component):
    """A REQ: an accumulator and its channel's parameters into the Requantizer, and the int8
    result written to activation ``addr`` when it leaves (a FIFO of addresses); the
    Requantizer never stalls (its output is always taken). Bit-exact reference:
    ``golden.sequencer._req`` (``golden.requant.requantize_q31``).

    ``conv=False`` (the machine without the convolution extensions): ``single`` mode,
    the parameters ``p`` in the payload, one REQ a cycle, the result written
    ``latency`` cycles after it is taken.

    ``conv=True``: the Requantizer in ``dual`` mode, each REQ rounding as its ``round`` bit
    says (1 tflite double rounding, 0 single); the parameters from the writeback's own read
    port of the parameter memory (``p_addr``/``p_data``). A scalar REQ (``bank`` 0) is as
    above: ``acc``, no bias added. A REQW (``bank`` 1) of bank ``b``, channel ``c``, output
    ``oa``, taken in cycle ``t``: lane ``i`` (``i < lanes``), as the bank holds it in cycle
    ``t+i`` (read a cycle ahead, below), plus ``bias[c+i]`` (which must fit int32)
    enters the Requantizer with channel ``c+i``'s parameters in that cycle, and its result
    is written to element ``oa+i`` in cycle ``t+i+latency``; ``i.ready`` is low in cycles
    ``t+1 .. t+lanes-1``. Parameter memory: ``param_ram="async"``, ``p_data`` shows
    ``p_addr``'s word in the same cycle: ``p_addr`` is the channel of the lane entering
    now, else ``i.payload.ch``; ``"sync"`` (block RAM), it shows it the cycle after:
    ``p_addr`` is the channel of the lane entering next cycle, else ``i.payload.ch`` (a REQ
    is taken the cycle after it was first offered at the earliest; the cycle a REQ is
    taken, ``p_addr`` is ``ch + 1``). Lane 0 is read in cycle ``t`` (``bank_rd_first``,
    comb: no lane multiplexer), its sum with the bias and the Requantizer's input stage
    sharing that cycle (the contract, ``golden.core._Timing.req``, leaves none for a
    register between them); lane ``i >= 1`` is read a cycle ahead, in ``t+i-1``
    (``bank_rd_lane``, ``bank_rd_value``), into a register: the bank is not written while it
    is read out (a DOT into it and its CLR wait), so the value is the same.

    ================== ===== ======================================================
    ``i``              In    stream of REQs: ``acc``, ``p`` (``requant.param_layout``),
                             ``refused`` (``p``'s ``requant.bad_params``, single
                             mode: ``stored_param``'s, made when the channel's word
                             was written), ``addr``; with ``conv``,
                             ``conv_input_layout``
    ``wr_en``          Out   a result is written now: ``wr_value`` to element ``wr_addr``
                             (the memory must take it)
    ``pending``        Out   some result is in flight (taken, not yet written)
    ``fault``          Out   the REQ (or REQW lane) entering the Requantizer now has
                             parameters it refuses (``requant.bad_params``) or, a lane,
                             a sum with its bias outside int32 (golden raises there);
                             with ``conv``, the one that entered two cycles before
                             (registered twice: the parameters come late from block
                             RAM, and the bias sum is a long carry chain)
    ``fault_pc``       Out   (conv) the pc of that REQ (registered with ``fault``)
    ``wr_last``        Out   (conv) the result written now is its REQ's last: its word
                             counts as written (the feeder's hazards)
    ``p_addr``         Out   (conv) the channel to read (``range(channels)``)
    ``p_data``         In    (conv) its ``stored_param_layout`` word (see above)
    ``bank_rd_sel``    Out   (conv) the bank to read, ``bank_rd_lane`` its lane (the
                             next cycle's);
    ``bank_rd_value``  In    the lane's int32 value (comb); ``bank_rd_first``: lane 0's
    ``bank_busy``      Out   (conv) bit ``b``: bank ``b`` is read out in this cycle
                             (cycles ``t .. t+lanes-1`` of its REQW; comb in ``t``);
                             ``bank_busy_next``: in the next cycle (CLR of a bank and a
                             DOT's first beat into it wait for the read-out)
    ================== ===== ======================================================
    """

    def __init__(self, *, x_depth=256, short=False, conv=False, lanes=16, channels=64,
                 prog_depth=512, param_ram="async"):
        spec_params.flag("conv", conv)
        if param_ram not in spec_params.PARAM_RAMS:
            raise ValueError(f"param_ram must be one of {spec_params.PARAM_RAMS}, "
                             f"not {param_ram!r}")
        if conv:
            spec_params.machine(lanes=lanes, x_depth=x_depth, channels=channels,
                                prog_depth=prog_depth)
        else:
            spec_params.int_in("x_depth", x_depth, 1, 1 << 14)
        self._p = dict(x_depth=x_depth, short=bool(short), conv=conv, lanes=lanes,
                       channels=channels, prog_depth=prog_depth, param_ram=param_ram)
        self._req = Requantizer(mode="dual" if conv else "single", short=short)
        assert ADDR_FIFO_DEPTH >= self._req.latency + 1  # the FIFO never fills
        super().__init__(self._conv_ports() if conv else self._ports())

    def _ports(self):
        layout = input_layout(**self._req.params)
        return {
            "i": In(stream.Signature(data.StructLayout({
                "acc": layout["acc"].shape, "p": layout["p"].shape, "refused": 1,
                "addr": isa.field_width("oaddr", "REQ")}))),
            "wr_en": Out(1), "wr_addr": Out(range(self._p["x_depth"])),
            "wr_value": Out(signed(8)), "pending": Out(1), "fault": Out(1),
        }

    def _conv_ports(self):
        p = self._p
        return {
            "i": In(stream.Signature(conv_input_layout(p["prog_depth"]))),
            "wr_en": Out(1), "wr_addr": Out(range(p["x_depth"])), "wr_value": Out(signed(8)),
            "wr_last": Out(1), "pending": Out(1),
            "fault": Out(1), "fault_pc": Out(range(p["prog_depth"])),
            "p_addr": Out(range(p["channels"])), "p_data": In(stored_param_layout()),
            "bank_rd_sel": Out(range(isa.N_BANKS)), "bank_rd_lane": Out(range(p["lanes"])),
            "bank_rd_value": In(signed(32)), "bank_rd_first": In(signed(32)),
            "bank_busy": Out(isa.N_BANKS), "bank_busy_next": Out(isa.N_BANKS),
        }

    @property
    def params(self):
        return dict(self._p)

    @property
    def latency(self):
        """Cycles from a value entering the Requantizer to its result's write."""
        return self._req.latency

    @property
    def in_flight(self):
        """The most results (and REQs) in flight at once: the Requantizer never stalls (its
        output is always taken), so ``latency + 1`` (the FIFO's depth is never the limit)."""
        return min(self._req.latency + 1, ADDR_FIFO_DEPTH)

    def elaborate(self, platform):
        m = Module()
        m.submodules.requantizer = req = self._req
        addr_bits = (self._p["x_depth"] - 1).bit_length()
        m.submodules.addr_fifo = fifo = SyncFIFOBuffered(
            width=addr_bits + self._p["conv"], depth=ADDR_FIFO_DEPTH)
        if self._p["conv"]:
            enter = self._conv_input(m, req, fifo)
        else:
            enter = self._scalar_input(m, req, fifo)
        count = Signal(range(self.in_flight + 1))
        m.d.sync += count.eq(count + enter - req.o.valid)
        m.d.comb += self.pending.eq(count != 0)
        return m

    def _scalar_input(self, m, req, fifo):
        """``conv=False``: the payload's accumulator and parameters, one REQ a cycle.
        Returns the Requantizer's input transfer."""
        take = self.i.valid & self.i.ready
        m.d.comb += [req.i.payload.acc.eq(self.i.payload.acc),
                     req.i.payload.p.eq(self.i.payload.p),
                     req.i.valid.eq(self.i.valid & fifo.w_rdy),
                     self.i.ready.eq(req.i.ready & fifo.w_rdy),
                     fifo.w_data.eq(self.i.payload.addr), fifo.w_en.eq(take),
                     self.fault.eq(take & self.i.payload.refused),
                     req.o.ready.eq(1), fifo.r_en.eq(req.o.valid),
                     self.wr_en.eq(req.o.valid), self.wr_addr.eq(fifo.r_data),
                     self.wr_value.eq(req.o.payload)]
        return take

    def _conv_input(self, m, req, fifo):
        """``conv=True``: a scalar REQ, or a REQW's lanes one a cycle (``_readout``), with
        the parameters read at ``p_addr`` and, for a lane, its bias added. Returns the
        Requantizer's input transfer."""
        u, p, lanes = self.i.payload, self.p_data, self._p["lanes"]
        r = self._readout(m)
        addr_bits = len(fifo.w_data) - 1
        from_bank, total = Signal(), Signal(signed(33))  # (a lane's sum with its bias)
        double = Signal()
        lane_r = Signal(signed(32), name="bank_lane_ahead")  # lane r.lane, read a cycle ago
        m.d.sync += lane_r.eq(self.bank_rd_value)
        m.d.comb += [self.i.ready.eq(req.i.ready & fifo.w_rdy & ~r.active),
                     req.i.valid.eq(r.active | (self.i.valid & fifo.w_rdy)),
                     r.take.eq(self.i.valid & self.i.ready),
                     self.bank_rd_sel.eq(Mux(r.active, r.sel, u.bank_no)),
                     self.bank_rd_lane.eq(Mux(r.active, r.ahead, 1)),
                     from_bank.eq(r.active | u.bank), double.eq(Mux(r.active, r.rnd, u.round)),
                     total.eq(Mux(r.active, lane_r, self.bank_rd_first) + p.bias),
                     req.i.payload.acc.eq(Mux(from_bank, total[:32], u.acc)),
                     req.i.payload.double.eq(double),
                     fifo.w_data.eq(Cat(Mux(r.active, Cat(r.lane, r.word), u.addr)[:addr_bits],
                                        r.last_lane)),
                     fifo.w_en.eq(req.i.valid & req.i.ready),
                     req.o.ready.eq(1), fifo.r_en.eq(req.o.valid),
                     self.wr_en.eq(req.o.valid), self.wr_addr.eq(fifo.r_data[:addr_bits]),
                     self.wr_last.eq(fifo.r_data[addr_bits]), self.wr_value.eq(req.o.payload)]
        m.d.comb += [getattr(req.i.payload.p, k).eq(getattr(p, k)) for k in _Q31_KEYS]
        # the fault in two registered stages (the parameters come late from block RAM and
        # the bias sum is a long carry chain): the sum's top bits and the parameters'
        # verdict, then whether the sum leaves int32
        top, bad, lane, pc = Signal(2), Signal(), Signal(), Signal.like(self.fault_pc)
        m.d.sync += [top.eq(total[31:]), lane.eq(fifo.w_en & from_bank),
                     bad.eq(fifo.w_en & (p.refused | refused_by_rounding(p, double))),
                     pc.eq(Mux(r.active, r.pc, u.pc)),
                     self.fault.eq(bad | (lane & (top[0] != top[1]))),
                     self.fault_pc.eq(pc)]
        self._param_address(m, r)
        # which bank is read out now and next cycle
        wide = r.take & u.bank
        for b in range(isa.N_BANKS):
            now, later = wide & (u.bank_no == b), r.active & (r.sel == b)
            m.d.comb += [self.bank_busy[b].eq(now | later),
                         self.bank_busy_next[b].eq((now if lanes > 1 else 0)
                                                   | (later & ~r.last))]
        return fifo.w_en

    def _readout(self, m):
        """The state of a REQW's read-out: ``active`` in its cycles after the first (``t+1
        .. t+lanes-1``), the ``lane`` entering now (0 outside), its bank (``sel``), output
        word, rounding (``rnd``) and ``pc``; ``ch``: with ``param_ram="sync"`` the channel of
        the next lane, else of the current one; ``ahead``: the next lane (read a cycle
        ahead). ``take`` (set by the caller): the offered
        REQ is taken now. ``last_lane``: the value entering now is its REQ's last."""
        u, lanes = self.i.payload, self._p["lanes"]
        low = (lanes - 1).bit_length()
        r = SimpleNamespace(
            take=Signal(), active=Signal(), lane=Signal(range(lanes)),
            ahead=Signal(range(lanes), name="lane_ahead"),
            sel=Signal(range(isa.N_BANKS)), word=Signal(range(self._p["x_depth"] // lanes)),
            rnd=Signal(), pc=Signal(range(self._p["prog_depth"])),
            ch=Signal(range(self._p["channels"]), name="lane_ch"), last=Signal(),
            last_lane=Signal())
        sync_p = self._p["param_ram"] == "sync"  # the parameters are read a cycle ahead
        m.d.comb += [r.last.eq(r.lane == lanes - 1),
                     r.last_lane.eq(Mux(r.active, r.last, ~u.bank if lanes > 1 else 1))]
        if lanes == 1:  # a REQW is one lane: nothing to read out after its cycle
            return r
        with m.If(r.take & u.bank):
            m.d.sync += [r.active.eq(1), r.lane.eq(1), r.ahead.eq(2 % lanes),
                         r.sel.eq(u.bank_no),
                         r.word.eq(u.addr >> low), r.rnd.eq(u.round), r.pc.eq(u.pc),
                         r.ch.eq(u.ch + 1 + sync_p)]
        with m.Elif(r.active):
            m.d.sync += [r.lane.eq(r.lane + 1), r.ahead.eq(r.ahead + 1), r.ch.eq(r.ch + 1)]
            with m.If(r.last):
                m.d.sync += [r.active.eq(0), r.lane.eq(0)]
        return r

    def _param_address(self, m, r):
        """``p_addr``: the channel whose parameters ``p_data`` must show, this cycle (async)
        or the next (sync). Synchronous: while a REQW has a lane to come, that lane's; the
        cycle a REQ is taken, ``ch + 1`` (its next lane; a scalar REQ's next cycle needs
        nothing: the next REQ was not offered yet); else the offered REQ's."""
        u = self.i.payload
        if self._p["param_ram"] == "async":
            m.d.comb += self.p_addr.eq(Mux(r.active, r.ch, u.ch))
        else:
            m.d.comb += self.p_addr.eq(Mux(r.take, u.ch + 1,
                                           Mux(r.active & ~r.last, r.ch, u.ch)))
