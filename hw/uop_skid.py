"""UopSkid: a one-entry buffer between the Sequencer's uops and the datapath that takes
them, so that the datapath's late decision to take a uop reaches no further than a
register (not the Sequencer's program memory address).

The buffer takes the uop offered whenever it is empty (``i.ready`` is a register); the
datapath sees the held uop, else the offered one (``o``). While the buffer holds a uop the
Sequencer completes nothing (``held`` drives its ``hold``: every instruction waits, as if
the held uop were not taken yet), so the Sequencer runs exactly as it would on the
datapath's handshake directly: a uop taken by the datapath in cycle ``t`` leaves the next
instruction to complete in ``t + 1`` at the earliest either way (``golden.core``'s timing
is unchanged). Only the Sequencer's ``executed`` count runs ahead: it counts a uop when the
buffer takes it, so a uop dropped by ``flush`` (the datapath's error) was counted and never
ran (``dropped``).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class UopSkid(wiring.Component):
    """One uop of ``layout`` held between two streams.

    =========== ===== ===================================================================
    ``i``       In    stream of uops (the Sequencer's ``uop``); ``ready`` while empty
    ``o``       Out   stream to the datapath: the held uop, else ``i``'s (comb)
    ``held``    Out   a uop is held (a register: the Sequencer's ``hold``)
    ``flush``   In    drop the held uop (the datapath's error stops the run): ``o`` shows
                      nothing this cycle and the buffer is empty from the next
    ``dropped`` Out   a flush dropped a uop since the last ``clear`` (register)
    ``clear``   In    a run starts: ``dropped`` is cleared
    =========== ===== ===================================================================
    """

    def __init__(self, layout):
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout)),
                          "held": Out(1), "flush": In(1), "dropped": Out(1), "clear": In(1)})

    def elaborate(self, platform):
        m = Module()
        keep = Signal(self.i.payload.shape(), name="held_uop")
        m.d.comb += [self.i.ready.eq(~self.held),
                     self.o.valid.eq(~self.flush & (self.held | self.i.valid)),
                     self.o.payload.eq(Mux(self.held, keep, self.i.payload))]
        with m.If(self.flush):
            m.d.sync += self.held.eq(0)
            with m.If(self.held):
                m.d.sync += self.dropped.eq(1)
        with m.Elif(self.held):
            with m.If(self.o.ready):
                m.d.sync += self.held.eq(0)
        with m.Elif(self.i.valid & ~self.o.ready):
            m.d.sync += self.held.eq(1)
        with m.If(~self.held):  # (loaded while empty: its enable waits for no handshake)
            m.d.sync += keep.eq(self.i.payload)
        with m.If(self.clear):
            m.d.sync += self.dropped.eq(0)
        return m
