# amaranth: UnusedElaboratable=no
"""Core under amaranth.sim: random programs (sim.seq_stim) and a compiled digits layer
against the golden ISA simulator; weights loaded through the delta port."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import delta_port as gp
from golden import isa_sim
from hw.core import Core
from sim import seq_stim
from tests.conftest import SEED

SMALL = dict(seq_stim.SMALL, slots=2)


async def send(ctx, port, payloads, rng, idle=0.2):
    for pl in payloads:
        while rng.random() < idle:
            ctx.set(port.valid, 0)
            await ctx.tick()
        for k, v in pl.items():
            target = port.payload
            for part in k.split("."):
                target = getattr(target, part)
            ctx.set(target, v)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


def case_loads(case, old_w):
    """Payloads that load a case into the core: weights as a delta from ``old_w``."""
    prm = case.params
    weights = [dict(op=op, arg=arg) for op, arg in gp.records_for(old_w, prm.w)]
    params = [{"ch": c, "p.bias": int(prm.bias[c]), "p.multiplier": int(prm.multiplier[c]),
               "p.shift": int(prm.shift[c]), "p.output_zero_point": int(prm.out_zp[c]),
               "p.act_min": int(prm.act_min[c]), "p.act_max": int(prm.act_max[c])}
              for c in range(len(prm.bias))]
    xs = [dict(addr=a, value=int(v)) for a, v in enumerate(case.x_init)]
    prog = [dict(addr=a, word=w) for a, w in enumerate(case.program)]
    return weights, params, xs, prog


def run_core_cases(cases, *, seed=SEED, max_cycles=50_000, skip=True):
    cfg = cases[0].cfg
    dut = Core(**{k: getattr(cfg, k) for k in vars(cfg)}, slots=SMALL["slots"], skip=skip)
    rng = np.random.default_rng(seed)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    results = []

    async def bench(ctx):
        w_now = np.zeros(cfg.w_depth, np.int64)
        for case in cases:
            weights, params, xs, prog = case_loads(case, w_now)
            await send(ctx, dut.records, weights, rng)
            for _ in range(3):
                await ctx.tick()
            assert ctx.get(dut.delta_status) == gp.COMMITTED
            w_now = np.asarray(case.params.w, np.int64)
            await send(ctx, dut.param_wr, params, rng)
            await send(ctx, dut.x_wr, xs, rng)
            await send(ctx, dut.pload, prog, rng)
            await ctx.tick()
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for _ in range(max_cycles):
                await ctx.tick()
                if not ctx.get(dut.busy):
                    break
            else:
                raise AssertionError("the core did not finish")
            x = []
            for a in range(cfg.x_depth):
                ctx.set(dut.x_rd_addr, a)
                await ctx.tick()
                x.append(ctx.get(dut.x_rd_data))
            results.append(dict(x=x, error=ctx.get(dut.error), executed=ctx.get(dut.executed),
                                predicated_off=ctx.get(dut.predicated_off),
                                cycles=ctx.get(dut.cycles)))

    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("skip", [True, False], ids=["sparse", "dense"])
def test_core_random_programs(skip):
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    cases = []
    while len(cases) < 25:
        c = seq_stim.random_case(rng, bad_rate=0.01)
        _, err = seq_stim.expected(c)
        if err is None or "int32" not in err:
            cases.append(c)
    for n, (case, got) in enumerate(zip(cases, run_core_cases(cases, skip=skip), strict=True)):
        want, err = seq_stim.expected(case)
        assert got["error"] == (err is not None), (n, err)
        assert got["x"] == want["x"], n
        assert got["executed"] == want["executed"] and \
            got["predicated_off"] == want["predicated_off"], n


def test_config_errors():
    with pytest.raises(ValueError, match="single"):
        Core(mode="tflite")
    with pytest.raises(ValueError, match="lanes must be a power of two"):
        Core(lanes=3)
    assert isa_sim.MachineConfig(**{k: v for k, v in Core(**SMALL).params.items()
                                    if k in seq_stim.SMALL})
