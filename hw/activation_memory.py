"""ActivationMemory: the core's int8 activations, in words of ``lanes``."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params


class ActivationMemory(wiring.Component):
    """``x_depth`` int8 activations in ``x_depth / lanes`` words of ``lanes`` (element
    ``a`` is lane ``a % lanes`` of word ``a // lanes``): one synchronous read port of
    words, one write port of elements (byte enables).

    ============== ===== ==========================================================
    ``rd_addr``    In    the word to read; ``rd_data`` shows it the cycle after (a write
                         to it at the same clock is not seen: not transparent)
    ``rd_lane``    In    a lane of that word; ``rd_elem`` shows it the cycle after
    ``wr_en``      In    write ``wr_value`` to element ``wr_addr`` at the clock
    ============== ===== ==========================================================
    """

    def __init__(self, *, lanes=16, x_depth=256):
        self._p = dict(lanes=spec_params.int_in("lanes", lanes, 1, 64),
                       x_depth=spec_params.int_in("x_depth", x_depth, lanes, 1 << 14))
        super().__init__({
            "rd_addr": In(range(x_depth // lanes)), "rd_data": Out(unsigned(8 * lanes)),
            "rd_lane": In(range(lanes)), "rd_elem": Out(signed(8)),
            "wr_en": In(1), "wr_addr": In(range(x_depth)), "wr_value": In(signed(8)),
        })

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        lanes = self._p["lanes"]
        low = (lanes - 1).bit_length()
        m.submodules.mem = mem = Memory(shape=unsigned(8 * lanes),
                                        depth=self._p["x_depth"] // lanes, init=[])
        rd = mem.read_port()
        wr = mem.write_port(granularity=8) if lanes > 1 else mem.write_port()
        lane = Signal(range(lanes))
        m.d.sync += lane.eq(self.rd_lane)
        wr_lane = self.wr_addr[:low] if low else Const(0, 1)
        m.d.comb += [rd.addr.eq(self.rd_addr), self.rd_data.eq(rd.data),
                     self.rd_elem.eq(rd.data.word_select(lane, 8).as_signed()),
                     wr.addr.eq(self.wr_addr >> low),
                     wr.data.eq(Cat(*[self.wr_value] * lanes)),
                     wr.en.eq(Mux(self.wr_en, Const(1, lanes) << wr_lane, 0))]
        return m
