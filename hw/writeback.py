"""RequantWriteback: the core's REQ path, from an accumulator to an activation written back.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from sparq.spec import isa
from sparq.spec import params as spec_params

from .requant import Requantizer, bad_params, input_layout

ADDR_FIFO_DEPTH = 16  # the results' addresses (in block RAM on the iCE40: depth is free)


class RequantWriteback(wiring.Component):
    """A REQ: an accumulator and its channel's parameters into the Requantizer (``single``
    mode, ``short`` as asked), and the int8 result written to activation ``addr`` when it
    leaves (a FIFO of addresses). Bit-exact reference: ``golden.requant.requantize``
    (``mode="single"``); latency ``Requantizer.latency``, one REQ a cycle.

    ============== ===== ==========================================================
    ``i``          In    stream of ``acc``, ``p`` (``requant.param_layout``) and ``addr``
    ``wr_en``      Out   a result is written now: ``wr_value`` to element ``wr_addr``
                         (the memory must take it: the Requantizer does not stall)
    ``pending``    Out   some REQ is in flight (taken, not yet written)
    ``fault``      Out   the REQ taken now has parameters the Requantizer refuses
                         (``requant.bad_params``; golden raises there)
    ============== ===== ==========================================================
    """

    def __init__(self, *, x_depth=256, short=False):
        self._p = dict(x_depth=spec_params.int_in("x_depth", x_depth, 1, 1 << 10),
                       short=bool(short))
        self._req = Requantizer(mode="single", short=short)
        layout = input_layout(**self._req.params)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "acc": layout["acc"].shape, "p": layout["p"].shape,
                "addr": isa.field_width("oaddr", "REQ")}))),
            "wr_en": Out(1), "wr_addr": Out(range(x_depth)), "wr_value": Out(signed(8)),
            "pending": Out(1), "fault": Out(1),
        })

    @property
    def params(self):
        return dict(self._p)

    @property
    def latency(self):
        return self._req.latency

    @property
    def in_flight(self):
        """The most results in flight at once: the Requantizer never stalls (its output is
        always taken), so ``latency + 1`` (the FIFO's depth is never the limit)."""
        return min(self._req.latency + 1, ADDR_FIFO_DEPTH)

    def elaborate(self, platform):
        m = Module()
        m.submodules.requantizer = req = self._req
        m.submodules.addr_fifo = fifo = SyncFIFOBuffered(
            width=(self._p["x_depth"] - 1).bit_length(), depth=ADDR_FIFO_DEPTH)
        take = self.i.valid & self.i.ready
        m.d.comb += [req.i.payload.acc.eq(self.i.payload.acc),
                     req.i.payload.p.eq(self.i.payload.p),
                     req.i.valid.eq(self.i.valid & fifo.w_rdy),
                     self.i.ready.eq(req.i.ready & fifo.w_rdy),
                     fifo.w_data.eq(self.i.payload.addr), fifo.w_en.eq(take),
                     self.fault.eq(take & bad_params(self.i.payload.p, mode="single")),
                     req.o.ready.eq(1), fifo.r_en.eq(req.o.valid),
                     self.wr_en.eq(req.o.valid), self.wr_addr.eq(fifo.r_data),
                     self.wr_value.eq(req.o.payload)]
        count = Signal(range(self.in_flight + 1))
        m.d.sync += count.eq(count + take - req.o.valid)
        m.d.comb += self.pending.eq(count != 0)
        return m
