# amaranth: UnusedElaboratable=no
"""QueuedDotProduct (hw.queued_dot) under amaranth.sim against its golden twins: every
result (``golden.sparse_dot``), every beat's take cycle and every result's cycle
(``golden.queued_dot.queued_cycles``), with random valid on the input and random ready on
the output."""

import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparq.golden.queued_dot import queued_cycles
from sparq.golden.sparse_dot import sparse_dot
from sparq.hw.queued_dot import QueuedDotProduct
from sparq.sim.runner import run_given
from sparq.sim.sparse_stim import beat_payloads, beats, concat, corner_beats, queued_times
from tests.amaranth_streams import stream_send
from tests.conftest import SEED, sim_params
from tests.test_sparse_dot_rtl import _ZeroPointPerBeat


def run_queued(params, b, zp, *, idle=0.3, stall=0.3, seed=SEED, ready_taken=False):
    """Run beats ``b`` (zero point ``zp`` per beat) through the engine. Returns the
    results, and per beat / per result the cycles in the model's time (the cycles the
    engine was not stalled by ``o``): ``arrive`` (``INPUT_REGISTERS`` cycles after the
    beat's ``i`` transfer), ``take``, ``leave`` (the first cycle the result is valid). With
    ``ready_taken`` (a ``push`` engine) a valid result counts as taken whatever ``o.ready``
    (driven with ``stall`` all the same)."""
    dut = QueuedDotProduct(**params)
    top = _ZeroPointPerBeat(dut)
    rng = np.random.default_rng(seed)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    n_vec = int(np.sum(b["last"]))
    rec = dict(results=[], arrive=[], take=[], leave=[])

    async def producer(ctx):
        await stream_send(ctx, top.i, [dict(beat=p, zp=int(z)) for p, z in
                                       zip(beat_payloads(b), zp, strict=True)],
                          rng=rng, idle=idle)

    async def monitor(ctx):
        samples, cycles, t = [], 0, 0  # t: the model's time (cycles not stalled by o)
        while len(rec["results"]) < n_vec:
            driven = int(rng.random() >= stall)
            ctx.set(dut.o.ready, driven)
            ready = 1 if ready_taken else driven
            _, _, iv, ir, take, ov, out = await ctx.tick().sample(
                dut.i.valid, dut.i.ready, dut.took, dut.o.valid, dut.o.payload)
            samples.append((iv and ir, ov, ready))
            if take:
                rec["take"].append(t)
            t += int(not ov or ready)
            if ov and ready:
                rec["results"].append(out)
            cycles += 1
            assert cycles < 200 * len(b["last"]) + 200, f"{len(rec['results'])} results"
        ctx.set(dut.o.ready, 0)
        rec["arrive"], rec["leave"] = queued_times(*zip(*samples, strict=True),
                                                   registers=dut.INPUT_REGISTERS)

    sim.add_testbench(producer, background=True)  # (the monitor ends the run)
    sim.add_testbench(monitor)
    sim.run()
    assert len(rec["arrive"]) == len(b["last"]), "beats not taken"
    return {k: np.array(v, np.int64) for k, v in rec.items()}


def _effectual(b, zp):
    return (b["w"] != 0) & (b["x"] != np.asarray(zp)[:, None])


def check(params, b, zp, **kw):
    """The engine's results and cycles against the golden twins; returns the model's run."""
    got = run_queued(params, b, zp, **kw)
    want = [int(v) for v in sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zp,
                                       lanes=params["lanes"], slots=params["slots"]).results]
    assert got["results"].tolist() == want
    model = queued_cycles(_effectual(b, zp), b["last"], arrive=got["arrive"],
                          **QueuedDotProduct(**params).model_params)
    assert got["take"].tolist() == model.take.tolist(), "beats' take cycles"
    assert got["leave"].tolist() == model.leave.tolist(), "results' cycles"
    return model


def _stream(rng, lanes, n, densities, zp_choices=(0, 3, -128, 127)):
    """The corner beats, then ``n`` random beats (vectors of 1-4 beats) at each (weight,
    activation) density; a zero point per beat, the same within a vector."""
    zp0 = int(rng.choice(zp_choices))
    parts = [corner_beats(lanes, zp0)]
    zps = [np.full(len(parts[0]["last"]), zp0)]
    for wd, xd in densities:
        zp = int(rng.choice(zp_choices))
        parts.append(beats(rng, n, lanes=lanes, w_density=wd, x_density=xd, x_zero_point=zp))
        zps.append(np.full(len(parts[-1]["last"]), zp))
    return concat(*parts), np.concatenate(zps)


DENSITIES = ((0.05, 1.0), (0.3, 0.6), (1.0, 1.0), (0.5, 0.5), (0.0, 1.0), (0.1, 0.1))

CONFIGS = [dict(lanes=16, slots=4, depth=8, lookaside=2, tags=8),
           dict(lanes=16, slots=4, depth=8, lookaside=0, tags=4),
           dict(lanes=8, slots=4, depth=4, lookaside=3, tags=2),
           dict(lanes=8, slots=2, depth=16, lookaside=1, tags=16),
           dict(lanes=4, slots=1, depth=4, lookaside=0, tags=1),
           # the wide shape (issue 25): groups of two lanes, queues of 16
           dict(lanes=32, slots=16, depth=16, lookaside=2, tags=16)]


def _id(p):
    return "-".join(f"{k}{v}" for k, v in p.items())


@pytest.mark.parametrize("params", CONFIGS, ids=_id)
def test_queued_dot_matches_its_models(params):
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    b, zp = _stream(rng, params["lanes"], 30, DENSITIES)
    model = check(params, b, zp)
    assert len(model.take) == len(b["last"]) > 100


@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.7, 0.0), (0.0, 0.6)])
def test_queued_dot_full_rate_and_starved(idle, stall):
    """The input always valid and the output always ready (the model's own timing), a
    slow producer, a slow consumer."""
    rng = np.random.default_rng(SEED + 1)
    b, zp = _stream(rng, 16, 40, ((0.2, 1.0), (1.0, 1.0), (0.6, 0.6)))
    check(CONFIGS[0], b, zp, idle=idle, stall=stall)


def _one_group_beats(lanes, slots, n=12):
    """Corner: every pair in one group (the others idle, so only lending can help), a beat
    with no effectual pair ending a vector, and one-beat vectors of one pair (as many vectors
    in flight as the numbers allow)."""
    g = lanes // slots
    w = np.zeros((n, lanes), np.int64)
    w[:, :g] = np.arange(1, g + 1)
    x = np.full((n, lanes), 5, np.int64)
    one = np.zeros((n, lanes), np.int64)
    one[np.arange(n), np.arange(n) % lanes] = -127
    zero = np.zeros((2, lanes), np.int64)
    last = np.r_[np.arange(n) % 3 == 2, np.ones(n, bool), [False, True]]
    last[n - 1] = True
    b = dict(w=np.concatenate([w, one, zero]), x=np.concatenate([x, np.full((n + 2, lanes),
                                                                              -128)]))
    b["lvl"] = np.where(b["w"] == 0, 0, 3)
    b["last"] = last
    return b


@pytest.mark.parametrize("params", CONFIGS[:3], ids=_id)
def test_queued_dot_corner_streams(params):
    b = _one_group_beats(params["lanes"], params["slots"])
    check(params, b, np.zeros(len(b["last"]), np.int64), idle=0.0, stall=0.0)
    check(params, b, np.zeros(len(b["last"]), np.int64))


def test_queued_dot_on_the_digits_models_beats():
    """Real data: the digits MLP's beats (every layer, two images; LiteRT's int8 inputs)."""
    from sparq.golden.data import digits_split
    from sparq.sim.sparse_stim import digits_beats
    from tests.test_sparse_dot_cocotb import FIXTURE

    _, x_test, _, _ = digits_split()
    b, zp, sums = digits_beats(FIXTURE, x_test[:2], lanes=16)
    zps = np.full(len(b["last"]), zp)
    model = check(CONFIGS[0], b, zps, idle=0.1, stall=0.1)
    print(f"digits: {len(b['last'])} beats, {len(sums)} vectors, {model.effectual} pairs")
    assert len(sums) == len(model.leave) > 100


def test_the_checks_see_the_engines_parameters():
    """The cycle checks can fail: on the random stream, the model with another reach,
    queue depth or count of numbers gives other take or result cycles than the built one."""
    rng = np.random.default_rng(SEED)
    b, zp = _stream(rng, 16, 30, DENSITIES)
    nz, p = _effectual(b, zp), QueuedDotProduct(**CONFIGS[0]).model_params
    base = queued_cycles(nz, b["last"], **p)
    for change in (dict(lookaside=1), dict(lookaside=0), dict(depth=16), dict(tags=4),
                   dict(latency=2)):
        other = queued_cycles(nz, b["last"], **{**p, **change})
        assert (other.take.tolist() != base.take.tolist()
                or other.leave.tolist() != base.leave.tolist()), change


def test_push_takes_every_result_without_stalling():
    """``push=True``: ``o.ready`` is not looked at (held low here): the same results and
    cycles as a consumer that is always ready."""
    rng = np.random.default_rng(SEED + 2)
    b, zp = _stream(rng, 16, 30, DENSITIES)
    check(dict(CONFIGS[0], push=True), b, zp, stall=1.0, ready_taken=True)


@pytest.mark.parametrize("bad, message", [
    (dict(depth=6), "depth must be a power of two"),
    (dict(tags=3), "tags must be a power of two"),
    (dict(lookaside=4), "lookaside must be an integer in [0, 3]"),
    (dict(slots=3), "slots must divide lanes=16"),
    (dict(depth=2), "depth must be an integer in [4, 64]"),
    (dict(push=1), "push must be True or False"),
    (dict(lanes=4, slots=2, depth=2, lookaside=1), "depth must be at least 4 in the RTL, not 2"),
])
def test_bad_parameters_are_named(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        QueuedDotProduct(**{**CONFIGS[0], **bad})


@pytest.mark.parametrize("sim, full", sim_params())
def test_queued_dot_cocotb(sim, full):
    """The Verilog under cocotb (Icarus; Verilator in CI): random beats with random valid
    and ready, and the digits MLP's beats; every value and every result's cycle."""
    from tests.test_sparse_dot_cocotb import digits_beats_file

    vectors = 3_000 if full else 600
    given = {"beats_file": digits_beats_file(16, 4 if full else 2)}
    rep, _ = run_given("queued_dot_N16_M4", "tb_queued_dot", given, sim=sim, vectors=vectors,
                       seed=SEED)
    print(f"queued_dot_N16_M4 on {sim}: {rep}")
    assert rep["vectors"] >= vectors and rep["mismatches"] == 0
    assert rep["cycle_mismatches"] == 0 and rep["model_cycles"] > 0
    assert rep["given_vectors"] > 100 and rep["given_mismatches"] == 0
    assert rep["given_cycle_mismatches"] == 0
    assert rep["overflow_first"] == 0 and rep["overflow_second"] == 1
