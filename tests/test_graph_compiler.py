"""golden.graph_compiler: convolutional graphs lowered onto a convolution machine
(``conv=True``), run on the ISA simulator (``golden.sequencer``), every tensor against
LiteRT's reference kernels. The keyword spotter on its real input and structured and random
ones (more in the second tier), and small chains that take the other lowerings (a window
CONV_2D, column strips with another kernel and stride); the errors of what does not fit."""

import pathlib

import numpy as np
import pytest

from sparq.golden import isa
from sparq.golden.graph_compiler import compile_graph, layer_figures
from sparq.golden.sequencer import MachineConfig
from sparq.golden.tflite_graph import run_litert
from sparq.spec.configs import CONFIGS
from tests.conftest import SEED
from tests.tflite_builder import conv_chain, one_conv

FIX = pathlib.Path(__file__).parent / "fixtures" / "mlperf_tiny"
KWS = FIX / "kws_ref_model.tflite"
# a convolution machine with the ECP5 core's engine (16 lanes) and the keyword spotter's
# memories: 16 KB of activations, 32 KB of weights, 1,024 channels
KWS_CORE = CONFIGS["core_kws"][1]
KWS_MACHINE = MachineConfig.of(KWS_CORE)
CHAIN_MACHINE = MachineConfig(lanes=16, x_depth=4096, w_depth=8192, channels=256,
                              prog_depth=512, x_zero_point=-128, conv=True)


def kws_inputs(n_random, seed):
    """The real input, all at the zero point, saturated low and high, then random int8."""
    x = np.load(FIX / "kws_input.npy").astype(np.int8)
    zp = -128 + 211  # the model's input zero point (83)
    rng = np.random.default_rng(seed)
    return np.concatenate([x, np.full_like(x, zp), np.full_like(x, -128), np.full_like(x, 127),
                           rng.integers(-128, 128, (n_random, *x.shape[1:])).astype(np.int8)])


def check_every_tensor(c, model, xs, outputs=None):
    """Run each input through the compiled graph; every op's output equals LiteRT's.
    ``outputs``, a list, receives each input's graph output."""
    ref = run_litert(model, xs)
    for n, row in enumerate(xs):
        out, cycles = c.run(row)
        if outputs is not None:
            outputs.append(out[c.graph.outputs[0]])
        for op in c.graph.ops:
            y = op.outputs[0]
            want = ref[y][n].reshape(c.graph.t(y).shape[1:])
            got = out[y].reshape(c.graph.t(y).shape[1:])
            assert np.array_equal(got, want), (n, op.index, op.kind,
                                               int(np.sum(got != want)))
        assert cycles > 0
    return len(xs) * len(c.graph.ops)


@pytest.fixture(scope="module")
def kws():
    return compile_graph(KWS, KWS_MACHINE)


def test_kws_fits_the_machine(kws):
    assert kws.params.w.size == 25_616 and kws.params.bias.size == 652
    assert len(kws.program) <= KWS_MACHINE.prog_depth
    ops = {isa.decode(w).op for w in kws.program}
    assert {"SETL", "SETG", "STRD", "LOOP", "DOT", "REQ"} <= ops
    # two activation buffers of 8,000 B ping-pong (and the strips, the pool, the logits):
    # each op's input and output lie in memory and apart
    g = kws.graph
    for op in g.ops:
        if op.kind in ("RESHAPE", "SOFTMAX"):
            continue
        (a, n), (b, m) = ((kws.buffers[t], int(np.prod(g.t(t).shape)))
                          for t in (op.inputs[0], op.outputs[0]))
        if op.index == 0:
            n = kws.strips["ow"] * kws.strips["strip"] + kws.strips["overhang"]
        assert 0 <= a and a + n <= KWS_MACHINE.x_depth and b + m <= KWS_MACHINE.x_depth
        assert a + n <= b or b + m <= a, op.index


def test_kws_every_layer_bitexact(kws):
    xs = kws_inputs(1, SEED)
    assert xs[0].shape == (49, 10, 1)
    outputs = []
    n = check_every_tensor(kws, KWS, xs, outputs)
    assert int(np.argmax(outputs[0])) == 5  # the real input's class
    print(f"{len(xs)} inputs, {n} tensors equal to LiteRT")


@pytest.mark.long
def test_kws_on_four_lanes_bitexact():
    """The spotter on a four-lane convolution machine (the iCE40's engine width): pointwise
    rows of 64 channels take two DOTs (15 + 1 beats), the strips one phase."""
    c = compile_graph(KWS, MachineConfig(**dict(vars(KWS_MACHINE), lanes=4, prog_depth=1024)))
    check_every_tensor(c, KWS, kws_inputs(0, SEED)[:2])


@pytest.mark.long
def test_kws_twenty_inputs_bitexact(kws):
    n = check_every_tensor(kws, KWS, kws_inputs(16, SEED + 1))
    print(f"20 inputs, {n} tensors equal to LiteRT")


@pytest.mark.parametrize("first, lanes", [("strip", 16), ("window", 16), ("window", 2)])
def test_small_chains_bitexact(first, lanes, tmp_path):
    """Other shapes through each lowering: column strips of a 5x3 kernel at stride (1, 2)
    (a phase per output row), or a 3x3 CONV_2D at stride 2 over 16 channels (window DOTs); then
    depthwise, pointwise, pool, FC and softmax. On 2 lanes the FC's rows of 32 take two
    DOTs each (at most 15 beats a DOT)."""
    seed = SEED + 31 + (first == "window")
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    path = tmp_path / f"chain_{first}.tflite"
    path.write_bytes(conv_chain(rng, first=first))
    c = compile_graph(path, MachineConfig(**dict(vars(CHAIN_MACHINE), lanes=lanes)))
    if lanes == 2:
        fc = next(s for s in c.segments if s.op.kind == "FULLY_CONNECTED")
        assert [isa.decode(w).beats for w in fc.program if isa.decode(w).op == "DOT"] == \
            [15, 1]
    pool = next(s for s in c.segments if s.op.kind == "AVERAGE_POOL_2D")
    if first == "strip":  # n = 44: single rounding differs on ties, so the host pools
        assert pool.host is not None and "single rounding differs" in pool.note
    else:
        assert pool.host is None and pool.program
    shape = c.graph.t(c.graph.inputs[0]).shape[1:]
    zp = c.graph.t(c.graph.inputs[0]).zp
    xs = np.concatenate([rng.integers(-128, 128, (4, *shape)),
                         np.full((1, *shape), zp), np.full((1, *shape), 127)]).astype(np.int8)
    check_every_tensor(c, path, xs)


def test_whole_program_equals_the_segments(kws):
    """The program as the core runs it (every segment, one HALT) gives the same logits as
    the segments run one by one."""
    from sparq.golden.sequencer import new_machine, run

    x = kws_inputs(0, SEED)[0]
    out, cycles = kws.run(x)
    m = run(new_machine(kws.cfg, kws.params, kws.x_image(x)), kws.program)
    fc = next(op for op in kws.graph.ops if op.kind == "FULLY_CONNECTED").outputs[0]
    assert np.array_equal(kws.tensor(m.x, fc).reshape(-1), out[fc].reshape(-1))
    assert m.cycles == cycles


def test_a_host_op_between_core_ops_splits_the_program(tmp_path):
    """The strip chain pools on the host (its n = 44 is even) between core ops: the program
    comes in two parts; run one after the other with the host's pool written between them,
    they give the segments' result, and the core model's cycles add up over both."""
    from sparq.golden import ops
    from sparq.golden.sequencer import new_machine, run

    rng = np.random.default_rng(SEED + 31)
    path = tmp_path / "chain.tflite"
    path.write_bytes(conv_chain(rng, first="strip"))
    c = compile_graph(path, CHAIN_MACHINE)
    with pytest.raises(ValueError, match=r"the host runs ops \[3\] between core ops"):
        _ = c.program
    first, second = c.programs
    x = rng.integers(-128, 128, c.graph.t(c.graph.inputs[0]).shape[1:]).astype(np.int8)
    want, _ = c.run(x)
    m = run(new_machine(c.cfg, c.params, c.x_image(x)), first)
    pool = next(s.op for s in c.segments if s.op.kind == "AVERAGE_POOL_2D")
    from sparq.golden.tflite_graph import op_kwargs
    y = ops.average_pool_2d(c.tensor(m.x, pool.inputs[0]), **op_kwargs(c.graph, pool))
    xm = m.x.copy()
    xm[c.buffers[pool.outputs[0]]:][:y.size] = y.reshape(-1)
    m2 = run(new_machine(c.cfg, c.params, xm), second)
    fc = next(s.op for s in c.segments if s.op.kind == "FULLY_CONNECTED").outputs[0]
    assert np.array_equal(c.tensor(m2.x, fc), want[fc])
    rows = layer_figures(c, x, slots=4, short_requant=True, hazard_words=4)
    assert sum(r["cycles"] for r in rows) == c.cycles(x, slots=4, short_requant=True,
                                                      hazard_words=4)
    assert "AVERAGE_POOL_2D" not in [r["kind"] for r in rows]


def test_engine_stream_is_what_the_dots_feed(tmp_path):
    """``engine_stream`` over a program in two parts (a host op between): its pairs and
    effectual pairs are ``layer_figures``' (every part's DOTs, padding taps not fed), its
    DOTs end at the beats flagged ``last``, and today's engine's cycles on it are the sum
    of every DOT's beat costs."""
    from sparq.golden.core import dot_beat_cycles
    from sparq.golden.graph_compiler import engine_stream
    from sparq.golden.sequencer import new_machine, run

    rng = np.random.default_rng(SEED + 33)
    path = tmp_path / "chain.tflite"
    path.write_bytes(conv_chain(rng, first="strip"))
    c = compile_graph(path, CHAIN_MACHINE)
    x = rng.integers(-128, 128, c.graph.t(c.graph.inputs[0]).shape[1:]).astype(np.int8)
    lanes = CHAIN_MACHINE.lanes
    nz, last = engine_stream(c, x, lanes=lanes)
    rows = layer_figures(c, x, slots=4, short_requant=True, hazard_words=4)
    assert nz.shape[1] == lanes and last[-1] and len(c.programs) == 2
    assert int(nz.sum()) == sum(r["effectual"] for r in rows)
    assert nz.size == sum(r["pairs"] for r in rows)
    costs, runs = [], []

    def cost(xd, w):  # (one DOT: its beats' cycles on today's engine)
        costs.append(int(dot_beat_cycles(xd, w, lanes=lanes, slots=4).sum()))
        return 1
    c.run(x, runs=runs)
    for prog, (x0, _) in zip(c.programs, runs, strict=True):
        m = new_machine(c.cfg, c.params, x0)
        m.dot_cost = cost
        run(m, prog)
    assert len(costs) == int(last.sum())
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    per_beat = np.maximum(1, -(-nz.sum(1) // 4))
    assert costs == [int(per_beat[a:b + 1].sum()) for a, b in zip(starts, ends, strict=True)]


@pytest.mark.parametrize("kw, match", [
    (dict(kh=3, kw=3, oc=16, stride=(1, 1), padding="SAME", depthwise=False, act=0,
          dilation=2), r"op 0 \(CONV_2D\): dilation \(2, 2\) is not supported"),
    (dict(kh=3, kw=3, oc=32, stride=(1, 1), padding="SAME", depthwise=True, act=0,
          depth_multiplier=2), "depth multiplier 2 is not supported"),
    (dict(kh=5, kw=5, oc=16, stride=(1, 1), padding="SAME", depthwise=True, act=0),
     r"op 0 \(DEPTHWISE_CONV_2D\) does not fit the instruction set: DOT beats=25"),
])
def test_ops_the_core_cannot_run_are_named(kw, match, tmp_path):
    path = tmp_path / "one.tflite"
    path.write_bytes(one_conv(np.random.default_rng(SEED), (1, 6, 6, 16), **kw))
    with pytest.raises(ValueError, match=match):
        compile_graph(path, CHAIN_MACHINE)


@pytest.mark.parametrize("change, match", [
    (dict(x_depth=8192), r"does not fit: at op 0 it needs 9\d\d\d bytes of activation memory"),
    (dict(w_depth=16384), "needs 25616 weight bytes, the machine has 16384"),
    (dict(channels=512), "needs 652 channels, the machine has 512"),
    (dict(prog_depth=128), r"needs \d+ program words, the machine has 128"),
    (dict(conv=False), "needs a convolution machine"),
])
def test_what_does_not_fit_is_named(change, match):
    cfg = MachineConfig(**dict(vars(KWS_MACHINE), **change))
    with pytest.raises(ValueError, match=match):
        compile_graph(KWS, cfg)


def test_core_model_figures_per_layer(tmp_path):
    """``layer_figures`` on a small chain: the layers' cycles add up to the core model's
    prediction for the whole program; skipping never costs more than the dense baseline;
    the ideal is a lower bound; the pairs split into effectual and skipped."""
    from sparq.golden.core import predict_program_cycles

    rng = np.random.default_rng(SEED + 32)
    path = tmp_path / "chain.tflite"
    path.write_bytes(conv_chain(rng, first="window"))
    c = compile_graph(path, CHAIN_MACHINE)
    x = rng.integers(-128, 128, c.graph.t(c.graph.inputs[0]).shape[1:]).astype(np.int8)
    core = dict(slots=4, short_requant=True, hazard_words=4)
    rows = layer_figures(c, x, **core)
    total, _ = predict_program_cycles(c.cfg, c.params, c.program, c.x_image(x), **core)
    assert sum(r["cycles"] for r in rows) == total
    assert [r["kind"] for r in rows] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D",
                                         "AVERAGE_POOL_2D", "FULLY_CONNECTED"]
    for r in rows:
        assert r["ideal"] <= r["cycles"] <= r["dense"], r
        assert r["effectual"] + r["skipped"] == r["pairs"] and r["effectual"] > 0


def test_a_graph_that_starts_on_the_host(tmp_path):
    """RESHAPE of the input, then FULLY_CONNECTED: the first op runs on the host (nothing:
    an alias), the FC on the core, equal to LiteRT."""
    from sparq.golden.litert_model import _schema
    from tests.tflite_builder import ModelBuilder

    s, m = _schema(), ModelBuilder()
    rng = np.random.default_rng(SEED + 33)
    ti = m.tensor((1, 4, 4, 2), "INT8", scale=np.float32(0.05), zero_point=-5)
    tr = m.tensor((1, 32), "INT8", scale=np.float32(0.05), zero_point=-5)
    o = s.ReshapeOptionsT()
    o.newShape = [1, 32]
    m.op("RESHAPE", 1, [ti, m.tensor((2,), "INT32", data=np.array([1, 32], np.int32))], [tr],
         "ReshapeOptions", o)
    tw = m.tensor((10, 32), "INT8", scale=np.float32(0.01), zero_point=0,
                  data=rng.integers(-127, 128, (10, 32)).astype(np.int8))
    tb = m.tensor((10,), "INT32", scale=np.float32(0.0005), zero_point=0,
                  data=rng.integers(-300, 300, 10).astype(np.int32))
    tf = m.tensor((1, 10), "INT8", scale=np.float32(0.1), zero_point=2)
    o = s.FullyConnectedOptionsT()
    m.op("FULLY_CONNECTED", 4, [tr, tw, tb], [tf], "FullyConnectedOptions", o)
    path = tmp_path / "reshape_fc.tflite"
    path.write_bytes(m.finish([ti], [tf]))
    c = compile_graph(path, CHAIN_MACHINE)
    xs = rng.integers(-128, 128, (3, 4, 4, 2)).astype(np.int8)
    check_every_tensor(c, path, xs)
