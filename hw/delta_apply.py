"""DeltaApply: the core's weight memory with a shadow bank, updated by delta records.

Golden twin: ``golden.delta_apply.DeltaPort`` (records, checksum, status codes). Two banks of
``depth`` int8 weights in words of ``lanes`` weights (the dot-product engine's beat);
``rd_addr``/``rd_data`` read a word of the active bank (one cycle latency); records address
single weights.
The ``records`` stream carries ``op`` (``hw.encodings.RecordOp``: DATA, BEGIN, COMMIT, ABORT)
and a 48-bit ``arg``. BEGIN copies the active bank into the shadow bank (``records.ready`` is
low for ``depth/lanes + 2`` cycles, while the read port serves the copy: ``rd_data`` is not
valid then); DATA writes the shadow bank and feeds a CRC-32 (zlib's, over the
record's address and value bytes, 24 bits per cycle); COMMIT swaps the banks in one register
write when the checksum and the count match. The active bank is never written; which bank
is active is kept across resets (``reset_less``), so a reset in the middle of an update
drops it and leaves the active weights intact.

Parts: ``WeightBanks`` (the two banks, the copy engine, which bank is active),
``RecordChecksum`` (the running CRC-32 and count of an update's DATA records), and
``DeltaApply`` itself, which decodes the records (``open``, ``status``, ``updates``).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparq.spec import delta_port as spec_codes
from sparq.spec import params as spec_params

from .encodings import RecordOp, Status

# The spec's codes (Python IntEnums) under the names golden.delta_apply gives them, for callers
# that build records; the hardware below uses their amaranth.lib.enum shapes (hw.encodings).
NONE, COMMITTED, BAD_CHECKSUM, BAD_COUNT, PROTOCOL, ABORTED = spec_codes.Status
DATA, BEGIN, COMMIT, ABORT = spec_codes.RecordOp
CRC_POLY = 0xEDB88320  # CRC-32 (IEEE 802.3, reflected), as zlib
RECORD_BITS = 24  # the bits of a DATA record that enter the checksum: address, value


def record_layout():
    """A delta record: ``op`` (``RecordOp``, 2 bits) and a 48-bit ``arg``."""
    return data.StructLayout({"op": RecordOp, "arg": 48})


def crc32_step_matrix(nbits=RECORD_BITS):
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


def _padded(init, depth):
    """``init`` as ``depth`` ints, padded with zeros; ValueError if it holds more."""
    init = [int(v) for v in init]
    if len(init) > depth:
        raise ValueError(f"init has {len(init)} weights, depth is {depth}")
    return init + [0] * (depth - len(init))


class RecordChecksum(wiring.Component):
    """The CRC-32 and the count of an update's DATA records, one record a cycle.

    Ports: ``clear`` (in, 1): start again, from the next cycle the CRC of no bytes (0) and a
    count of 0; ``add`` (in, 1): take ``data`` (ignored while ``clear``); ``data`` (in, 24): a
    DATA record's checksum bits, its address (bits 0-15) and value (bits 16-23), i.e.
    ``golden.delta_apply.record_bytes`` read little endian; ``crc`` (out, 32): ``zlib.crc32``
    of the bytes of the records added since ``clear``; ``count`` (out, 16): how many records
    were added since ``clear``, modulo 2**16.

    Latency 1 (``crc`` and ``count`` show the records added up to the previous cycle),
    throughput one record a cycle. A reset clears. The CRC register holds zlib's state (the
    CRC inverted); one step over the 24 bits is an XOR network (``crc32_step_matrix``).

    Bit-exact reference: ``zlib.crc32`` (``golden.delta_apply.records_for``).
    """

    def __init__(self):
        super().__init__({"clear": In(1), "add": In(1), "data": In(RECORD_BITS),
                          "crc": Out(32), "count": Out(16)})

    @property
    def params(self):
        return {}

    def elaborate(self, platform):
        m = Module()
        state = Signal(32, init=0xFFFFFFFF)
        count = Signal(16)
        m.d.comb += [self.crc.eq(state ^ 0xFFFFFFFF), self.count.eq(count)]
        with m.If(self.clear):
            m.d.sync += [state.eq(0xFFFFFFFF), count.eq(0)]
        with m.Elif(self.add):
            m.d.sync += [state.eq(self._step(m, state, self.data)), count.eq(count + 1)]
        return m

    @staticmethod
    def _step(m, state, dbits):
        """One CRC-32 step of ``state`` over ``dbits`` (RECORD_BITS), as XOR networks."""
        out = Signal(32, name="crc_next")
        for k, (s_taps, d_taps) in enumerate(crc32_step_matrix(RECORD_BITS)):
            v = Const(0, 1)
            for t in [state[i] for i in s_taps] + [dbits[i] for i in d_taps]:
                v = v ^ t
            m.d.comb += out[k].eq(v)
        return out


class WeightBanks(wiring.Component):
    """Two banks of ``depth`` int8 weights in words of ``lanes``: the active bank, which
    ``rd_addr``/``rd_data`` read, and the shadow bank, which is written; ``init`` (up to
    ``depth`` weights, padded with zeros) fills both.

    Ports: ``rd_addr`` (in): a word address (``depth/lanes`` words); ``rd_data`` (out,
    ``lanes`` int8): that word of the active bank, one cycle later (not valid while
    ``copying``); ``wr_en``, ``wr_addr``, ``wr_data`` (in): write int8 ``wr_data`` at weight
    address ``wr_addr`` of the shadow bank (one lane of a word; ignored while the copy
    writes); ``copy`` (in): copy the active bank into the shadow bank, one word a cycle
    through the read port: ``copying`` (out) is high from the next cycle on, for
    ``depth/lanes + 2`` cycles, ``copy_done`` (out) in the last of them; ``swap`` (in): the
    shadow bank becomes the active one from the next cycle; ``active`` (out): which bank is
    active, kept across resets (``reset_less``). With ``nz_bits``: ``rd_nz`` (out, ``lanes``
    bits, with ``rd_data``): bit ``i`` is ``rd_data[i] != 0``, stored beside the weight when
    it is written (a ninth bit per byte: free in the ECP5's block RAMs), so a reader's zero
    mask is not computed on the block RAM's late output.

    The active bank is never written. Each bank is a simple dual-port block RAM (one read
    port, one write port).
    """

    def __init__(self, *, depth=4096, lanes=1, init=(), nz_bits=False):
        p = spec_params.delta_port(depth=depth, lanes=lanes)
        self._depth, self._lanes = p["depth"], p["lanes"]
        # a stored lane: the weight, then (``nz_bits``) its non-zero bit
        self._bits = 9 if spec_params.flag("nz_bits", nz_bits) else 8
        init = _padded(init, depth)
        self._init = [sum(self._stored(init[w * lanes + k]) << (self._bits * k)
                          for k in range(lanes)) for w in range(depth // lanes)]
        words = depth // lanes
        super().__init__({
            "rd_addr": In(range(words)), "rd_data": Out(data.ArrayLayout(signed(8), lanes)),
            "wr_en": In(1), "wr_addr": In(range(depth)), "wr_data": In(signed(8)),
            "copy": In(1), "copying": Out(1), "copy_done": Out(1),
            "swap": In(1), "active": Out(1),
            **({"rd_nz": Out(lanes)} if nz_bits else {}),
        })

    def _stored(self, w):
        """A weight as a lane stores it (int or amaranth value): its 8 bits, and with
        ``nz_bits`` its non-zero bit above them."""
        if self._bits == 8:
            return w & 0xFF if isinstance(w, int) else w
        if isinstance(w, int):
            return (w & 0xFF) | (int((w & 0xFF) != 0) << 8)
        return Cat(w, w != 0)

    @property
    def params(self):
        return dict(depth=self._depth, lanes=self._lanes, nz_bits=self._bits == 9)

    def elaborate(self, platform):
        m = Module()
        words, lanes, bits = self._depth // self._lanes, self._lanes, self._bits
        low = (lanes - 1).bit_length()
        banks = []
        for k in range(2):
            mem = Memory(shape=unsigned(bits * lanes), depth=words, init=self._init)
            m.submodules[f"bank{k}"] = mem
            banks.append((mem.read_port(),
                          mem.write_port(granularity=bits) if lanes > 1 else mem.write_port()))
        # which bank is active: survives resets (a reset must not undo a committed update)
        active = Signal(reset_less=True)
        m.d.comb += self.active.eq(active)
        with m.If(self.swap):
            m.d.sync += active.eq(~active)

        # the read port of both banks, the active bank's word selected a cycle later
        sel = Signal()
        m.d.sync += sel.eq(active)
        cp_addr = Signal(range(words + 1))
        for rd, _ in banks:
            m.d.comb += rd.addr.eq(Mux(self.copying, cp_addr, self.rd_addr))
        word = Signal(bits * lanes)  # the active bank's word (the copy's source while copying)
        m.d.comb += word.eq(Mux(sel, banks[1][0].data, banks[0][0].data))
        m.d.comb += [self.rd_data[i].eq(word[bits * i:bits * i + 8]) for i in range(lanes)]
        if bits == 9:
            m.d.comb += self.rd_nz.eq(Cat(*[word[9 * i + 8] for i in range(lanes)]))

        # the copy: one word a cycle, written a cycle after it is read
        cp_valid = Signal()
        cp_dst = Signal(range(words))
        m.d.sync += cp_valid.eq(0)
        with m.If(self.copying):
            with m.If(cp_addr < words):
                m.d.sync += [cp_addr.eq(cp_addr + 1), cp_valid.eq(1), cp_dst.eq(cp_addr)]
            with m.Elif(~cp_valid):
                m.d.comb += self.copy_done.eq(1)
                m.d.sync += self.copying.eq(0)
        with m.If(self.copy):
            m.d.sync += [self.copying.eq(1), cp_addr.eq(0)]

        # shadow writes: the copy (whole words), or one weight (one lane)
        wr_en = Signal(lanes)
        wr_addr, wr_data = Signal(range(words)), Signal(bits * lanes)
        for k, (_, wr) in enumerate(banks):
            m.d.comb += [wr.addr.eq(wr_addr), wr.data.eq(wr_data),
                         wr.en.eq(Mux(active != k, wr_en, 0))]  # never the active bank
        with m.If(cp_valid):
            m.d.comb += [wr_en.eq(Const(-1, lanes)), wr_addr.eq(cp_dst), wr_data.eq(word)]
        with m.Elif(self.wr_en):
            lane = self.wr_addr[:low] if low else Const(0, 1)
            m.d.comb += [wr_en.eq(Const(1, lanes) << lane), wr_addr.eq(self.wr_addr >> low),
                         wr_data.eq(Cat(*[self._stored(self.wr_data)] * lanes))]
        return m


class DeltaApply(wiring.Component):
    """``depth`` int8 weights in two banks (see the module docstring); ``init`` fills both.

    Ports: ``records`` (in, stream of ``record_layout()``: ``op`` a ``RecordOp``, ``arg`` 48
    bits); ``rd_addr`` (in): a word address of the active bank (``depth/lanes`` words);
    ``rd_data`` (out): that word, ``lanes`` int8 weights, one cycle later; ``active`` (out):
    which bank is active (kept across resets); ``open`` (out): an update is open (BEGIN's
    copy done, no COMMIT or ABORT yet); ``copying`` (out): BEGIN's copy runs
    (``records.ready`` low, ``rd_data`` not valid); ``status`` (out, ``Status``, 3 bits): how
    the last update ended, or PROTOCOL; ``updates`` (out, 16): committed updates, modulo
    2**16. With ``nz_bits``, ``rd_nz`` beside ``rd_data`` (``WeightBanks``).

    Bit-exact reference (architectural state after each record): ``golden.delta_apply``.
    """

    def __init__(self, *, depth=4096, lanes=1, init=(), nz_bits=False):
        p = spec_params.delta_port(depth=depth, lanes=lanes)
        self._depth, self._lanes = p["depth"], p["lanes"]
        self._init = _padded(init, depth)
        self._nz_bits = spec_params.flag("nz_bits", nz_bits)
        super().__init__({
            "records": In(stream.Signature(record_layout())),
            "rd_addr": In(range(depth // lanes)),
            "rd_data": Out(data.ArrayLayout(signed(8), lanes)),
            "active": Out(1), "open": Out(1), "copying": Out(1),
            "status": Out(Status), "updates": Out(16),
            **({"rd_nz": Out(lanes)} if nz_bits else {}),
        })

    @property
    def params(self):
        return dict(depth=self._depth, lanes=self._lanes, nz_bits=self._nz_bits)

    def elaborate(self, platform):
        m = Module()
        m.submodules.banks = banks = WeightBanks(depth=self._depth, lanes=self._lanes,
                                                 init=self._init, nz_bits=self._nz_bits)
        m.submodules.checksum = checksum = RecordChecksum()
        m.d.comb += [banks.rd_addr.eq(self.rd_addr), self.rd_data.eq(banks.rd_data),
                     self.active.eq(banks.active), self.copying.eq(banks.copying)]
        if self._nz_bits:
            m.d.comb += self.rd_nz.eq(banks.rd_nz)
        with m.If(banks.copy_done):
            m.d.sync += self.open.eq(1)

        rec = self.records.payload
        take = Signal()
        m.d.comb += [self.records.ready.eq(~banks.copying),
                     take.eq(self.records.valid & self.records.ready)]
        # a DATA record the open update takes: into the shadow bank and the checksum
        addr, value = rec.arg[:16], rec.arg[16:24].as_signed()
        in_update = Signal()
        m.d.comb += in_update.eq(self.open & (addr < self._depth))
        data_taken = take & (rec.op == RecordOp.DATA) & in_update
        m.d.comb += [banks.wr_en.eq(data_taken), banks.wr_addr.eq(addr), banks.wr_data.eq(value),
                     checksum.add.eq(data_taken), checksum.data.eq(rec.arg[:RECORD_BITS])]
        with m.If(take):
            self._decode(m, rec, in_update, banks, checksum)
        return m

    def _decode(self, m, rec, in_update, banks, checksum):
        """A record taken: start, check, commit or drop the update; set ``status``."""
        with m.Switch(rec.op):
            with m.Case(RecordOp.BEGIN):
                m.d.comb += [banks.copy.eq(1), checksum.clear.eq(1)]
                m.d.sync += self.open.eq(0)
            with m.Case(RecordOp.DATA):
                with m.If(~in_update):
                    m.d.sync += [self.open.eq(0), self.status.eq(Status.PROTOCOL)]
            with m.Case(RecordOp.COMMIT):
                with m.If(~self.open):
                    m.d.sync += self.status.eq(Status.PROTOCOL)
                with m.Elif(rec.arg[:32] != checksum.crc):
                    m.d.sync += [self.open.eq(0), self.status.eq(Status.BAD_CHECKSUM)]
                with m.Elif(rec.arg[32:48] != checksum.count):
                    m.d.sync += [self.open.eq(0), self.status.eq(Status.BAD_COUNT)]
                with m.Else():
                    m.d.comb += banks.swap.eq(1)
                    m.d.sync += [self.open.eq(0), self.status.eq(Status.COMMITTED),
                                 self.updates.eq(self.updates + 1)]
            with m.Case(RecordOp.ABORT):
                m.d.sync += [self.open.eq(0), self.status.eq(Status.ABORTED)]
