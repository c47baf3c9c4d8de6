# amaranth: UnusedElaboratable=no
"""DeltaApply under amaranth.sim against golden.delta_apply: good updates, bad checksums and
counts, missing commits, protocol errors, aborts and resets in the middle, random valid."""

import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparq.golden import delta_apply as gp
from sparq.hw import encodings as hw_enc
from sparq.hw.delta_apply import DeltaApply, RecordChecksum, WeightBanks, crc32_step_matrix
from tests.amaranth_streams import WithReset
from tests.conftest import SEED

DEPTH = 64


def test_crc_matrix_is_zlibs():
    rng = np.random.default_rng(SEED)
    for _ in range(200):
        data = bytes(rng.integers(0, 256, 3, dtype=np.uint8))
        prev = int(rng.integers(0, 1 << 32))
        state = prev ^ 0xFFFFFFFF
        dbits = int.from_bytes(data, "little")
        out = 0
        for k, (s_taps, d_taps) in enumerate(crc32_step_matrix(24)):
            bit = 0
            for i in s_taps:
                bit ^= state >> i & 1
            for i in d_taps:
                bit ^= dbits >> i & 1
            out |= bit << k
        assert out ^ 0xFFFFFFFF == zlib.crc32(data, prev)


def test_record_checksum_against_zlib():
    """RecordChecksum alone: random adds, clears, idle cycles and resets (an add and a clear
    together too); after every cycle ``crc`` and ``count`` are ``zlib.crc32`` of the
    ``record_bytes`` of the records added since the last clear or reset, and their number."""
    seed = SEED + 7
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    dut = RecordChecksum()
    top = WithReset(dut)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    kinds = ["add"] * 6 + ["idle", "clear", "add+clear", "reset"]
    seen = dict.fromkeys(kinds, 0)

    async def bench(ctx):
        crc, count = 0, 0
        for _ in range(800):
            kind = kinds[int(rng.integers(len(kinds)))]
            addr, value = int(rng.integers(0, 1 << 16)), int(rng.integers(-128, 128))
            ctx.set(dut.data, addr | (value & 0xFF) << 16)
            ctx.set(dut.add, kind in ("add", "add+clear"))
            ctx.set(dut.clear, kind in ("clear", "add+clear"))
            ctx.set(top.rst, kind == "reset")
            await ctx.tick()
            if kind == "add":
                crc, count = zlib.crc32(gp.record_bytes(addr, value), crc), count + 1
            elif kind != "idle":
                crc, count = 0, 0
            assert (ctx.get(dut.crc), ctx.get(dut.count)) == (crc, count), kind
            seen[kind] += 1

    sim.add_testbench(bench)
    sim.run()
    print(f"seed {seed}: {seen}")
    assert min(seen.values()) > 0


@pytest.mark.parametrize("lanes, nz_bits", [(1, False), (4, False), (4, True)])
def test_weight_banks_alone(lanes, nz_bits):
    """WeightBanks alone against two lists and a flag: reads of the active bank (one cycle
    latency), one-weight writes into the shadow bank (never the active one), copies (exactly
    ``depth/lanes + 2`` cycles of ``copying``, ``copy_done`` in the last), swaps, and resets
    (which keep both banks and which one is active). With ``nz_bits``, every read's
    ``rd_nz`` is its weights' non-zero bits (a third of the weights written are zero)."""
    depth, seed = 32, SEED + 8 + lanes + 10 * nz_bits
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    words = depth // lanes
    init = [int(v) * int(rng.random() > 0.3)
            for v in rng.integers(-128, 128, depth - 3)]  # padded with zeros
    dut = WeightBanks(depth=depth, lanes=lanes, init=init, nz_bits=nz_bits)
    top = WithReset(dut)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    kinds = ["read"] * 4 + ["write"] * 4 + ["copy", "swap", "reset"]
    seen = dict.fromkeys(kinds, 0)

    async def pulse(ctx, port):
        ctx.set(port, 1)
        await ctx.tick()
        ctx.set(port, 0)

    def read_word(ctx):
        got = [ctx.get(dut.rd_data[k]) for k in range(lanes)]
        if nz_bits:
            assert [ctx.get(dut.rd_nz[k]) for k in range(lanes)] == [int(v != 0) for v in got]
        return got

    async def read_all(ctx):
        got = []
        for a in range(words):
            ctx.set(dut.rd_addr, a)
            await ctx.tick()
            got += read_word(ctx)
        return got

    async def bench(ctx):
        banks, active = [init + [0] * 3, init + [0] * 3], 0
        for _ in range(400):
            kind = kinds[int(rng.integers(len(kinds)))]
            seen[kind] += 1
            if kind == "read":
                a = int(rng.integers(words))
                ctx.set(dut.rd_addr, a)
                await ctx.tick()
                assert read_word(ctx) == banks[active][a * lanes:(a + 1) * lanes]
            elif kind == "write":
                a, v = int(rng.integers(depth)), int(rng.integers(-128, 128))
                v *= int(rng.random() > 0.3)
                ctx.set(dut.wr_addr, a)
                ctx.set(dut.wr_data, v)
                await pulse(ctx, dut.wr_en)
                banks[1 - active][a] = v
            elif kind == "copy":
                await pulse(ctx, dut.copy)
                done = []
                while ctx.get(dut.copying):
                    done.append(ctx.get(dut.copy_done))
                    ctx.set(dut.rd_addr, int(rng.integers(words)))  # ignored while copying
                    await ctx.tick()
                assert done == [0] * (words + 1) + [1]
                banks[1 - active] = list(banks[active])
            elif kind == "swap":
                await pulse(ctx, dut.swap)
                active ^= 1
            else:
                await pulse(ctx, top.rst)
            assert ctx.get(dut.active) == active
        assert await read_all(ctx) == banks[active]
        await pulse(ctx, dut.swap)
        assert await read_all(ctx) == banks[1 - active]

    sim.add_testbench(bench)
    sim.run()
    print(f"seed {seed}: {seen}")
    assert min(seen.values()) > 0


def random_session(rng, old):
    """Records of a random update: good, corrupted, incomplete or out of protocol; and
    whether a reset follows it."""
    new = old.copy()
    idx = rng.choice(DEPTH, int(rng.integers(0, 12)), replace=False)
    new[idx] = rng.integers(-128, 128, idx.size)
    recs = gp.records_for(old, new)
    kind = rng.choice(["good", "good", "crc", "count", "no_commit", "abort", "stray",
                       "bad_addr", "reset"])
    if kind == "crc":
        recs[-1] = (gp.COMMIT, recs[-1][1] ^ 1 << int(rng.integers(0, 32)))
    elif kind == "count":
        recs[-1] = (gp.COMMIT, recs[-1][1] + (1 << 32))
    elif kind == "no_commit":
        recs = recs[:-1]
    elif kind == "abort":
        recs = recs[:-1] + [(gp.ABORT, 0)]
    elif kind == "stray":
        recs = [gp.data_record(3, 7), (gp.COMMIT, 0)] + recs
    elif kind == "bad_addr":
        recs = recs[:-1] + [gp.data_record(DEPTH + 5, 1)] + recs[-1:]
    return recs, kind == "reset" or kind == "no_commit" and rng.random() < 0.5


@pytest.mark.parametrize("lanes", [1, 4])
def test_delta_apply_against_golden(lanes):
    rng = np.random.default_rng(SEED + lanes)
    init = rng.integers(-128, 128, DEPTH)
    dut = DeltaApply(depth=DEPTH, lanes=lanes, init=[int(v) for v in init])
    model = gp.DeltaPort(depth=DEPTH, init=init)
    top = WithReset(dut)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    seen = {}

    async def bench(ctx):
        for _ in range(60):
            recs, reset = random_session(rng, model.weights.copy())
            for n, (op, arg) in enumerate(recs):
                while rng.random() < 0.3:
                    ctx.set(dut.records.valid, 0)
                    await ctx.tick()
                ctx.set(dut.records.payload.op, op)
                ctx.set(dut.records.payload.arg, arg)
                ctx.set(dut.records.valid, 1)
                await ctx.tick().until(dut.records.ready)
                model.record(op, arg)
                if reset and n == len(recs) // 2:  # a reset in the middle of the update
                    ctx.set(dut.records.valid, 0)
                    ctx.set(top.rst, 1)
                    await ctx.tick()
                    ctx.set(top.rst, 0)
                    model.reset()
                    break
            ctx.set(dut.records.valid, 0)
            while ctx.get(dut.copying):
                await ctx.tick()
            await ctx.tick()
            assert ctx.get(dut.active) == model.active
            assert ctx.get(dut.updates) == model.updates
            # the port is hw.encodings.Status: the model's code as that enum's member
            assert ctx.get(dut.status) is hw_enc.Status(model.status)
            assert ctx.get(dut.open) == model.open
            seen[gp.STATUS[model.status]] = seen.get(gp.STATUS[model.status], 0) + 1
            got = []
            for a in range(DEPTH // lanes):  # the core's view: the active bank
                ctx.set(dut.rd_addr, a)
                await ctx.tick()
                got += [ctx.get(dut.rd_data[k]) for k in range(lanes)]
            assert got == [int(v) for v in model.weights]

    sim.add_testbench(bench)
    sim.run()
    print(f"seed {SEED + lanes}: statuses {seen}")
    assert {"committed", "bad checksum", "bad count", "protocol error", "aborted"} <= set(seen)


def test_records_for_and_port_errors():
    old = np.zeros(8, int)
    new = old.copy()
    new[[1, 6]] = [5, -3]
    port = gp.DeltaPort(depth=8, init=old)
    for r in gp.records_for(old, new):
        port.record(*r)
    assert port.status == gp.COMMITTED and list(port.weights) == list(new)
    with pytest.raises(ValueError, match="depth must be an integer in"):
        gp.DeltaPort(depth=0)
    with pytest.raises(ValueError, match="depth must be an integer in"):
        DeltaApply(depth=1 << 17)
    with pytest.raises(ValueError, match="differ in size"):
        gp.records_for(old, new[:4])


def test_encodings_have_one_source():
    """Record operations and status codes come from spec.delta_port in the block and its
    twin alike (they were written in both before)."""
    import sparq.hw.delta_apply as hd
    from sparq.spec.delta_port import RecordOp, Status

    for name in RecordOp.__members__:
        assert getattr(hd, name) is getattr(gp, name) is RecordOp[name]
    for name in Status.__members__:
        assert getattr(hd, name) is getattr(gp, name) is Status[name]
    assert gp.STATUS[Status.PROTOCOL] == "protocol error"


def test_ports_carry_the_hw_encodings():
    """The record's ``op`` field and the ``status`` port are hw.encodings' enum shapes (the
    spec's codes, 2 and 3 bits); the generated Verilog keeps those widths."""
    from amaranth.hdl import Shape
    from amaranth.lib import enum as hw_enum

    from sparq.spec import delta_port

    dut = DeltaApply(depth=DEPTH)
    op = dut.records.payload.shape()["op"].shape
    assert op is hw_enc.RecordOp and Shape.cast(op).width == delta_port.OP_BITS
    assert dut.signature.members["status"].shape is hw_enc.Status
    assert Shape.cast(hw_enc.Status).width == delta_port.STATUS_BITS
    for hw_codes, codes in ((hw_enc.RecordOp, delta_port.RecordOp),
                            (hw_enc.Status, delta_port.Status)):
        assert issubclass(hw_codes, hw_enum.Enum)
        assert {m.name: m.value for m in hw_codes} == {m.name: m.value for m in codes}
    ports = _port_widths(dut.metadata.as_json()["interface"])
    assert ports["records__payload"] == delta_port.OP_BITS + 48
    assert ports["status"] == delta_port.STATUS_BITS


def _port_widths(interface):
    """``{port name: width}`` of a component's metadata (``metadata.as_json()``)."""
    out = {}
    for member in interface["members"].values():
        if member["type"] == "port":
            out[member["name"]] = member["width"]
        else:
            out.update(_port_widths(member))
    return out
