"""golden.ops / golden.tflite_graph against LiteRT's reference kernels (BUILTIN_REF), bit for bit.

1. The MLPerf Tiny models in tests/fixtures/mlperf_tiny/: every activation tensor of the golden
   graph run equals LiteRT's, on the real inputs, structured ones (all zero point, saturated,
   alternating extremes) and random int8 ones.
2. Property tests: random single-op models (random shapes, kernels, strides, paddings,
   activations, scales and zero points), written as .tflite flatbuffers with the schema's
   object API, run through LiteRT and the golden ops, every output compared.
3. The oracle tells roundings apart: single rounding in place of CONV_2D's double rounding
   disagrees with LiteRT on the keyword spotter; a 31-bit multiplier in place of
   FULLY_CONNECTED's double-precision product disagrees on exact halves.
Seeds are fixed and printed (SPARQ_SEED overrides).
"""

import math
import pathlib

import numpy as np
import pytest

from sparq.golden import ops
from sparq.golden.litert_model import _schema
from sparq.golden.requant import requantize
from sparq.golden.tflite_graph import op_kwargs, read_graph, run_golden, run_litert
from tests.conftest import SEED
from tests.tflite_builder import ModelBuilder

FIX = pathlib.Path(__file__).parent / "fixtures" / "mlperf_tiny"
KWS, RESNET, AD = (FIX / n for n in ("kws_ref_model.tflite", "pretrainedResnet_quant.tflite",
                                     "ad01_int8.tflite"))
CASES_PER_OP = 60


def assert_all_tensors_equal(graph, gold, ref, label):
    checked = 0
    for op in graph.ops:
        i = op.outputs[0]
        g, r = gold[i], ref[i].reshape(gold[i].shape)
        bad = np.argwhere(g != r)
        assert bad.size == 0, (f"{label}: op {op.index} {op.kind} (tensor {i}) differs from "
                               f"LiteRT at {len(bad)} of {g.size} values; first at "
                               f"{tuple(bad[0])}: golden {g[tuple(bad[0])]}, LiteRT "
                               f"{r[tuple(bad[0])]}")
        checked += g.size
    return checked


def structured_inputs(shape, zero_point):
    """All zero point, all -128, all 127, alternating -128/127 (a checkerboard)."""
    alt = np.where(np.indices(shape).sum(0) % 2 == 0, -128, 127)
    return np.stack([np.full(shape, zero_point), np.full(shape, -128), np.full(shape, 127),
                     alt]).astype(np.int8)


def model_inputs(path, n_random, seed):
    g = read_graph(path)
    t = g.t(g.inputs[0])
    rng = np.random.default_rng(seed)
    rnd = rng.integers(-128, 128, (n_random, *t.shape[1:])).astype(np.int8)
    return g, np.concatenate([structured_inputs(t.shape[1:], t.zp), rnd])


def test_kws_real_input_is_class_5():
    x = np.load(FIX / "kws_input.npy")
    g = read_graph(KWS)
    ref = run_litert(KWS, x)[g.outputs[0]]
    gold = run_golden(g, x)[g.outputs[0]]
    assert ref.tolist() == [[-128] * 5 + [127] + [-128] * 6]
    assert np.array_equal(gold, ref)


def test_kws_every_tensor_bitexact():
    """The real input, 4 structured and 17 random inputs: 22."""
    print(f"seed {SEED}")
    g, x = model_inputs(KWS, 17, SEED)
    x = np.concatenate([np.load(FIX / "kws_input.npy"), x])
    assert len(x) >= 20
    n = assert_all_tensors_equal(g, run_golden(g, x), run_litert(KWS, x), "kws")
    print(f"kws: {len(x)} inputs, {len(g.ops)} ops, {n} values equal")


def test_resnet8_every_tensor_bitexact():
    """4 structured and 18 random inputs: 22 (the golden run takes about 0.3 s)."""
    print(f"seed {SEED}")
    g, x = model_inputs(RESNET, 18, SEED + 1)
    assert len(x) >= 20
    n = assert_all_tensors_equal(g, run_golden(g, x), run_litert(RESNET, x), "resnet8")
    print(f"resnet8: {len(x)} inputs, {len(g.ops)} ops, {n} values equal")


def test_ad_autoencoder_real_frames_bitexact():
    """The 40 real log-mel frames (quantized with the input's scale and zero point) and 4
    structured inputs."""
    g = read_graph(AD)
    t = g.t(g.inputs[0])
    frames = np.load(FIX / "ad01_inputs_float32.npy")
    q = np.clip(np.round(frames / t.s) + t.zp, -128, 127).astype(np.int8)
    x = np.concatenate([q, structured_inputs(t.shape[1:], t.zp)])
    n = assert_all_tensors_equal(g, run_golden(g, x), run_litert(AD, x), "ad01")
    print(f"ad01: {len(x)} inputs, {len(g.ops)} ops, {n} values equal")


# ---------------------------------------------------------------------------------------------
# Random single-op models (tests.tflite_builder.ModelBuilder).

def _log_uniform(rng, lo, hi, size=None):
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size)).astype(np.float32)


def _act(rng):
    return int(rng.choice([ops.ACT_NONE, ops.ACT_RELU, ops.ACT_RELU6]))


def _window_case(rng, max_hw=12):
    """Input size, kernel, stride, padding that give at least one output."""
    padding = str(rng.choice(ops.PADDINGS))
    h, w = (int(v) for v in rng.integers(1, max_hw + 1, 2))
    kh, kw = int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1))
    if padding == "SAME":
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    return h, w, kh, kw, sh, sw, padding


def _conv_like(rng, depthwise):
    s = _schema()
    h, w, kh, kw, sh, sw, padding = _window_case(rng)
    c = int(rng.integers(1, 9))
    dm = int(rng.choice([1, 1, 1, 2])) if depthwise else 1
    oc = c * dm if depthwise else int(rng.integers(1, 9))
    per_channel = rng.random() < 0.8
    s_in = _log_uniform(rng, 0.005, 0.5)
    s_w = _log_uniform(rng, 0.001, 0.05, oc if per_channel else 1)
    taps = kh * kw * (1 if depthwise else c)
    s_out = np.float32(s_in * float(np.mean(s_w)) * math.sqrt(taps) * 60
                       * 2.0 ** rng.uniform(-3, 3))
    zp_in, zp_out = (int(v) for v in rng.integers(-128, 128, 2))
    wshape = (1, kh, kw, oc) if depthwise else (oc, kh, kw, c)
    wq = rng.integers(-127, 128, wshape).astype(np.int8)
    bias = np.round(rng.normal(0, 2000, oc) * rng.choice([0, 1, 10])).astype(np.int32)
    dil = int(rng.choice([1, 1, 1, 2]))
    if padding == "VALID" and ((kh - 1) * dil >= h or (kw - 1) * dil >= w):
        dil = 1
    oh = ops.out_size(padding, h, kh, sh, dil)
    ow = ops.out_size(padding, w, kw, sw, dil)
    m = ModelBuilder()
    ti = m.tensor((1, h, w, c), "INT8", scale=s_in, zero_point=zp_in)
    tw = m.tensor(wshape, "INT8", scale=s_w, zero_point=np.zeros(s_w.size, int), data=wq,
                  qdim=3 if depthwise else 0)
    tb = m.tensor((oc,), "INT32", scale=s_in * s_w, zero_point=np.zeros(s_w.size, int),
                  data=bias)
    to = m.tensor((1, oh, ow, oc), "INT8", scale=s_out, zero_point=zp_out)
    pad = getattr(s.Padding, padding)
    act = _act(rng)
    if depthwise:
        o = s.DepthwiseConv2DOptionsT()
        o.depthMultiplier = dm
        name, version, oname = "DEPTHWISE_CONV_2D", 3, "DepthwiseConv2DOptions"
    else:
        o = s.Conv2DOptionsT()
        name, version, oname = "CONV_2D", 3, "Conv2DOptions"
    o.padding, o.strideH, o.strideW, o.fusedActivationFunction = pad, sh, sw, act
    o.dilationHFactor = o.dilationWFactor = dil
    m.op(name, version, [ti, tw, tb], [to], oname, o)
    desc = (f"{name} in 1x{h}x{w}x{c} k{kh}x{kw} s{sh}x{sw} d{dil} {padding} oc {oc} dm {dm} act "
            f"{act} per_channel {per_channel} s_in {s_in} zp {zp_in}->{zp_out}")
    return m.finish([ti], [to]), desc


def case_conv_2d(rng):
    return _conv_like(rng, depthwise=False)


def case_depthwise_conv_2d(rng):
    return _conv_like(rng, depthwise=True)


def case_average_pool_2d(rng):
    s = _schema()
    h, w, kh, kw, sh, sw, padding = _window_case(rng)
    c = int(rng.integers(1, 9))
    scale, zp = _log_uniform(rng, 0.005, 0.5), int(rng.integers(-128, 128))
    act = _act(rng)
    m = ModelBuilder()
    ti = m.tensor((1, h, w, c), "INT8", scale=scale, zero_point=zp)
    to = m.tensor((1, ops.out_size(padding, h, kh, sh), ops.out_size(padding, w, kw, sw), c),
                  "INT8", scale=scale, zero_point=zp)
    o = s.Pool2DOptionsT()
    o.padding, o.strideH, o.strideW = getattr(s.Padding, padding), sh, sw
    o.filterHeight, o.filterWidth, o.fusedActivationFunction = kh, kw, act
    m.op("AVERAGE_POOL_2D", 2, [ti], [to], "Pool2DOptions", o)
    return m.finish([ti], [to]), (f"AVERAGE_POOL_2D 1x{h}x{w}x{c} f{kh}x{kw} s{sh}x{sw} "
                                  f"{padding} act {act} zp {zp}")


def case_add(rng):
    """x + c: the second input a constant of the same or a broadcast shape."""
    s = _schema()
    h, w, c = (int(v) for v in rng.integers(1, 9, 3))
    shape2 = [(1, h, w, c), (1, 1, 1, c), (1, h, w, 1), (c,)][int(rng.integers(0, 4))]
    s1, s2 = _log_uniform(rng, 0.005, 0.5, 2)
    so = np.float32(max(s1, s2) * 2.0 ** rng.uniform(-1, 2))
    zp1, zp2, zpo = (int(v) for v in rng.integers(-128, 128, 3))
    act = _act(rng)
    m = ModelBuilder()
    ti = m.tensor((1, h, w, c), "INT8", scale=s1, zero_point=zp1)
    tc = m.tensor(shape2, "INT8", scale=s2, zero_point=zp2,
                  data=rng.integers(-128, 128, shape2).astype(np.int8))
    to = m.tensor((1, h, w, c), "INT8", scale=so, zero_point=zpo)
    o = s.AddOptionsT()
    o.fusedActivationFunction = act
    m.op("ADD", 2, [ti, tc], [to], "AddOptions", o)
    return m.finish([ti], [to]), (f"ADD 1x{h}x{w}x{c} + {shape2} scales {s1} {s2} -> {so} "
                                  f"zp {zp1} {zp2} -> {zpo} act {act}")


def case_fully_connected(rng):
    s = _schema()
    n_in, n_out = int(rng.integers(1, 65)), int(rng.integers(1, 17))
    per_channel = rng.random() < 0.3
    s_in = _log_uniform(rng, 0.005, 0.5)
    s_w = _log_uniform(rng, 0.001, 0.05, n_out if per_channel else 1)
    s_out = np.float32(s_in * float(np.mean(s_w)) * math.sqrt(n_in) * 60
                       * 2.0 ** rng.uniform(-3, 3))
    zp_in, zp_out = (int(v) for v in rng.integers(-128, 128, 2))
    act = _act(rng)
    m = ModelBuilder()
    ti = m.tensor((1, n_in), "INT8", scale=s_in, zero_point=zp_in)
    tw = m.tensor((n_out, n_in), "INT8", scale=s_w, zero_point=np.zeros(s_w.size, int),
                  data=rng.integers(-127, 128, (n_out, n_in)).astype(np.int8))
    tb = m.tensor((n_out,), "INT32", scale=s_in * s_w, zero_point=np.zeros(s_w.size, int),
                  data=np.round(rng.normal(0, 3000, n_out)).astype(np.int32))
    to = m.tensor((1, n_out), "INT8", scale=s_out, zero_point=zp_out)
    o = s.FullyConnectedOptionsT()
    o.fusedActivationFunction = act
    m.op("FULLY_CONNECTED", 4, [ti, tw, tb], [to],
         "FullyConnectedOptions", o)
    return m.finish([ti], [to]), (f"FULLY_CONNECTED {n_in}->{n_out} per_channel {per_channel} "
                                  f"act {act} s_in {s_in} zp {zp_in}->{zp_out}")


def case_softmax(rng):
    s = _schema()
    shape = [(1, int(rng.integers(1, 41))), (1, 2, 3, int(rng.integers(1, 13)))][
        int(rng.integers(0, 2))]
    s_in = _log_uniform(rng, 0.01, 1.0)
    beta = float(rng.choice([1.0, 1.0, float(_log_uniform(rng, 0.25, 4.0))]))
    zp = int(rng.integers(-128, 128))
    m = ModelBuilder()
    ti = m.tensor(shape, "INT8", scale=s_in, zero_point=zp)
    to = m.tensor(shape, "INT8", scale=1 / 256, zero_point=-128)
    o = s.SoftmaxOptionsT()
    o.beta = beta
    m.op("SOFTMAX", 2, [ti], [to], "SoftmaxOptions", o)
    return m.finish([ti], [to]), f"SOFTMAX {shape} s_in {s_in} beta {beta}"


def case_reshape(rng):
    s = _schema()
    h, w, c = (int(v) for v in rng.integers(1, 9, 3))
    scale, zp = _log_uniform(rng, 0.005, 0.5), int(rng.integers(-128, 128))
    new = [(1, h * w * c), (1, h * w, c), (1, c, w, h)][int(rng.integers(0, 3))]
    m = ModelBuilder()
    ti = m.tensor((1, h, w, c), "INT8", scale=scale, zero_point=zp)
    ts = m.tensor((len(new),), "INT32", data=np.array(new, np.int32))
    to = m.tensor(new, "INT8", scale=scale, zero_point=zp)
    o = s.ReshapeOptionsT()
    o.newShape = list(new)
    m.op("RESHAPE", 1, [ti, ts], [to], "ReshapeOptions", o)
    return m.finish([ti], [to]), f"RESHAPE 1x{h}x{w}x{c} -> {new}"


CASES = {"CONV_2D": case_conv_2d, "DEPTHWISE_CONV_2D": case_depthwise_conv_2d,
         "AVERAGE_POOL_2D": case_average_pool_2d, "ADD": case_add,
         "FULLY_CONNECTED": case_fully_connected, "SOFTMAX": case_softmax,
         "RESHAPE": case_reshape}


def case_inputs(rng, shape, zero_point, n=4):
    """A zero-point input, then mostly uniform int8, one in four saturated to +-127/128."""
    x = rng.integers(-128, 128, (n, *shape[1:]))
    x[0] = zero_point
    sat = rng.random(x.shape) < 0.25
    x[1:] = np.where(sat[1:], np.where(rng.random(x.shape) < 0.5, -128, 127)[1:], x[1:])
    return x.astype(np.int8)


def random_cases(kind, n=CASES_PER_OP, seed=SEED):
    rng = np.random.default_rng([seed, sorted(CASES).index(kind)])
    for k in range(n):
        model, desc = CASES[kind](rng)
        g = read_graph(model)
        t = g.t(g.inputs[0])
        yield k, model, desc, g, case_inputs(rng, t.shape, t.zp)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_random_single_op_models_bitexact(kind):
    print(f"seed {SEED}, {CASES_PER_OP} random {kind} models, 4 inputs each")
    values = 0
    for k, model, desc, g, x in random_cases(kind):
        assert g.ops[0].kind == kind
        values += assert_all_tensors_equal(g, run_golden(g, x), run_litert(model, x),
                                           f"seed {SEED} case {k}: {desc}")
    print(f"{kind}: {values} values equal")


def test_single_rounding_in_conv_is_caught():
    """The oracle can tell the roundings apart: the keyword spotter's CONV_2D layers
    requantized with single rounding (golden.requant mode "single"), each fed LiteRT's own
    input, differ from LiteRT on some outputs, while double rounding (mode "tflite", what
    golden.ops.conv_2d uses) never does."""
    g, x = model_inputs(KWS, 17, SEED)
    ref = run_litert(KWS, x)
    differ = {"single": 0, "tflite": 0}
    for op in g.ops:
        if op.kind != "CONV_2D":
            continue
        kw = op_kwargs(g, op)
        acc = ops.conv_2d_accumulators(ref[op.inputs[0]], kw["w"], kw["bias"],
                                       stride=kw["stride"], padding=kw["padding"],
                                       dilation=kw["dilation"],
                                       input_zero_point=kw["input_zero_point"])
        for mode in differ:
            y = requantize(acc, multiplier=kw["output_multiplier"], shift=kw["output_shift"],
                           output_zero_point=kw["output_zero_point"], act_min=kw["act_min"],
                           act_max=kw["act_max"], mode=mode)
            differ[mode] += int((y != ref[op.outputs[0]]).sum())
    print(f"CONV_2D outputs that differ from LiteRT: {differ}")
    assert differ["single"] > 0 and differ["tflite"] == 0


def test_fully_connected_exact_halves_round_away_from_zero():
    """Scales with an effective scale of exactly 1/2: the reference FULLY_CONNECTED rounds
    (double)acc * 0.5 half away from zero; golden.ops.fully_connected does too, while a
    31-bit multiplier (golden.requant, "single" or "tflite") rounds -x.5 up."""
    s = _schema()
    rng = np.random.default_rng(SEED)
    m = ModelBuilder()
    ti = m.tensor((1, 8), "INT8", scale=0.5, zero_point=0)
    w = rng.integers(-127, 128, (6, 8)).astype(np.int8)
    tw = m.tensor((6, 8), "INT8", scale=0.125, zero_point=0, data=w)
    tb = m.tensor((6,), "INT32", scale=0.0625, zero_point=0, data=np.zeros(6, np.int32))
    to = m.tensor((1, 6), "INT8", scale=0.125, zero_point=0)
    m.op("FULLY_CONNECTED", 4, [ti, tw, tb], [to], "FullyConnectedOptions",
         s.FullyConnectedOptionsT())
    model = m.finish([ti], [to])
    g = read_graph(model)
    x = rng.integers(-3, 4, (64, 8)).astype(np.int8)
    ref = run_litert(model, x)[to]
    assert np.array_equal(run_golden(g, x)[to], ref)
    acc = (x.astype(np.int64) @ w.T.astype(np.int64))
    for mode in ("single", "tflite"):
        other = requantize(acc, multiplier=1 << 30, shift=0, mode=mode)
        assert np.any(other != ref), mode


def test_relu6_bound_rounds_half_away_like_litert():
    """Output scale 12: RELU6's bound 6/12 = 0.5 quantizes to 1 (TfLiteRound), not to 0
    (Python's round, as golden.litert_model._act_range has it)."""
    s = _schema()
    m = ModelBuilder()
    ti = m.tensor((1, 2, 2, 1), "INT8", scale=12.0, zero_point=0)
    to = m.tensor((1, 2, 2, 1), "INT8", scale=12.0, zero_point=0)
    o = s.Pool2DOptionsT()
    o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = s.Padding.VALID, 1, 1, 1, 1
    o.fusedActivationFunction = ops.ACT_RELU6
    m.op("AVERAGE_POOL_2D", 2, [ti], [to], "Pool2DOptions", o)
    model = m.finish([ti], [to])
    x = np.array([[[[-5], [0]], [[1], [100]]]], np.int8)
    ref = run_litert(model, x)[to]
    assert ref.ravel().tolist() == [0, 0, 1, 1]
    assert np.array_equal(run_golden(read_graph(model), x)[to], ref)
    assert ops.act_range(ops.ACT_RELU6, 12.0, 0) == (0, 1)


# ---------------------------------------------------------------------------------------------
# Parameter derivations and range checks.

def test_parameters_of_the_keyword_spotter():
    g = read_graph(KWS)
    kinds = [op.kind for op in g.ops]
    assert kinds == ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * 4 + [
        "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    first = op_kwargs(g, g.ops[0])
    assert first["stride"] == (2, 2) and first["padding"] == "SAME"
    assert first["w"].shape == (64, 10, 4, 1) and first["act_min"] == -128  # RELU, zp -128
    sm = op_kwargs(g, g.ops[-1])
    assert sm == ops.softmax_params(1.0, g.t(g.ops[-1].inputs[0]).s)
    assert sm["input_left_shift"] == 24 and sm["diff_min"] < 0


def test_act_range_uses_float32_and_rounds_half_away():
    # 6 / 0.75 = 8 exactly; a scale of 4 puts 6/4 = 1.5 on a half: TfLiteRound gives 2
    assert ops.act_range(ops.ACT_RELU6, 0.75, -128) == (-128, -120)
    assert ops.act_range(ops.ACT_RELU6, 4.0, 0) == (0, 2)
    assert ops.act_range(ops.ACT_RELU, 0.1, 5) == (5, 127)


def test_rescale_double_rounds_like_cpp():
    for acc, scale in [(3, 0.5), (-3, 0.5), (5, 0.1), (-7, 0.3), (123456, 1 / 3),
                       (-(2**31), 2.0**-40), (2**31 - 1, 0.0078125)]:
        frac, e = math.frexp(scale)
        got = int(ops.rescale_double(np.array([acc]), int(frac * 2**53), e - 53)[0])
        assert got == int(math.copysign(math.floor(abs(acc * scale) + 0.5), acc * scale))


@pytest.mark.parametrize("call, needle", [
    (lambda: ops.conv_2d(np.zeros((1, 2, 2, 1)) + 200, np.zeros((1, 1, 1, 1)), None,
                         input_zero_point=0, output_multiplier=1 << 30, output_shift=0,
                         output_zero_point=0), "x must be in [-128, 127], got 200"),
    (lambda: ops.conv_2d(np.zeros((1, 2, 2, 1)), np.zeros((1, 1, 1, 1)) - 128, None,
                         input_zero_point=0, output_multiplier=1 << 30, output_shift=0,
                         output_zero_point=0), "w must be in [-127, 127], got -128"),
    (lambda: ops.average_pool_2d(np.zeros((1, 2, 2, 1)), filter_size=3, padding="FULL"),
     "padding must be 'SAME' or 'VALID'"),
    (lambda: ops.softmax(np.zeros((1, 4)), input_multiplier=1 << 30, input_left_shift=31,
                         diff_min=-1), "input_left_shift must be in [0, 30], got 31"),
    (lambda: ops.act_range(7, 0.1, 0), "activation must be one of"),
])
def test_bad_values_are_named(call, needle):
    with pytest.raises(ValueError) as e:
        call()
    assert needle in str(e.value)
