"""DeltaApply: the core's weight memory with a shadow bank, updated by delta records.

Golden twin: ``golden.delta_apply.DeltaPort`` (records, checksum, status codes). Two banks of
``depth`` int8 weights in words of ``lanes`` weights (the dot-product engine's beat);
``rd_addr``/``rd_data`` read a word of the active bank (one cycle latency); records address
single weights.
The ``records`` stream carries ``op`` (0 DATA, 1 BEGIN, 2 COMMIT, 3 ABORT) and a 48-bit
``arg``. BEGIN copies the active bank into the shadow bank (``records.ready`` is low for
``depth/lanes + 2`` cycles, while the read port serves the copy: ``rd_data`` is not valid
then); DATA writes the shadow bank and feeds a CRC-32 (zlib's, over the
record's address and value bytes, 24 bits per cycle); COMMIT swaps the banks in one register
write when the checksum and the count match. The active bank is never written; which bank
is active is kept across resets (``reset_less``), so a reset in the middle of an update
drops it and leaves the active weights intact.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params
from sparq.spec.delta_port import OP_BITS, STATUS_BITS, RecordOp, Status

NONE, COMMITTED, BAD_CHECKSUM, BAD_COUNT, PROTOCOL, ABORTED = Status  # (spec.delta_port)
DATA, BEGIN, COMMIT, ABORT = RecordOp
CRC_POLY = 0xEDB88320  # CRC-32 (IEEE 802.3, reflected), as zlib


def record_layout():
    return data.StructLayout({"op": OP_BITS, "arg": 48})


def crc32_step_matrix(nbits=24):
    """For each output bit of one CRC-32 step over ``nbits`` data bits (LSB first), the
    state bits and data bits it XORs: the reflected bit-serial CRC, unrolled."""
    def step(state, dbits):
        for i in range(nbits):
            bit = (state ^ (dbits >> i)) & 1
            state = (state >> 1) ^ (CRC_POLY if bit else 0)
        return state

    rows = []
    for out in range(32):
        s_taps = [i for i in range(32) if step(1 << i, 0) >> out & 1]
        d_taps = [i for i in range(nbits) if step(0, 1 << i) >> out & 1]
        rows.append((s_taps, d_taps))
    return rows


class DeltaApply(wiring.Component):
    """``depth`` int8 weights in two banks (see the module docstring); ``init`` fills both."""

    def __init__(self, *, depth=4096, lanes=1, init=()):
        p = spec_params.delta_port(depth=depth, lanes=lanes)
        self._depth, self._lanes = p["depth"], p["lanes"]
        init = [int(v) for v in init]
        if len(init) > depth:
            raise ValueError(f"init has {len(init)} weights, depth is {depth}")
        init += [0] * (depth - len(init))
        self._init = [sum((init[w * lanes + k] & 0xFF) << (8 * k) for k in range(lanes))
                      for w in range(depth // lanes)]
        super().__init__({
            "records": In(stream.Signature(record_layout())),
            "rd_addr": In(range(depth // lanes)),
            "rd_data": Out(data.ArrayLayout(signed(8), lanes)),
            "active": Out(1), "open": Out(1), "copying": Out(1),
            "status": Out(STATUS_BITS), "updates": Out(16),
        })

    @property
    def params(self):
        return dict(depth=self._depth, lanes=self._lanes)

    def elaborate(self, platform):
        m = Module()
        depth, lanes = self._depth, self._lanes
        words = depth // lanes
        low = (lanes - 1).bit_length()
        banks = []
        for k in range(2):
            mem = Memory(shape=unsigned(8 * lanes), depth=words, init=self._init)
            m.submodules[f"bank{k}"] = mem
            # one read port (the core's, or the copy's while copying) and one write port:
            # a simple dual-port block RAM
            banks.append((mem.read_port(),
                          mem.write_port(granularity=8) if lanes > 1 else mem.write_port()))
        # which bank is active: survives resets (a reset must not undo a committed update)
        active = Signal(reset_less=True)
        m.d.comb += self.active.eq(active)

        # the core's read port, on the active bank
        sel = Signal()
        m.d.sync += sel.eq(active)
        cp_addr = Signal(range(words + 1))
        for rd, _ in banks:
            m.d.comb += rd.addr.eq(Mux(self.copying, cp_addr, self.rd_addr))
        word = Signal(8 * lanes)  # the active bank's word (the copy's source while copying)
        m.d.comb += [word.eq(Mux(sel, banks[1][0].data, banks[0][0].data)),
                     self.rd_data.as_value().eq(word)]

        rec = self.records.payload
        take = Signal()
        m.d.comb += [self.records.ready.eq(~self.copying),
                     take.eq(self.records.valid & self.records.ready)]
        crc = Signal(32)
        count = Signal(16)
        # shadow writes: the copy (whole words), or a DATA record (one lane)
        wr_en = Signal(lanes)
        wr_addr, wr_data = Signal(range(words)), Signal(8 * lanes)
        for k, (_, wr) in enumerate(banks):
            m.d.comb += [wr.addr.eq(wr_addr), wr.data.eq(wr_data),
                         wr.en.eq(Mux(active != k, wr_en, 0))]  # never the active bank

        # BEGIN: copy the active bank into the shadow, one word per cycle (``rd_data`` is not
        # valid meanwhile: the core does not run while ``copying``)
        cp_valid = Signal()
        cp_dst = Signal(range(words))
        m.d.sync += [cp_valid.eq(0)]
        with m.If(self.copying):
            with m.If(cp_addr < words):
                m.d.sync += [cp_addr.eq(cp_addr + 1), cp_valid.eq(1), cp_dst.eq(cp_addr)]
            with m.Elif(~cp_valid):
                m.d.sync += [self.copying.eq(0), self.open.eq(1)]

        addr, value = rec.arg[:16], rec.arg[16:24].as_signed()
        nxt_crc = _crc32_24(m, crc, Cat(rec.arg[:16], rec.arg[16:24]))
        with m.If(cp_valid):
            m.d.comb += [wr_en.eq(Const(-1, lanes)), wr_addr.eq(cp_dst), wr_data.eq(word)]
        with m.Elif(take & (rec.op == DATA) & self.open & (addr < depth)):
            lane = addr[:low] if low else Const(0, 1)
            m.d.comb += [wr_en.eq(Const(1, lanes) << lane), wr_addr.eq(addr >> low),
                         wr_data.eq(Cat(*[value] * lanes))]

        with m.If(take):
            with m.Switch(rec.op):
                with m.Case(BEGIN):
                    m.d.sync += [self.copying.eq(1), self.open.eq(0), cp_addr.eq(0),
                                 crc.eq(0xFFFFFFFF), count.eq(0)]
                with m.Case(DATA):
                    with m.If(self.open & (addr < depth)):
                        m.d.sync += [crc.eq(nxt_crc), count.eq(count + 1)]
                    with m.Else():
                        m.d.sync += [self.open.eq(0), self.status.eq(PROTOCOL)]
                with m.Case(COMMIT):
                    with m.If(~self.open):
                        m.d.sync += self.status.eq(PROTOCOL)
                    with m.Elif(rec.arg[:32] != (crc ^ 0xFFFFFFFF)):
                        m.d.sync += [self.open.eq(0), self.status.eq(BAD_CHECKSUM)]
                    with m.Elif(rec.arg[32:48] != count):
                        m.d.sync += [self.open.eq(0), self.status.eq(BAD_COUNT)]
                    with m.Else():
                        m.d.sync += [self.open.eq(0), self.status.eq(COMMITTED),
                                     active.eq(~active), self.updates.eq(self.updates + 1)]
                with m.Case(ABORT):
                    m.d.sync += [self.open.eq(0), self.status.eq(ABORTED)]
        return m


def _crc32_24(m, state, dbits):
    """One CRC-32 step over 24 data bits, as XOR networks (crc32_step_matrix)."""
    out = Signal(32, name="crc_next")
    for k, (s_taps, d_taps) in enumerate(crc32_step_matrix(24)):
        terms = [state[i] for i in s_taps] + [dbits[i] for i in d_taps]
        v = Const(0, 1)
        for t in terms:
            v = v ^ t
        m.d.comb += out[k].eq(v)
    return out
