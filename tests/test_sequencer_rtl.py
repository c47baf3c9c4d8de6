# amaranth: UnusedElaboratable=no
"""Sequencer and PredicateFile under amaranth.sim against the golden ISA simulator: random
programs, random valid/ready on every stream, identical architectural state afterwards."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparq.golden import isa
from sparq.hw.seq_execute import Execute
from sparq.hw.sequencer import PredicateFile, Sequencer
from sparq.sim import seq_stim
from sparq.spec.isa import FIELDS
from tests.conftest import SEED


def run_cases(cases, *, seed=SEED, idle=0.3, stall=0.3, max_cycles=20_000, reverse=False,
              gap=1, fetch_ports=1):
    """Run each case on one Sequencer; return per case ``(datapath state, counters dict)``.

    The program is loaded (in reverse address order with ``reverse``, so that word 0 is
    written last) unless it is the previous case's, and the start comes ``gap`` cycles after
    the last write (or, with no load, after the previous run halted)."""
    cfg = cases[0].cfg
    dut = Sequencer(fetch_ports=fetch_ports, **{k: getattr(cfg, k) for k in vars(cfg)})
    rng = np.random.default_rng(seed)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    results = []

    async def bench(ctx):
        loaded = None
        for case in cases:
            words = list(enumerate(case.program))
            for addr, word in (reversed(words) if reverse else words):
                if case.program is loaded:
                    break
                while rng.random() < idle:
                    ctx.set(dut.pload.valid, 0)
                    await ctx.tick()
                ctx.set(dut.pload.payload.addr, addr)
                ctx.set(dut.pload.payload.word, word)
                ctx.set(dut.pload.valid, 1)
                await ctx.tick().until(dut.pload.ready)
            loaded = case.program
            ctx.set(dut.pload.valid, 0)
            for _ in range(gap):
                await ctx.tick()
            dp = seq_stim.Datapath(case)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            reply = seq_stim.ValueReply(rng, stall)
            for _ in range(max_cycles):
                uop_ready = int(rng.random() >= stall)
                probe_ready = int(rng.random() >= stall)
                ctx.set(dut.uop.ready, uop_ready)
                ctx.set(dut.probe.ready, probe_ready)
                value = reply.presented()
                ctx.set(dut.value.valid, int(value is not None))
                if value is not None:
                    ctx.set(dut.value.payload, value)
                (_, _, uv, up, pv, pp, vr, busy) = await ctx.tick().sample(
                    dut.uop.valid, dut.uop.payload, dut.probe.valid, dut.probe.payload,
                    dut.value.ready, dut.busy)
                if uv and uop_ready:
                    dp.uop(up.kind, up.acc, up.ch, up.xaddr, up.waddr, up.beats, up.oaddr,
                           up.zp, conv=_conv_fields(up) if cfg.conv else None)
                reply.clock(vr)
                if pv and probe_ready:
                    reply.probe(dp.probe(pp.src, pp.addr, pp.beats, pp.zp))
                if not busy:
                    break
            else:
                raise AssertionError(f"the sequencer did not halt in {max_cycles} cycles")
            ctx.set(dut.value.valid, 0)
            counters = {k: ctx.get(getattr(dut, k)) for k in (
                "cycles", "executed", "predicated_off", "stalls", "halted", "error",
                "error_pc", "preds")}
            results.append((dp.m.state(), counters))

    sim.add_testbench(bench)
    sim.run()
    return results


def checked(cases, results):
    """``(counters, golden's error or None)`` for each case ``check`` passes;
    a case it fails stops the test with the case's listing printed."""
    for n, (case, (state, counters)) in enumerate(zip(cases, results, strict=True)):
        try:
            err = check(case, state, counters)
        except AssertionError:
            print("\n".join(f"{a:3} " + (isa.disassemble(w) if _legal(w) else f"{w:#014x}")
                            for a, w in enumerate(case.program) if w))
            raise AssertionError(f"case {n}") from None
        yield counters, err


def _conv_fields(up):
    """A convolution machine's uop fields (``uop_layout(conv=True)``) for the stand-in."""
    window = {name: getattr(up.window, name) for name, _, _ in FIELDS["SETG"]}
    return dict(win=up.win, i0=up.i0, i1=up.i1, round=up.round, window=window)


def check(case, got_state, counters):
    want, err = seq_stim.expected(case)
    preds = [bool(counters["preds"] >> k & 1) for k in range(8)]
    assert counters["error"] == (err is not None), err
    assert preds == want["p"]
    assert got_state["acc"] == want["acc"]
    assert got_state["x"] == want["x"]
    assert counters["executed"] == want["executed"]
    assert counters["predicated_off"] == want["predicated_off"]
    if err is None:
        assert counters["cycles"] - counters["stalls"] == want["cycles"]
    return err


@pytest.mark.parametrize("fetch_ports", [1, 2])
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.4)])
def test_random_programs(idle, stall, fetch_ports):
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    cases = [seq_stim.random_case(rng, bad_rate=0.01) for _ in range(60)]
    errors = 0
    for _, err in checked(
            cases, run_cases(cases, idle=idle, stall=stall, fetch_ports=fetch_ports)):
        errors += err is not None
    assert 0 < errors < len(cases)  # both paths exercised


@pytest.mark.parametrize("fetch_ports", [1, 2])
def test_loop_guarded_by_the_predicate_just_written(fetch_ports):
    """A LOOP right after the SETP, PAND, POR or PNOT that writes its predicate: the
    Sequencer decides to run or skip it from the value written that cycle (forwarding)."""
    rng = np.random.default_rng(SEED + 2)
    print(f"seed {SEED + 2}")
    cases = []
    for _ in range(16):
        case = seq_stim.random_case(rng, bad_rate=0.0)
        case.program = seq_stim.pred_loop_program(rng, case.cfg)
        cases.append(case)
    runs = skipped = 0
    for n, (case, (state, counters)) in enumerate(zip(
            cases, run_cases(cases, idle=0.2, stall=0.3, fetch_ports=fetch_ports), strict=True)):
        assert check(case, state, counters) is None, f"case {n}"
        skipped += counters["predicated_off"]  # the model's, as check has just asserted
        runs += counters["executed"]
    print(f"{runs} instructions executed, {skipped} predicated off")
    assert skipped and runs


@pytest.mark.parametrize("fetch_ports", [1, 2])
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.4)])
def test_random_conv_programs(idle, stall, fetch_ports):
    """A convolution machine: nested loops (shared ends, predicated-off LOOPs, the deepest
    level), STRD, SETG, window DOTs, lane banks and their REQs, indexed channels and weights,
    SETL's rounding; the state and counters equal golden's, errors included."""
    rng = np.random.default_rng(SEED + 3)
    print(f"seed {SEED + 3}")
    cases = [seq_stim.conv_case(rng) for _ in range(40)]
    errors = nested = 0
    for counters, err in checked(
            cases, run_cases(cases, idle=idle, stall=stall, fetch_ports=fetch_ports)):
        errors += err is not None
        nested += counters["executed"] > 100
    print(f"{errors} of {len(cases)} cases end in an error; {nested} execute over 100")
    assert 0 < errors < len(cases) // 2 and nested


CONV_DIRECTED = {
    # a weight offset that is not lane-aligned: the DOT's second iteration is illegal
    "misaligned weight offset": """
        STRD level=0 kind=0 stride=2
        LOOP count=2 body=1
        DOT acc=0 wi=1 xaddr=64 waddr=0 beats=1
        HALT""",
    # three bodies ending on one word, the deepest run once: the middle level steps
    "shared ends": """
        STRD level=2 kind=1 stride=1
        LOOP count=2 body=6 xstride=4
        CLR acc=1
        LOOP count=3 body=4 ostride=4
        LDB acc=0 ci=1 ch=0
        LOOP count=1 body=2
        DOT acc=0 xi=1 xaddr=64 waddr=0 beats=1
        REQ acc=0 ci=1 ch=0 oi=1 oaddr=700
        HALT""",
    # a predicated-off LOOP whose skipped body ends the enclosing one
    "skipped body ends the loop": """
        LOOP count=3 body=4 ostride=1
        REQ acc=0 ch=1 oi=1 oaddr=800
        @!p0 LOOP count=2 body=2
        CLR acc=0
        CLR acc=1
        HALT""",
    # a channel offset past the parameter memory (a lane bank's REQ needs lanes channels)
    "channel offset": """
        STRD level=0 kind=1 stride=12
        LOOP count=3 body=1
        REQ acc=4 ci=1 ch=8 oaddr=640
        HALT""",
}


@pytest.mark.parametrize("fetch_ports", [1, 2])
@pytest.mark.parametrize("name", list(CONV_DIRECTED))
def test_conv_directed(name, fetch_ports):
    """Corners of the convolution machine's loops and offsets, each against golden."""
    rng = np.random.default_rng(SEED + 4)
    case = seq_stim.conv_case(rng, length=8)
    words = isa.assemble(CONV_DIRECTED[name])
    case.program = words + [0] * (case.cfg.prog_depth - len(words))
    (state, counters), = run_cases([case], stall=0.3, fetch_ports=fetch_ports)
    err = check(case, state, counters)
    print(f"{name}: {err or 'no error'}, {counters['executed']} executed")
    assert (err is not None) == (name in ("misaligned weight offset", "channel offset"))


def _legal(word):
    try:
        isa.decode(word)
        return True
    except isa.IllegalInstruction:
        return False


@pytest.mark.parametrize("fetch_ports", [1, 2])
def test_start_right_after_word_0_or_a_halt(fetch_ports):
    """The fetch stage reads word 0 while idle: a start in the cycle after word 0 was written,
    or right after the previous run halted, still runs the program as written (and counts
    the same cycles)."""
    rng = np.random.default_rng(SEED + 1)
    print(f"seed {SEED + 1}")
    cases = []
    for _ in range(12):
        case = seq_stim.random_case(rng, bad_rate=0.0)
        cases += [case, case]  # the second run starts right after the first halts
    got = run_cases(cases, idle=0.0, stall=0.2, reverse=True, gap=0, fetch_ports=fetch_ports)
    for n, (case, (state, counters)) in enumerate(zip(cases, got, strict=True)):
        assert check(case, state, counters) is None, f"case {n}"


def test_predicate_file():
    dut = PredicateFile(n=8)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    rng = np.random.default_rng(SEED)

    async def bench(ctx):
        model = [1] + [0] * 7
        for _ in range(300):
            we, addr, d, clr = (int(rng.random() < 0.6), int(rng.integers(0, 8)),
                                int(rng.integers(0, 2)), int(rng.random() < 0.05))
            ctx.set(dut.we, we)
            ctx.set(dut.waddr, addr)
            ctx.set(dut.wdata, d)
            ctx.set(dut.clear, clr)
            await ctx.tick()
            if clr:
                model = [1] + [0] * 7
            elif we and addr:
                model[addr] = d
            assert ctx.get(dut.values) == sum(v << k for k, v in enumerate(model))

    sim.add_testbench(bench)
    sim.run()


def test_harness_catches_ungated_ops(monkeypatch):
    """The same check fails when predicated-off ops are not gated."""
    real = Execute._commit  # (the Sequencer's execute stage)
    monkeypatch.setattr(Execute, "_commit", lambda self, m, on, legal: real(self, m, 1, legal))
    rng = np.random.default_rng(SEED)
    cases = [seq_stim.random_case(rng, bad_rate=0.0) for _ in range(20)]
    with pytest.raises((AssertionError, isa.IllegalInstruction)):
        for case, (state, counters) in zip(cases, run_cases(cases), strict=True):
            check(case, state, counters)
