# amaranth: UnusedElaboratable=no
"""DeltaApply under amaranth.sim against golden.delta_apply: good updates, bad checksums and
counts, missing commits, protocol errors, aborts and resets in the middle, random valid."""

import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparq.golden import delta_apply as gp
from sparq.hw.delta_apply import DeltaApply, crc32_step_matrix
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
            assert ctx.get(dut.status) == model.status
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
