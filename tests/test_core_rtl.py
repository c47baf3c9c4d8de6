# amaranth: UnusedElaboratable=no
"""Core under amaranth.sim: random programs (sim.seq_stim) and a compiled digits layer
against the golden ISA simulator; weights loaded through the delta port."""

import numpy as np
import pytest
from amaranth.sim import Simulator

import spec.configs
from golden import core_model, isa_sim
from golden import delta_port as gp
from hw.core import Core
from sim import seq_stim
from tests.amaranth_streams import WithReset
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


async def run_loaded(ctx, dut, top=None, *, max_cycles=20_000, reset_after=None):
    """Start the loaded program and wait until the core is idle; with ``reset_after`` (and the
    ``WithReset`` wrapper ``top``), reset it that many cycles in instead. Returns whether it
    finished."""
    await ctx.tick()
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    for n in range(max_cycles):
        await ctx.tick()
        if reset_after is not None and n == reset_after:
            ctx.set(top.rst, 1)
            await ctx.tick()
            ctx.set(top.rst, 0)
            return False
        if not ctx.get(dut.busy):
            return True
    raise AssertionError(f"the core did not finish in {max_cycles} cycles")


async def read_x(ctx, dut, depth):
    x = []
    for a in range(depth):
        ctx.set(dut.x_rd_addr, a)
        await ctx.tick()
        x.append(ctx.get(dut.x_rd_data))
    return x


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


def run_core_cases(cases, *, seed=SEED, max_cycles=50_000, skip=True, param_ram="async",
                   slots=SMALL["slots"], short_requant=False, hazard_words=1):
    cfg = cases[0].cfg
    dut = Core(**{k: getattr(cfg, k) for k in vars(cfg)}, slots=slots, skip=skip,
               param_ram=param_ram, short_requant=short_requant, hazard_words=hazard_words)
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
            await run_loaded(ctx, dut, max_cycles=max_cycles)
            x = await read_x(ctx, dut, cfg.x_depth)
            results.append(dict(x=x, error=ctx.get(dut.error), executed=ctx.get(dut.executed),
                                predicated_off=ctx.get(dut.predicated_off),
                                cycles=ctx.get(dut.cycles)))

    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("skip, param_ram, short, hazard_words",
                         [(True, "async", False, 1), (False, "async", False, 1),
                          (True, "sync", False, 1), (True, "async", True, 1),
                          (True, "async", False, 4)],
                         ids=["sparse", "dense", "sparse-sync-params", "sparse-short-requant",
                              "sparse-hazards-per-4-words"])
def test_core_random_programs(skip, param_ram, short, hazard_words):
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    cases = []
    while len(cases) < 25:
        c = seq_stim.random_case(rng, bad_rate=0.01)
        _, err = seq_stim.expected(c)
        if err is None or "int32" not in err:
            cases.append(c)
    got_all = run_core_cases(cases, skip=skip, param_ram=param_ram, short_requant=short,
                             hazard_words=hazard_words)
    for n, (case, got) in enumerate(zip(cases, got_all, strict=True)):
        want, err = seq_stim.expected(case)
        assert got["error"] == (err is not None), (n, err)
        assert got["x"] == want["x"], n
        assert got["executed"] == want["executed"] and \
            got["predicated_off"] == want["predicated_off"], n
        if err is None:  # the core model predicts the cycle count (hazards, queue, latencies)
            cycles, _ = core_model.predict_program_cycles(
                case.cfg, case.params, case.program, case.x_init, lanes=case.cfg.lanes,
                slots=SMALL["slots"], skip=skip, param_ram=param_ram, short_requant=short,
                hazard_words=hazard_words)
            assert got["cycles"] == cycles, (n, got["cycles"], cycles)


@pytest.mark.parametrize("hazard_words", [1, 2, 4])
def test_hazard_regions(hazard_words):
    """Programs of LDB, DOT and REQ on the first 8 activation words only (REQ results and
    DOT reads of nearby words back to back): values exact, and the cycles exactly as the core
    model predicts for the hazards' region size (it changes the count of nearly every one of
    these programs)."""
    rng = np.random.default_rng(SEED + hazard_words)
    print(f"seed {SEED + hazard_words}")
    cfg = isa_sim.MachineConfig(**seq_stim.SMALL)
    cases = []
    while len(cases) < 12:
        c = seq_stim.Case(cfg, seq_stim.random_params(rng, cfg), seq_stim.random_x(rng, cfg),
                          seq_stim.hazard_program(rng, cfg))
        if seq_stim.expected(c)[1] is None:
            cases.append(c)
    got_all = run_core_cases(cases, hazard_words=hazard_words)
    for n, (case, got) in enumerate(zip(cases, got_all, strict=True)):
        want, _ = seq_stim.expected(case)
        assert not got["error"] and got["x"] == want["x"], n
        cycles, _ = core_model.predict_program_cycles(
            case.cfg, case.params, case.program, case.x_init, lanes=cfg.lanes,
            slots=SMALL["slots"], hazard_words=hazard_words)
        assert got["cycles"] == cycles, (n, got["cycles"], cycles)


@pytest.mark.long
def test_ice40_configuration_random_programs():
    """The iCE40 configuration as synthesized (spec.configs "core_ice40"): values and cycles
    on random programs."""
    params = dict(spec.configs.CONFIGS["core_ice40"][1])
    timing = core_model.timing(params)
    for k in ("slots", "param_ram", "short_requant", "skip", "bins", "hazard_words"):
        params.pop(k, None)
    cfg = isa_sim.MachineConfig(**params, mode="single")
    rng = np.random.default_rng(SEED + 40)
    print(f"seed {SEED + 40}")
    cases = []
    while len(cases) < 15:
        c = seq_stim.random_case(rng, cfg=cfg, bad_rate=0.0)
        if seq_stim.expected(c)[1] is None:
            cases.append(c)
    got_all = run_core_cases(cases, slots=timing["slots"], param_ram=timing["param_ram"],
                             short_requant=timing["short_requant"],
                             hazard_words=timing["hazard_words"])
    for n, (case, got) in enumerate(zip(cases, got_all, strict=True)):
        want, _ = seq_stim.expected(case)
        assert not got["error"] and got["x"] == want["x"], n
        cycles, _ = core_model.predict_program_cycles(
            case.cfg, case.params, case.program, case.x_init, **timing)
        assert got["cycles"] == cycles, (n, got["cycles"], cycles)


def test_config_errors():
    with pytest.raises(ValueError, match="single"):
        Core(mode="tflite")
    with pytest.raises(ValueError, match="lanes must be a power of two"):
        Core(lanes=3)
    with pytest.raises(ValueError, match="param_ram must be one of .* not 'bram'"):
        Core(param_ram="bram")
    with pytest.raises(ValueError, match="hazard_words must be a power of two dividing the "
                                         "16 activation words, not 3"):
        Core(lanes=16, hazard_words=3)
    assert isa_sim.MachineConfig(**{k: v for k, v in Core(**SMALL).params.items()
                                    if k in seq_stim.SMALL})


def test_bad_deltas_and_resets_keep_the_active_weights():
    """A delta with a bad checksum, one without its commit, a reset in the middle of a delta
    and a reset in the middle of a program: the active weights stay, the core stays usable
    and computes the same results."""
    rng = np.random.default_rng(SEED + 7)
    while True:
        case = seq_stim.random_case(rng, bad_rate=0.0, length=40)
        want, err = seq_stim.expected(case)
        if err is None and want["executed"] > 20:
            break
    cfg = case.cfg
    dut = Core(**{k: getattr(cfg, k) for k in vars(cfg)}, slots=SMALL["slots"])
    top = WithReset(dut)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    other = np.asarray(case.params.w, np.int64).copy()
    other[:20] = -other[:20] + 1
    other = np.clip(other, -127, 127)
    seen = []

    async def run_program(ctx, xs, prog, reset_after=None):
        await send(ctx, dut.x_wr, xs, rng)
        await send(ctx, dut.pload, prog, rng)
        if not await run_loaded(ctx, dut, top, reset_after=reset_after):
            return None
        return await read_x(ctx, dut, cfg.x_depth)

    async def bench(ctx):
        weights, params, xs, prog = case_loads(case, np.zeros(cfg.w_depth, np.int64))
        await send(ctx, dut.records, weights, rng)
        await send(ctx, dut.param_wr, params, rng)
        active = None
        bad = [dict(op=op, arg=arg) for op, arg in gp.records_for(case.params.w, other)]
        corrupt = bad[:-1] + [dict(op=gp.COMMIT, arg=bad[-1]["arg"] ^ 1)]
        for step in ("clean", "bad checksum", "no commit", "reset in a delta",
                     "reset in a program", "clean again"):
            if step == "bad checksum":
                await send(ctx, dut.records, corrupt, rng)
            elif step == "no commit":
                await send(ctx, dut.records, bad[:-1], rng)
            elif step == "reset in a delta":
                await send(ctx, dut.records, bad[:len(bad) // 2], rng)
                ctx.set(top.rst, 1)
                await ctx.tick()
                ctx.set(top.rst, 0)
                await send(ctx, dut.records, bad[len(bad) // 2:], rng)  # a stray tail
            elif step == "reset in a program":
                assert await run_program(ctx, xs, prog, reset_after=15) is None
            for _ in range(3):
                await ctx.tick()
            if active is None:
                active = ctx.get(dut.weights_active)
            assert ctx.get(dut.weights_active) == active, step
            x = await run_program(ctx, xs, prog)
            assert x == want["x"], step
            seen.append(step)

    sim.add_testbench(bench)
    sim.run()
    assert len(seen) == 6
