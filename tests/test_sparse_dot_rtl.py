# amaranth: UnusedElaboratable=no
"""SparseDotProduct under amaranth.sim against golden.sparse_dot, random valid and ready."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, signed
from amaranth.lib import data, stream
from amaranth.sim import Simulator

from sparq.golden.sparse_dot import sparse_dot
from sparq.hw.sparse_dot import SparseDotProduct, beat_layout
from sparq.sim.sparse_stim import beat_payloads, beats, concat, corner_beats
from tests.amaranth_streams import stream_recv, stream_send
from tests.conftest import SEED


class _ZeroPointPerBeat(Elaboratable):
    """The engine fed by a stream whose payload is a beat and its zero point (``i``)."""

    def __init__(self, engine):
        self.engine = engine
        self.i = stream.Signature(data.StructLayout({
            "beat": beat_layout(engine.params["lanes"]), "zp": signed(8)})).flip().create()

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = e = self.engine
        m.d.comb += [e.i.payload.eq(self.i.payload.beat), e.i.valid.eq(self.i.valid),
                     self.i.ready.eq(e.i.ready), e.x_zero_point.eq(self.i.payload.zp)]
        return m


def run_engine(params, b, *, zp=0, idle=0.3, stall=0.3, seed=SEED, push=False, wnz=None):
    """Run beats ``b`` through the engine; ``zp``: one zero point, or one per beat (driven
    with each beat, as the core's feeder does); ``push``: the engine's (``o`` never
    stalled); ``wnz`` (beats x lanes bits): the engine built with ``stored_nz``, each
    beat's ``wnz`` these bits."""
    dut = SparseDotProduct(**params, push=push, stored_nz=wnz is not None)
    payloads = beat_payloads(b)
    if wnz is not None:
        for pl, bits in zip(payloads, wnz, strict=True):
            pl["wnz"] = sum(int(v) << i for i, v in enumerate(bits))
    stall = 0.0 if push else stall
    per_beat = np.ndim(zp) != 0
    top = _ZeroPointPerBeat(dut) if per_beat else dut
    rng = np.random.default_rng(seed)
    sim = Simulator(top)
    sim.add_clock(1e-8)
    n_vec = int(np.sum(b["last"]))
    got = {}

    async def producer(ctx):
        if per_beat:
            await stream_send(ctx, top.i, [dict(beat=p, zp=int(z)) for p, z in
                                           zip(payloads, zp, strict=True)], rng=rng, idle=idle)
            return
        ctx.set(dut.x_zero_point, zp)
        await stream_send(ctx, dut.i, payloads, rng=rng, idle=idle)

    async def consumer(ctx):
        if params.get("output", "stream") == "stream":
            got["out"] = await stream_recv(ctx, dut.o, n_vec, rng=rng, stall=stall)
        else:
            out = {}
            for _ in range(100 * len(b["last"]) + 100):
                _, _, en, addr, d = await ctx.tick().sample(dut.wr_en, dut.wr_addr,
                                                            dut.wr_data)
                if en:
                    out[addr] = d
                if len(out) == n_vec:
                    break
            got["out"] = [out[k] for k in range(n_vec)]
        for _ in range(30):  # let the counters settle
            await ctx.tick()
        got["counters"] = {k: ctx.get(getattr(dut, k)) for k in
                           ("cycles", "pairs", "skipped", "level_error", "level_errors",
                            "overflow")}

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return np.array(got["out"], np.int64), got["counters"]


# N in {4, 8, 16}, M from 1 to N (every M for N=4, a spread for 8 and 16), the dense
# baselines, and the memory output
CONFIGS = ([dict(lanes=4, slots=m) for m in range(1, 5)]
           + [dict(lanes=8, slots=m) for m in (1, 3, 5, 8)]
           + [dict(lanes=16, slots=m) for m in (1, 4, 7, 16)]
           + [dict(lanes=16, slots=4, skip=False), dict(lanes=8, slots=3, skip=False),
              dict(lanes=8, slots=4, output="memory")]
           # multiplier bins as the slot provider (issue 4)
           + [dict(lanes=8, slots=4, bins={8: 1, 4: 1, 2: 2}),
              dict(lanes=16, slots=6, bins={8: 2, 4: 2, 2: 2}),
              dict(lanes=4, slots=1, bins={8: 1}), dict(lanes=8, slots=3, bins={8: 1, 2: 2})]
           # a lane-local narrow bin (one multiplier per lane, no dispatcher)
           + [dict(lanes=16, slots=18, bins={8: 2, 4: 16}),
              dict(lanes=8, slots=9, bins={8: 1, 4: 8}), dict(lanes=4, slots=7, bins={8: 3, 2: 4})])


# (weight, activation) densities of the random beats after the corner ones
DENSITIES = ((0.0, 1.0), (1.0, 0.0), (0.3, 0.6), (1.0, 1.0), (0.1, 0.1))


def _mixed_beats(rng, lanes, zp, n, densities):
    """The corner beats, then ``n`` random beats at each (weight, activation) density."""
    return concat(corner_beats(lanes, zp), *[
        beats(rng, n, lanes=lanes, w_density=wd, x_density=xd, x_zero_point=zp)
        for wd, xd in densities])


def _id(p):
    return "-".join(f"{k}{v}" for k, v in p.items()).replace(" ", "")


@pytest.mark.parametrize("params", CONFIGS, ids=_id)
def test_sparse_dot_matches_golden(params):
    rng = np.random.default_rng(SEED)
    lanes = params["lanes"]
    zp = -128 if lanes == 8 else 3
    b = _mixed_beats(rng, lanes, zp, 40, DENSITIES)
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zp, **params)
    got, counters = run_engine(params, b, zp=zp)
    assert got.tolist() == want.results.tolist()
    stats = want.stats
    assert counters["cycles"] == stats["cycles"]
    assert counters["pairs"] == stats["pairs"] and counters["skipped"] == stats["skipped"]
    assert counters["level_error"] == 0 and counters["overflow"] == 0


@pytest.mark.parametrize("params", [dict(lanes=16, slots=4), dict(lanes=8, slots=3, skip=False),
                                    dict(lanes=16, slots=18, bins={8: 2, 4: 16}),
                                    dict(lanes=8, slots=4, bins={8: 1, 4: 1, 2: 2})], ids=_id)
def test_push_output_with_a_registered_ready(params):
    """``push=True`` (the core's engine): ``i.ready`` is a flip-flop made from the next
    state (ranked slots, the dense baseline, a lane-local bin; with bins of several widths
    it stays logic): under random ``valid`` and zero points changing per beat, the results
    and every counter are golden's, as without it (a ``ready`` a cycle off would take a beat
    twice or drop one)."""
    seed = SEED + 11
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    lanes = params["lanes"]
    zp = int(rng.integers(-128, 128))
    b = _mixed_beats(rng, lanes, zp, 60, DENSITIES)
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zp, **params)
    for idle in (0.0, 0.5):
        got, counters = run_engine(params, b, zp=zp, idle=idle, seed=seed, push=True)
        assert got.tolist() == want.results.tolist(), f"idle {idle}"
        assert counters["cycles"] == want.stats["cycles"], f"idle {idle}"
        assert counters["pairs"] == want.stats["pairs"]
        assert counters["skipped"] == want.stats["skipped"]


@pytest.mark.parametrize("params", [dict(lanes=16, slots=4), dict(lanes=8, slots=3, skip=False),
                                    dict(lanes=8, slots=4, bins={8: 1, 4: 1, 2: 2})], ids=_id)
def test_stored_nz_is_the_weights_zero_mask(params):
    """``stored_nz=True`` (core_kws's engine): with each beat's ``wnz`` its weights' non-zero
    bits, the results and every counter are golden's; with every bit set the zero weights
    are no longer skipped by the ranked engine, and with none set every pair is skipped and
    every result is 0 (the bits alone are what it uses, not a compare beside them; with
    multiplier bins a zero weight's level, 0, keeps it off every bin all the same)."""
    seed = SEED + 13
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    lanes = params["lanes"]
    zp = int(rng.integers(-128, 128))
    b = _mixed_beats(rng, lanes, zp, 40, ((0.0, 1.0), (0.3, 0.6), (1.0, 1.0)))
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zp, **params)
    got, counters = run_engine(params, b, zp=zp, seed=seed, push=True, wnz=b["w"] != 0)
    assert got.tolist() == want.results.tolist()
    assert (counters["cycles"], counters["pairs"], counters["skipped"]) == \
        (want.stats["cycles"], want.stats["pairs"], want.stats["skipped"])
    _, all_set = run_engine(params, b, zp=zp, seed=seed, push=True,
                            wnz=np.ones_like(b["w"], bool))
    if params.get("skip", True) and "bins" not in params:
        assert all_set["skipped"] < counters["skipped"]
        got, none_set = run_engine(params, b, zp=zp, seed=seed, push=True,
                                   wnz=np.zeros_like(b["w"], bool))
        assert not got.any() and none_set["skipped"] == none_set["pairs"]


def test_push_is_refused_with_a_memory_output():
    with pytest.raises(ValueError, match="push must be False, or True with output='stream'"):
        SparseDotProduct(lanes=8, slots=4, output="memory", push=True)


@pytest.mark.parametrize("params", [dict(lanes=16, slots=4), dict(lanes=8, slots=3, skip=False),
                                    dict(lanes=8, slots=4, bins={8: 1, 4: 1, 2: 2})], ids=_id)
def test_zero_point_sampled_with_each_beat(params):
    """The zero point changes from beat to beat (a core's layers have their own): each
    beat's skipping and products use the one it came with, also while the front end is busy
    with an earlier beat and the input waits."""
    seed = SEED + 7
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    lanes, parts, zps = params["lanes"], [], []
    for _ in range(60):
        z = int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))
        part = beats(rng, int(rng.integers(1, 4)), lanes=lanes, w_density=0.7,
                     x_density=float(rng.choice([0.1, 0.5, 1.0])), x_zero_point=z)
        parts.append(part)
        zps += [z] * len(part["last"])
    zps[::5] = [int(v) for v in rng.integers(-128, 128, len(zps[::5]))]  # within vectors too
    b = concat(*parts)
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=np.array(zps),
                      **params)
    got, counters = run_engine(params, b, zp=np.array(zps), seed=seed)
    assert got.tolist() == want.results.tolist()
    assert counters["cycles"] == want.stats["cycles"]
    assert counters["skipped"] == want.stats["skipped"]
    # the check can fail: one zero point for all would give other results
    assert want.results.tolist() != sparse_dot(b["w"], b["x"], b["lvl"], b["last"],
                                               x_zero_point=zps[0], **params).results.tolist()


@pytest.mark.parametrize("params", [dict(lanes=4, slots=2),
                                    dict(lanes=4, slots=3, bins={8: 1, 4: 1, 2: 1}),
                                    dict(lanes=4, slots=5, bins={8: 1, 4: 4})],
                         ids=_id)
def test_level_misfit_is_flagged_and_product_stays_exact(params):
    """Weights that do not fit their declared level: flagged and counted, and (with bins)
    multiplied on a full-width multiplier, so the results stay exact."""
    w = np.array([[5, 0, 0, 0], [0, 1, 0, 0], [100, -9, 3, 2]])
    x = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [2, 3, 4, 5]])
    lvl = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [1, 2, 1, 1]])  # 5, 100, -9, 3, 2 misfit; 1 too
    b = dict(w=w, x=x, lvl=lvl, last=np.array([True, True, True]))
    got, counters = run_engine(params, b)
    assert got.tolist() == [5, 1, 200 - 27 + 12 + 10]
    assert counters["level_error"] == 1 and counters["level_errors"] == 6


def test_check_levels_is_a_bool():
    """``check_levels=False`` (the core's: its levels come from the weights) is an option
    of its own; anything but a bool is refused, naming the value."""
    with pytest.raises(ValueError, match="check_levels must be True or False, not 'no'"):
        SparseDotProduct(lanes=8, slots=4, check_levels="no")


def test_multiplier_bins_slot_provider():
    from sparq.hw.mulbins import MultiplierBins

    b = MultiplierBins({2: 3, 8: 1, 4: 2})
    assert b.widths == [8, 4, 4, 2, 2, 2] and b.slots == 6 and not b.uniform
    assert MultiplierBins({8: 4}).uniform
    with pytest.raises(ValueError, match="8-bit"):
        MultiplierBins({4: 2})
    # the engine takes its slots' widths from its provider
    assert SparseDotProduct(lanes=8, slots=6, bins={8: 1, 4: 2, 2: 3})._slot_widths() == \
        b.widths


def test_make_synth_prices_engines_with_lut_multipliers():
    """make synth runs the dot-product engines also with LUT multipliers (the mulbins bench's
    LUT prices), and the other blocks on ECP5 and iCE40 only."""
    from sparq.hw.synth import default_families
    assert default_families("sparse_dot_N16_bins1l") == ("ecp5", "ice40", "ecp5_lutmul")
    assert default_families("core") == ("ecp5", "ice40")
