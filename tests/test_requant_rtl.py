# amaranth: UnusedElaboratable=no
"""Requantizer RTL under amaranth.sim against the golden model, with random valid and ready."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparq.golden.requant import requantize
from sparq.hw.requant import Requantizer
from sparq.sim.requant_stim import expected, payload, requant_vectors
from sparq.spec import params as spec_params
from tests.amaranth_streams import stream_recv, stream_send

SEED = 20261123


def run_requant(params, vectors, *, idle, stall, seed):
    dut = Requantizer(**params)
    rng = np.random.default_rng(seed)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    got = {}

    async def producer(ctx):
        await stream_send(ctx, dut.i, [payload(v, params["mode"]) for v in vectors],
                          rng=rng, idle=idle)

    async def consumer(ctx):
        got["out"] = await stream_recv(ctx, dut.o, len(vectors), rng=rng, stall=stall)
        got["param_error"] = ctx.get(dut.param_error)

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return np.array(got["out"], np.int64), got["param_error"]


@pytest.mark.parametrize("params", [dict(mode="tflite", m_bits=16, x_bits=18),
                                    dict(mode="single", m_bits=16, x_bits=18),
                                    dict(mode="prepost", m_bits=16, x_bits=18),
                                    dict(mode="prepost", m_bits=8, x_bits=12),
                                    dict(mode="tflite", m_bits=16, x_bits=18, short=True),
                                    dict(mode="single", m_bits=16, x_bits=18, short=True),
                                    dict(mode="prepost", m_bits=16, x_bits=18, short=True),
                                    dict(mode="dual", m_bits=16, x_bits=18),
                                    dict(mode="dual", m_bits=16, x_bits=18, short=True)],
                         ids=lambda p: "-".join(str(v) for v in p.values()))
def test_requant_matches_golden(params):
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    golden = {k: v for k, v in params.items() if k != "short"}  # the same arithmetic
    vecs = requant_vectors(rng, 600, **golden)
    want = expected(vecs, **golden)
    got, err = run_requant(params, vecs, idle=0.3, stall=0.3, seed=SEED)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{bad.size} mismatches; first {vecs[bad[0]]}: "
                           f"got {got[bad[0]]}, want {want[bad[0]]}")
    assert err == 0


def test_dual_mode_flags_a_negative_multiplier_only_in_single_rounding():
    vec = dict(acc=5, multiplier=-(1 << 30), shift=0, output_zero_point=0, act_min=-128,
               act_max=127)
    out, err = run_requant(dict(mode="dual"), [dict(vec, double=1)], idle=0, stall=0, seed=1)
    want = requantize(np.array([5]), multiplier=-(1 << 30), shift=0, mode="tflite").tolist()
    assert err == 0 and out.tolist() == want
    _, err = run_requant(dict(mode="dual"), [dict(vec, double=0)], idle=0, stall=0, seed=1)
    assert err == 1


def test_requant_flags_bad_parameters():
    vec = dict(acc=5, multiplier=1 << 30, shift=31, output_zero_point=0, act_min=-128,
               act_max=127)
    _, err = run_requant(dict(mode="tflite"), [vec], idle=0, stall=0, seed=1)
    assert err == 1
    vec = dict(vec, shift=0, act_min=5, act_max=4)
    _, err = run_requant(dict(mode="tflite"), [vec], idle=0, stall=0, seed=1)
    assert err == 1


@pytest.mark.parametrize("mode", ["tflite", "single", "prepost", "dual"])
@pytest.mark.parametrize("short", [False, True])
def test_requant_latency(mode, short):
    """Input transfer to output transfer, as spec.params.requant_latency states."""
    dut = Requantizer(mode=mode, short=short)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.payload.acc, 1000)
        ctx.set(dut.i.valid, 1)
        for cycle in range(20):
            if ctx.get(dut.i.valid) and ctx.get(dut.i.ready) and "in" not in seen:
                seen["in"] = cycle
            if ctx.get(dut.o.valid) and "out" not in seen:
                seen["out"] = cycle
            await ctx.tick()
            ctx.set(dut.i.valid, 0)

    sim.add_testbench(bench)
    sim.run()
    want = spec_params.requant_latency(mode=mode, short=short)
    assert seen["out"] - seen["in"] == want == {False: {"tflite": 9, "single": 8,
                                                         "prepost": 7, "dual": 9},
                                                 True: {"tflite": 5, "single": 4,
                                                        "prepost": 4, "dual": 5}}[short][mode]


@pytest.mark.parametrize("bad", [dict(mode="fast"), dict(m_bits=1), dict(x_bits=40),
                                 dict(m_bits="16"), dict(short=1)])
def test_requant_rejects_bad_elaboration_params(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Requantizer(**bad)
