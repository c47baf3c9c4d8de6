# amaranth: UnusedElaboratable=no
"""Core under amaranth.sim: random programs (sim.seq_stim) and a compiled digits layer
against the golden ISA simulator; weights loaded through the delta port."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparq.golden import core as golden_core
from sparq.golden import delta_apply as gp
from sparq.golden import isa
from sparq.golden import sequencer as golden_sequencer
from sparq.hw.core import Core
from sparq.sim import seq_stim
from sparq.spec import configs as spec_configs
from tests.amaranth_streams import WithReset
from tests.conftest import SEED

SMALL_CORE = dict(slots=2)  # the Core's parameters besides the machine's, unless given


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


def run_core_cases(cases, *, seed=SEED, max_cycles=50_000, **core):
    """Run ``cases`` (one machine) on a Core of that machine and ``core``'s other parameters
    (``spec.params.core``; two slots unless given)."""
    cfg = cases[0].cfg
    dut = Core(**dict(vars(cfg), **dict(SMALL_CORE, **core)))
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
            results.append(dict(x=x, error=ctx.get(dut.error), error_pc=ctx.get(dut.error_pc),
                                executed=ctx.get(dut.executed),
                                predicated_off=ctx.get(dut.predicated_off),
                                cycles=ctx.get(dut.cycles)))

    sim.add_testbench(bench)
    sim.run()
    return results


WIDE = dict(seq_stim.SMALL, lanes=8, x_depth=128, w_depth=256)  # room for more slots
CORES = {  # name: (machine, the Core's other parameters)
    "sparse": (seq_stim.SMALL, {}),
    "dense": (seq_stim.SMALL, dict(skip=False)),
    "sparse-sync-params": (seq_stim.SMALL, dict(param_ram="sync")),
    "sparse-short-requant": (seq_stim.SMALL, dict(short_requant=True)),
    "sparse-hazards-per-4-words": (seq_stim.SMALL, dict(hazard_words=4)),
    # the engine's latency grows with its slots (its adder tree): 8 slots, and bins
    "8-slots": (WIDE, dict(slots=8)),
    "bins-222": (WIDE, dict(slots=6, bins={8: 2, 4: 2, 2: 2})),
    "bins-lane-local": (WIDE, dict(slots=9, bins={8: 1, 4: 8})),
    "bins-211": (seq_stim.SMALL, dict(slots=4, bins={8: 2, 4: 1, 2: 1})),
}


@pytest.mark.parametrize("name", list(CORES))
def test_core_random_programs(name):
    """Random programs on cores of each kind: results, errors (and the pc they name) and
    the cycle count the core model predicts from the same parameters."""
    machine, core = CORES[name]
    cfg = golden_sequencer.MachineConfig(**machine)
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    # every case is kept, those the golden model raises on among them: illegal words, an
    # accumulator leaving int32 (every bias at the edge of int32 in every fourth case) and a
    # REQ refused (two channels of bad requantizer parameters in every fourth)
    cases = [seq_stim.random_case(rng, cfg, bad_rate=0.01, bad_channels=2 * int(k % 4 == 1),
                                  edge_bias=k % 4 == 3) for k in range(25)]
    for kind, kw in (("ArithmeticError", dict(edge_bias=True)),
                     ("ValueError", dict(bad_channels=2))):  # (drawn until there is one)
        while all(seq_stim.expected(c)[0]["fault"] != kind for c in cases):
            cases.append(seq_stim.random_case(rng, cfg, bad_rate=0.01, **kw))
    faults = {}
    got_all = run_core_cases(cases, **core)
    for n, (case, got) in enumerate(zip(cases, got_all, strict=True)):
        want, err = seq_stim.expected(case)
        assert got["error"] == (err is not None), (n, err)
        if err is not None:
            kind = want["fault"]
            faults[kind] = faults.get(kind, 0) + 1
            assert got["error_pc"] == want["error_pc"], (n, err, got["error_pc"])
        if want["precise"]:  # (after the datapath's errors the state is not specified)
            assert got["x"] == want["x"], n
            assert got["executed"] == want["executed"] and \
                got["predicated_off"] == want["predicated_off"], n
        if err is None:  # the core model predicts the cycle count (hazards, queue, latencies)
            cycles, _ = golden_core.predict_program_cycles(
                case.cfg, case.params, case.program, case.x_init, **dict(SMALL_CORE, **core))
            assert got["cycles"] == cycles, (n, got["cycles"], cycles)
    print(f"faults: {faults}")
    assert set(faults) == {"IllegalInstruction", "ArithmeticError", "ValueError"}, faults


CONV_CORE = dict(seq_stim.CONV, x_depth=512, w_depth=512)  # (a convolution machine)


@pytest.mark.parametrize("param_ram, fetch_ports, stored_nz, hazard_words",
                         [("async", 1, False, 4), ("sync", 2, True, 16)])
def test_conv_core_random_programs(param_ram, fetch_ports, stored_nz, hazard_words):
    """Random convolution programs (``sim.seq_stim.conv_case``: nested loops, STRD, SETG,
    window DOTs, lane banks and REQWs, both roundings) on a convolution core: results,
    errors and the pc they name, and the cycles the core model predicts (with the weights'
    non-zero bits stored or computed: ``stored_nz``, core_kws's; hazard regions smaller
    than a DOT, or of 16 words, which a plain DOT spans two of at most)."""
    rng = np.random.default_rng(SEED + 5)
    print(f"seed {SEED + 5}")
    # every third case with refused requantizer parameters on two channels, every third
    # with its biases at the edges of int32 (a REQW's lane or a LDB'd DOT leaves it)
    cases = [seq_stim.conv_case(rng, bad_channels=2 * int(k % 3 == 1), edge_bias=k % 3 == 2,
                                **CONV_CORE) for k in range(12)]
    core = dict(param_ram=param_ram, short_requant=True, hazard_words=hazard_words,
                fetch_ports=fetch_ports, stored_nz=stored_nz)
    got_all = run_core_cases(cases, **core)
    errors = 0
    for n, (case, got) in enumerate(zip(cases, got_all, strict=True)):
        want, err = seq_stim.expected(case)
        assert got["error"] == (err is not None), (n, err)
        errors += err is not None
        if err is not None:
            assert got["error_pc"] == want["error_pc"], (n, err, got["error_pc"])
        if want["precise"]:
            assert got["x"] == want["x"], n
            assert (got["executed"], got["predicated_off"]) == \
                (want["executed"], want["predicated_off"]), n
        if err is None:
            cycles, _ = golden_core.predict_program_cycles(
                case.cfg, case.params, case.program, case.x_init, **dict(SMALL_CORE, **core))
            assert got["cycles"] == cycles, (n, got["cycles"], cycles)
    print(f"{errors} of {len(cases)} end in an error")
    assert 0 < errors < len(cases)


@pytest.mark.parametrize("param_ram", ["async", "sync"])
def test_conv_core_window_tap_faults_with_a_held_uop(param_ram):
    """The convolution core's uop skid buffer (``hw.uop_skid``) at the errors where a uop is
    held when the error lands: a window DOT keeping a tap outside the activation memory
    (alone, as the last word, after DOTs in flight) and a program running off its end with
    its last uop held. Precise errors: the error, its pc, the uops executed (the dropped
    one is not) and the activations equal golden's."""
    cfg = golden_sequencer.MachineConfig(**CONV_CORE)
    c, depth = cfg.channels, cfg.prog_depth
    prm = golden_sequencer.Params(
        w=np.ones(cfg.w_depth, np.int64), bias=np.zeros(c, np.int64),
        multiplier=np.full(c, 1 << 30), shift=np.zeros(c, np.int64),
        out_zp=np.zeros(c, np.int64), act_min=np.full(c, -128), act_max=np.full(c, 127))
    x = np.full(cfg.x_depth, 1, np.int64)
    setg = isa.ins("SETG", ih=4, iw=4, kw=3, pt=0, pl=0, sy=1, sx=1, pixpitch=1, rowpitch=4)
    bad = isa.ins("DOT", acc=0, win=1, xaddr=4 * 126, waddr=0, beats=9)
    good = isa.ins("DOT", acc=0, win=1, xaddr=0, waddr=0, beats=9)
    clr, halt = isa.ins("CLR", acc=0), isa.ins("HALT")
    programs = {"tap fault": [setg, bad, halt],
                "tap fault, last word": [setg] + [clr] * (depth - 2) + [bad],
                "good DOT, last word": [setg] + [clr] * (depth - 2) + [good],
                "tap fault after DOTs": [setg, good, good, good, bad, halt]}
    cases = [seq_stim.Case(cfg, prm, x, p + [0] * (depth - len(p))) for p in programs.values()]
    got_all = run_core_cases(cases, param_ram=param_ram, short_requant=True, hazard_words=4)
    for name, case, got in zip(programs, cases, got_all, strict=True):
        want, err = seq_stim.expected(case)
        assert err is not None and want["precise"], (name, err)
        assert got["error"] and got["error_pc"] == want["error_pc"], (name, got, want["error_pc"])
        assert (got["executed"], got["predicated_off"]) == \
            (want["executed"], want["predicated_off"]), (name, got["executed"], want["executed"])
        assert got["x"] == want["x"], name


@pytest.mark.parametrize("conv", [False, True], ids=["core", "conv-core"])
def test_host_ports_closed_while_busy(conv):
    """The host's writes (activations, parameters, delta records) offered in every cycle of
    a run are refused (``ready`` low) while ``busy`` is high, then all three are taken: the
    run's results are golden's (a write let in would change them), and the activation write
    lands after it. Five programs a core, so that some end with results in flight after the
    Sequencer stopped. (The convolution core opens its ports a cycle after it went idle, as
    its start: registers, ``Core._status``; its ``busy`` stays high that cycle.)"""
    for k in range(5):
        seed = SEED + 31 + 10 * conv + k
        print(f"seed {seed}")
        seen = _host_ports_run(np.random.default_rng(seed), conv)
        print(seen)
        assert seen["busy"] > 10


def _random_core_case(rng, conv):
    """A random program (a convolution one for ``conv``), golden's results and error, and a
    core of the kind to run it."""
    if conv:
        case = seq_stim.conv_case(rng, **CONV_CORE)
        core = dict(param_ram="sync", short_requant=True, hazard_words=4, fetch_ports=2)
    else:
        case = seq_stim.random_case(rng)
        core = {}
    want, err = seq_stim.expected(case)
    return case, want, err, Core(**dict(vars(case.cfg), **dict(SMALL_CORE, **core)))


async def _load_case(ctx, dut, case, rng):
    """Load a case into an idle core (its weights from an all-zero bank), then a cycle."""
    weights, params, xs, prog = case_loads(case, np.zeros(case.cfg.w_depth, np.int64))
    for port, pls in ((dut.records, weights), (dut.param_wr, params), (dut.x_wr, xs),
                      (dut.pload, prog)):
        await send(ctx, port, pls, rng)
    await ctx.tick()


def _host_ports_run(rng, conv):
    """One random program on a core of the kind, host writes offered throughout."""
    case, want, err, dut = _random_core_case(rng, conv)
    cfg = case.cfg
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen = dict(busy=0)
    ports = (dut.x_wr, dut.param_wr, dut.records)

    async def bench(ctx):
        await _load_case(ctx, dut, case, rng)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        # offered from now on: activation 0 := 99, channel 0's bias := 12345, a record
        ctx.set(dut.x_wr.payload.addr, 0)
        ctx.set(dut.x_wr.payload.value, 99)
        ctx.set(dut.param_wr.payload.ch, 0)
        ctx.set(dut.param_wr.payload.p.bias, 12345)
        ctx.set(dut.records.payload.op, 0)
        for port in ports:
            ctx.set(port.valid, 1)
        for _ in range(50_000):
            ready = [ctx.get(p.ready) for p in ports]
            if ctx.get(dut.busy):
                seen["busy"] += 1
                assert not any(ready), f"a host write taken while busy: {ready}"
            elif any(ready):
                assert all(ready), f"the host ports open apart: {ready}"
                break
            await ctx.tick()
        else:
            raise AssertionError("the core did not finish")
        await ctx.tick()  # (the three writes land)
        for port in ports:
            ctx.set(port.valid, 0)
        await ctx.tick()
        x = await read_x(ctx, dut, cfg.x_depth)
        if want["precise"]:
            assert x[1:] == want["x"][1:]
        assert x[0] == 99
        assert ctx.get(dut.error) == (err is not None)

    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("conv", [False, True])
def test_record_refused_in_a_starts_cycle(conv):
    """A delta BEGIN offered in the cycle a program starts is refused (its bank copy would
    take the weights' read port from the program) and taken once the core is idle; the
    program's results are golden's. Three programs a core."""
    for k in range(3):
        seed = SEED + 71 + 10 * conv + k
        print(f"seed {seed}")
        _begin_with_start_run(np.random.default_rng(seed), conv)


def _begin_with_start_run(rng, conv):
    """One random program on a core of the kind, a BEGIN offered from its start's cycle."""
    case, want, err, dut = _random_core_case(rng, conv)
    cfg = case.cfg
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        await _load_case(ctx, dut, case, rng)
        ctx.set(dut.records.payload.op, gp.RecordOp.BEGIN)
        ctx.set(dut.records.valid, 1)
        ctx.set(dut.start, 1)
        assert not ctx.get(dut.busy)
        assert not ctx.get(dut.records.ready), "a BEGIN taken in a start's cycle"
        await ctx.tick()
        ctx.set(dut.start, 0)
        assert ctx.get(dut.busy), "the program did not start"
        for _ in range(50_000):
            if ctx.get(dut.records.ready):
                assert not ctx.get(dut.busy), "a record taken while busy"
                break
            await ctx.tick()
        else:
            raise AssertionError("the BEGIN was never taken")
        await ctx.tick()
        ctx.set(dut.records.valid, 0)
        assert ctx.get(dut.busy), "the BEGIN's bank copy did not start"
        while ctx.get(dut.busy):
            await ctx.tick()
        x = await read_x(ctx, dut, cfg.x_depth)
        if want["precise"]:
            assert x == want["x"]
        assert ctx.get(dut.error) == (err is not None)

    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("hazard_words", [1, 2, 4])
def test_hazard_regions(hazard_words):
    """Programs of LDB, DOT and REQ on the first 8 activation words only (REQ results and
    DOT reads of nearby words back to back): values exact, and the cycles exactly as the core
    model predicts for the hazards' region size (it changes the count of nearly every one of
    these programs)."""
    rng = np.random.default_rng(SEED + hazard_words)
    print(f"seed {SEED + hazard_words}")
    cfg = golden_sequencer.MachineConfig(**seq_stim.SMALL)
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
        cycles, _ = golden_core.predict_program_cycles(
            case.cfg, case.params, case.program, case.x_init, **SMALL_CORE,
            hazard_words=hazard_words)
        assert got["cycles"] == cycles, (n, got["cycles"], cycles)


@pytest.mark.long
def test_ice40_configuration_random_programs():
    """The iCE40 configuration as synthesized (spec.configs "core_ice40"): values and cycles
    on random programs."""
    params = spec_configs.CONFIGS["core_ice40"][1]
    cfg = golden_sequencer.MachineConfig.of(params)
    rng = np.random.default_rng(SEED + 40)
    print(f"seed {SEED + 40}")
    cases = []
    while len(cases) < 15:
        c = seq_stim.random_case(rng, cfg=cfg, bad_rate=0.0)
        if seq_stim.expected(c)[1] is None:
            cases.append(c)
    got_all = run_core_cases(cases, **params)
    for n, (case, got) in enumerate(zip(cases, got_all, strict=True)):
        want, _ = seq_stim.expected(case)
        assert not got["error"] and got["x"] == want["x"], n
        cycles, _ = golden_core.predict_program_cycles(
            case.cfg, case.params, case.program, case.x_init, **params)
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
    assert golden_sequencer.MachineConfig.of(Core(**seq_stim.SMALL, **SMALL_CORE).params)


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
    dut = Core(**vars(cfg), **SMALL_CORE)
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


def _fault_case(program, **channel):
    """A SMALL machine whose weights are all 1 and activations (less the zero point) 1 below
    address 32 and -1 from there (a DOT adds 4 or -4 per beat), channel 0's parameters
    valid, channel 1's as given."""
    cfg = golden_sequencer.MachineConfig(**seq_stim.SMALL)
    c = cfg.channels
    prm = golden_sequencer.Params(w=np.ones(cfg.w_depth, np.int64), bias=np.zeros(c, np.int64),
                         multiplier=np.full(c, 1 << 30), shift=np.zeros(c, np.int64),
                         out_zp=np.zeros(c, np.int64), act_min=np.full(c, -128),
                         act_max=np.full(c, 127))
    for k, v in channel.items():
        getattr(prm, k)[1] = v
    x = cfg.x_zero_point + np.where(np.arange(cfg.x_depth) < 32, 1, -1)
    return seq_stim.Case(cfg, prm, x, program + [0] * (cfg.prog_depth - len(program)))


I = isa.ins  # noqa: E741
EDGE = (1 << 31) - 8  # channel 1's bias: two beats of 4 take the accumulator past int32
FAULT_PROGRAMS = {
    # each: (program, channel 1's parameters, the pc the error names)
    "dot-overflow": ([I("LDB", acc=0, ch=1), I("DOT", acc=0, xaddr=0, waddr=0, beats=1),
                      I("DOT", acc=0, xaddr=0, waddr=0, beats=1), I("HALT")],
                     dict(bias=EDGE), 2),
    "dot-underflow": ([I("LDB", acc=2, ch=1), I("DOT", acc=2, xaddr=32, waddr=0, beats=3),
                       I("HALT")], dict(bias=-(1 << 31) + 11), 1),
    "req-shift": ([I("CLR", acc=1), I("REQ", acc=1, ch=1, oaddr=8), I("HALT")],
                  dict(shift=31), 1),
    "req-multiplier": ([I("REQ", acc=3, ch=1, oaddr=8), I("HALT")],
                       dict(multiplier=-5), 0),
    "req-clamp": ([I("CLR", acc=0), I("REQ", acc=0, ch=0, oaddr=4),
                   I("REQ", acc=0, ch=1, oaddr=8), I("HALT")], dict(act_min=9, act_max=8), 2),
    # a long DOT on acc 0 that overflows when it lands, after a refused REQ on acc 1 was
    # taken: the DOT comes first in program order, so its pc is named
    "dot-before-req": ([I("LDB", acc=0, ch=1), I("DOT", acc=0, xaddr=0, waddr=0, beats=8),
                        I("REQ", acc=1, ch=1, oaddr=8), I("HALT")],
                       dict(bias=(1 << 31) - 20, shift=-32), 1),
    # the same before an illegal word: the DOT's fault arrives after the Sequencer's
    "dot-before-illegal": ([I("LDB", acc=0, ch=1), I("DOT", acc=0, xaddr=0, waddr=0, beats=8),
                            I("CLR", acc=1), 0, I("HALT")], dict(bias=(1 << 31) - 20), 1),
    # the refused REQ first, a later DOT would overflow: nothing after the REQ executes
    "req-before-dot": ([I("LDB", acc=0, ch=1), I("REQ", acc=1, ch=1, oaddr=8),
                        I("DOT", acc=0, xaddr=0, waddr=0, beats=2), I("HALT")],
                       dict(bias=EDGE, act_min=1, act_max=0), 1),
}


def test_fault_programs():
    """Programs that provoke each error of the datapath: the golden model raises at the pc
    the core's ``error_pc`` names, the first in program order when two are in flight."""
    names = list(FAULT_PROGRAMS)
    cases = [_fault_case(FAULT_PROGRAMS[n][0], **FAULT_PROGRAMS[n][1]) for n in names]
    got_all = run_core_cases(cases)
    for name, case, got in zip(names, cases, got_all, strict=True):
        want, err = seq_stim.expected(case)
        pc = FAULT_PROGRAMS[name][2]
        assert want["error_pc"] == pc, (name, err)
        assert got["error"] == 1 and got["error_pc"] == pc, (name, got["error_pc"], err)


def test_probe_abandoned_by_a_fault_does_not_block_the_next_run():
    """A DOT's int32 fault lands while a SETP waits for its value: the Sequencer stops and
    never takes the value. The probe unit must not keep it: the next program's SETPs are
    answered (this hung before the unit was reset with the error)."""
    faulty = _fault_case([I("LDB", acc=0, ch=1), I("DOT", acc=0, xaddr=0, waddr=0, beats=8),
                          I("SETP", pd=1, cmp=0, src=3, addr=0, beats=4, imm=0), I("HALT")],
                         bias=(1 << 31) - 20)
    after = _fault_case([I("SETP", pd=2, cmp=0, src=4, addr=32, beats=2, imm=8),
                         I("CLR", pred=2, acc=0), I("HALT")])
    want0, err0 = seq_stim.expected(faulty)
    assert want0["error_pc"] == 1, err0
    want1, err1 = seq_stim.expected(after)
    assert err1 is None and want1["p"][2]
    got0, got1 = run_core_cases([faulty, after], max_cycles=2_000)
    assert got0["error"] == 1 and got0["error_pc"] == 1
    assert got1["error"] == 0 and got1["x"] == want1["x"]
    assert got1["executed"] == want1["executed"] and got1["cycles"] > 0
