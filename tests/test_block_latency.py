# amaranth: UnusedElaboratable=no
"""Each block's ``latency`` property, measured in amaranth.sim (issue 22).

SparseDotProduct: its latency counts from ``F``, the cycle the front end issues the last
step of a vector's last beat, to the cycle ``o.valid`` (``wr_en``) is high
(``spec.params.sparse_dot_latency``). ``F`` is measured twice, from the ports: the cycle
before the ``cycles`` counter reaches the vector's front-end cycles (golden.sparse_dot's
cycle model), and by the front end's recurrence from the ``i`` transfers (a beat taken in
``s = max(transfer + 1, the previous beat's F)``, its last step in ``s + cost``), the one
golden.core uses. Requantizer: input transfer to ``o.valid``. ``o`` is never stalled;
random operands, random idle input cycles (so isolated and back-to-back vectors), and every
result is checked against the golden model, so the k-th output is the k-th vector's. The
comparisons are exact: a latency off by one fails.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparq.golden.sparse_dot import sparse_dot
from sparq.hw.requant import Requantizer
from sparq.hw.sparse_dot import SparseDotProduct
from sparq.sim.requant_stim import expected, payload, requant_vectors
from sparq.sim.sparse_stim import beat_payloads, beats, concat
from sparq.spec import params as spec_params
from tests.amaranth_streams import _set_payload

SEED = 20260522

ENGINES = [
    dict(lanes=1, slots=1), dict(lanes=1, slots=1, skip=False),
    dict(lanes=4, slots=1), dict(lanes=4, slots=2), dict(lanes=4, slots=4),
    dict(lanes=4, slots=2, skip=False), dict(lanes=4, slots=4, bins={8: 2, 4: 1, 2: 1}),
    dict(lanes=8, slots=3, output="memory"), dict(lanes=8, slots=5), dict(lanes=8, slots=8),
    dict(lanes=8, slots=8, skip=False), dict(lanes=8, slots=4, bins={8: 2, 4: 1, 2: 1}),
    dict(lanes=8, slots=9, bins={8: 1, 4: 8}),
    dict(lanes=16, slots=4), dict(lanes=16, slots=4, skip=False), dict(lanes=16, slots=8),
    dict(lanes=16, slots=16), dict(lanes=16, slots=16, skip=False),
    dict(lanes=16, slots=6, bins={8: 2, 4: 2, 2: 2}), dict(lanes=16, slots=17, bins={8: 1, 4: 16}),
    dict(lanes=32, slots=8), dict(lanes=32, slots=16, skip=False), dict(lanes=32, slots=32),
    dict(lanes=32, slots=6, bins={8: 2, 4: 2, 2: 2}), dict(lanes=32, slots=33, bins={8: 1, 4: 32}),
]


def _id(p):
    return "-".join(f"{k}{v}" for k, v in p.items()).replace(" ", "")


def _engine_stimulus(rng, lanes, zp):
    """One-beat vectors (dense, sparse, empty), then vectors of 1 to 4 beats."""
    one = [beats(rng, 4, lanes=lanes, w_density=wd, x_density=xd, x_zero_point=zp,
                 max_beats=1) for wd, xd in ((1.0, 1.0), (0.4, 0.7), (0.0, 1.0))]
    many = [beats(rng, 14, lanes=lanes, w_density=wd, x_density=xd, x_zero_point=zp)
            for wd, xd in ((1.0, 1.0), (0.5, 0.5))]
    return concat(*one, *many)


def measure_engine(params, b, zp, rng, idle=0.35):
    """Per vector: (F from the counter, F from the i transfers, output cycle, result)."""
    dut = SparseDotProduct(**params)
    memory = params.get("output") == "memory"
    out_valid, out_data = (dut.wr_en, dut.wr_data) if memory else (dut.o.valid, dut.o.payload)
    payloads = beat_payloads(b)
    n_vec = int(b["last"].sum())
    rec = dict(transfers=[], counts=[], outs=[])
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        ctx.set(dut.x_zero_point, zp)
        if not memory:
            ctx.set(dut.o.ready, 1)
        k, holding = 0, False
        for cycle in range(60 * len(payloads) + 100):
            if k < len(payloads) and (holding or rng.random() >= idle):
                _set_payload(ctx, dut.i.payload, payloads[k])
                ctx.set(dut.i.valid, 1)
                holding = True
            else:
                ctx.set(dut.i.valid, 0)
            if holding and ctx.get(dut.i.ready):
                rec["transfers"].append(cycle)
                k, holding = k + 1, False
            rec["counts"].append(ctx.get(dut.cycles))
            if ctx.get(out_valid):
                rec["outs"].append((cycle, ctx.get(out_data)))
            if len(rec["outs"]) == n_vec:
                break
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert len(rec["outs"]) == n_vec, f"{len(rec['outs'])} of {n_vec} results"
    return dut.latency, rec


@pytest.mark.parametrize("params", ENGINES, ids=_id)
def test_sparse_dot_latency(params):
    print(f"seed {SEED}")
    rng = np.random.default_rng([SEED, len(_id(params)), params["lanes"], params["slots"]])
    lanes = params["lanes"]
    zp = int(rng.integers(-128, 128))
    b = _engine_stimulus(rng, lanes, zp)
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zp, **params)
    latency, rec = measure_engine(params, b, zp, rng)
    assert latency == spec_params.sparse_dot_latency(**params)
    assert [v for _, v in rec["outs"]] == want.results.tolist()

    counts = np.array(rec["counts"])
    cum = np.cumsum(want.beat_cycles)
    ends = np.flatnonzero(b["last"])
    f_counter = [int(np.argmax(counts == cum[e])) - 1 for e in ends]
    f_model, fe_free = [], 0
    for h, cost, last in zip(rec["transfers"], want.beat_cycles, b["last"], strict=True):
        s = max(h + 1, fe_free)  # the front end takes the beat
        fe_free = s + int(cost)  # and issues its last step
        if last:
            f_model.append(fe_free)
    assert f_counter == f_model
    measured = [c - f for (c, _), f in zip(rec["outs"], f_model, strict=True)]
    assert set(measured) == {latency}, (measured, latency)
    one_beat = [m for m, e, s in zip(measured, ends, np.r_[0, ends[:-1] + 1], strict=True)
                if e == s]
    assert one_beat and len(one_beat) < len(measured)  # both kinds measured


def test_sparse_dot_latency_formula():
    """The configurations of issue 22: 3 up to 4 slots (golden.core's DOT_LATENCY 4 is
    this plus the core's accumulator register), one more for 5 to 16, two for 17 to 64."""
    lat = spec_params.sparse_dot_latency
    assert lat(lanes=16, slots=4) == lat(lanes=4, slots=2) == lat(lanes=16, slots=4,
                                                                   skip=False) == 3
    assert lat(lanes=16, slots=6, bins={8: 2, 4: 2, 2: 2}) == lat(lanes=16, slots=16) == 4
    assert lat(lanes=16, slots=17, bins={8: 1, 4: 16}) == lat(lanes=32, slots=32) == 5
    assert lat(lanes=64, slots=65, bins={8: 1, 4: 64}) == 6
    assert [len(spec_params.adder_tree_registers(n)) for n in range(1, 18)] == \
        [0] * 4 + [1] * 12 + [2]


REQUANTS = [dict(mode=m, short=s) for m in spec_params.REQUANT_MODES for s in (False, True)]


@pytest.mark.parametrize("params", REQUANTS + [dict(mode="prepost", m_bits=8, x_bits=12)],
                         ids=_id)
def test_requant_latency(params):
    print(f"seed {SEED}")
    rng = np.random.default_rng([SEED, len(_id(params))])
    dut = Requantizer(**params)
    p = dut.params
    vecs = requant_vectors(rng, 40, **p)
    want = expected(vecs, **p)
    payloads = [payload(v, p["mode"]) for v in vecs]
    rec = dict(transfers=[], outs=[])
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        k = 0
        for cycle in range(40 * len(vecs)):
            # valid may drop only after a transfer: ready never falls while o is not stalled
            valid = k < len(payloads) and rng.random() >= 0.3
            if valid:
                _set_payload(ctx, dut.i.payload, payloads[k])
            ctx.set(dut.i.valid, valid)
            if valid and ctx.get(dut.i.ready):
                rec["transfers"].append(cycle)
                k += 1
            if ctx.get(dut.o.valid):
                rec["outs"].append((cycle, ctx.get(dut.o.payload)))
            if len(rec["outs"]) == len(vecs):
                break
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert [v for _, v in rec["outs"]] == want.tolist()
    measured = [c - h for (c, _), h in zip(rec["outs"], rec["transfers"], strict=True)]
    assert set(measured) == {dut.latency}, (measured, dut.latency)
    assert dut.latency == spec_params.requant_latency(**p)
