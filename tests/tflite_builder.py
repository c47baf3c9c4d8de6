"""Int8 .tflite models written with the schema's object API, for the tests: ``ModelBuilder``
(one subgraph, any ops) and ``fc_chain``, a fully-connected ReLU MLP with a given input
quantization (an input that is not a [0, 1] image: its zero point is not -128)."""

import flatbuffers
import numpy as np

from sparq.golden.litert_model import _schema


class ModelBuilder:
    """A one-subgraph .tflite written with the schema's object API."""

    def __init__(self):
        self.s = _schema()
        self.model = self.s.ModelT()
        self.model.version = 3
        self.model.buffers = [self.s.BufferT()]  # buffer 0: the empty buffer
        self.model.operatorCodes = []
        self.graph = self.s.SubGraphT()
        self.graph.tensors, self.graph.operators = [], []

    def tensor(self, shape, kind, *, scale=None, zero_point=None, data=None, qdim=0):
        s = self.s
        t = s.TensorT()
        t.shape = list(shape)
        t.type = getattr(s.TensorType, kind)
        t.name = f"t{len(self.graph.tensors)}"
        if data is not None:
            b = s.BufferT()
            b.data = np.ascontiguousarray(data, {"INT8": "i1", "INT32": "<i4"}[kind]).view(
                np.uint8).ravel()
            self.model.buffers.append(b)
            t.buffer = len(self.model.buffers) - 1
        else:
            self.model.buffers.append(s.BufferT())
            t.buffer = len(self.model.buffers) - 1
        if scale is not None:
            q = s.QuantizationParametersT()
            q.scale = [float(v) for v in np.atleast_1d(scale)]
            q.zeroPoint = [int(v) for v in np.atleast_1d(zero_point)]
            q.quantizedDimension = qdim
            t.quantization = q
        self.graph.tensors.append(t)
        return len(self.graph.tensors) - 1

    def op(self, name, version, inputs, outputs, options_name=None, options=None):
        s = self.s
        code = getattr(s.BuiltinOperator, name)
        c = s.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), version
        self.model.operatorCodes.append(c)
        o = s.OperatorT()
        o.opcodeIndex = len(self.model.operatorCodes) - 1
        o.inputs, o.outputs = list(inputs), list(outputs)
        if options_name:
            o.builtinOptionsType = getattr(s.BuiltinOptions, options_name)
            o.builtinOptions = options
        self.graph.operators.append(o)

    def finish(self, inputs, outputs):
        self.graph.inputs, self.graph.outputs = list(inputs), list(outputs)
        self.model.subgraphs = [self.graph]
        b = flatbuffers.Builder(1024)
        b.Finish(self.model.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def fc_chain(rng, widths, *, input_scale, input_zero_point):
    """A FULLY_CONNECTED chain ``widths[0] -> widths[1] -> ...`` (ReLU on every layer but
    the last), int8 with random weights and biases and per-tensor scales chosen so that
    the outputs use most of their range; returns the .tflite bytes."""
    s = _schema()
    m = ModelBuilder()
    s_in, zp_in = np.float32(input_scale), int(input_zero_point)
    t_in = first = m.tensor((1, widths[0]), "INT8", scale=s_in, zero_point=zp_in)
    for k, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        last = k == len(widths) - 2
        w = rng.integers(-127, 128, (n_out, n_in)).astype(np.int8)
        w[rng.random(w.shape) < 0.3] = 0
        s_w = np.float32(rng.uniform(0.002, 0.02))
        s_acc = float(s_in) * float(s_w)
        bias = np.round(rng.normal(0, 40 * np.sqrt(n_in), n_out)).astype(np.int32)
        s_out = np.float32(s_acc * np.sqrt(n_in) * (40 if last else 20))
        zp_out = int(rng.integers(-20, 20)) if last else -128
        tw = m.tensor((n_out, n_in), "INT8", scale=s_w, zero_point=0, data=w)
        tb = m.tensor((n_out,), "INT32", scale=np.float32(s_acc), zero_point=0, data=bias)
        to = m.tensor((1, n_out), "INT8", scale=s_out, zero_point=zp_out)
        o = s.FullyConnectedOptionsT()
        o.fusedActivationFunction = 0 if last else 1  # NONE, RELU
        m.op("FULLY_CONNECTED", 4, [t_in, tw, tb], [to], "FullyConnectedOptions", o)
        t_in, s_in = to, s_out
    return m.finish([first], [t_in])


def conv_op(m, rng, t_in, s_in, shape_in, *, kh, kw, oc, stride, padding, depthwise, act,
            dilation=1, depth_multiplier=1):
    """A CONV_2D or DEPTHWISE_CONV_2D on ``t_in`` with random int8 weights and per-channel
    scales, an output scale that keeps the outputs in range and a random zero point.
    Returns ``(tensor, scale, shape)`` of its output."""
    from sparq.golden import ops

    s = _schema()
    _, h, w, c = shape_in
    oh = ops.out_size(padding, h, kh, stride[0], dilation)
    ow = ops.out_size(padding, w, kw, stride[1], dilation)
    wshape = (1, kh, kw, oc) if depthwise else (oc, kh, kw, c)
    s_w = np.exp(rng.uniform(np.log(0.002), np.log(0.02), oc)).astype(np.float32)
    taps = kh * kw * (1 if depthwise else c)
    s_out = np.float32(s_in * float(np.mean(s_w)) * np.sqrt(taps) * 40)
    tw = m.tensor(wshape, "INT8", scale=s_w, zero_point=np.zeros(oc, int),
                  data=rng.integers(-127, 128, wshape).astype(np.int8),
                  qdim=3 if depthwise else 0)
    tb = m.tensor((oc,), "INT32", scale=s_in * s_w, zero_point=np.zeros(oc, int),
                  data=np.round(rng.normal(0, 500, oc)).astype(np.int32))
    to = m.tensor((1, oh, ow, oc), "INT8", scale=s_out,
                  zero_point=-128 if act else int(rng.integers(-30, 30)))
    if depthwise:
        o = s.DepthwiseConv2DOptionsT()
        o.depthMultiplier = depth_multiplier
        name, oname = "DEPTHWISE_CONV_2D", "DepthwiseConv2DOptions"
    else:
        o = s.Conv2DOptionsT()
        name, oname = "CONV_2D", "Conv2DOptions"
    o.padding, o.strideH, o.strideW = getattr(s.Padding, padding), stride[0], stride[1]
    o.fusedActivationFunction = act
    o.dilationHFactor = o.dilationWFactor = dilation
    m.op(name, 3, [t_in, tw, tb], [to], oname, o)
    return to, s_out, (1, oh, ow, oc)


def one_conv(rng, shape, **kw):
    """A model of one CONV_2D or DEPTHWISE_CONV_2D (``conv_op``'s keywords) on an input of
    ``shape``; returns the .tflite bytes."""
    m = ModelBuilder()
    t = m.tensor(shape, "INT8", scale=np.float32(0.05), zero_point=3)
    out, _, _ = conv_op(m, rng, t, np.float32(0.05), shape, **kw)
    return m.finish([t], [out])


def conv_chain(rng, *, first):
    """A small keyword-spotter-like chain: ``first`` is ``"strip"`` (a one-channel input and
    a 5x3 CONV_2D of stride (1, 2), the column-strip lowering) or ``"window"`` (16 channels
    and a 3x3 CONV_2D of stride 2, the window lowering); then DEPTHWISE_CONV_2D 3x3, CONV_2D
    1x1 (16 -> 32), AVERAGE_POOL_2D over the whole map, RESHAPE, FULLY_CONNECTED (32 -> 10)
    and SOFTMAX. Returns the .tflite bytes."""
    s = _schema()
    m = ModelBuilder()
    s_in = np.float32(0.05)
    # (the pool's n: 11 x 4 = 44, even: on the host; 5 x 5 = 25: on the core)
    shape = (1, 11, 7, 1) if first == "strip" else (1, 9, 9, 16)
    t = first_t = m.tensor(shape, "INT8", scale=s_in, zero_point=int(rng.integers(-20, 20)))
    kh, kw, stride = (5, 3, (1, 2)) if first == "strip" else (3, 3, (2, 2))
    t, s_in, shape = conv_op(m, rng, t, s_in, shape, kh=kh, kw=kw, oc=16, stride=stride,
                              padding="SAME", depthwise=False, act=1)
    t, s_in, shape = conv_op(m, rng, t, s_in, shape, kh=3, kw=3, oc=16, stride=(1, 1),
                              padding="SAME", depthwise=True, act=3)
    t, s_in, shape = conv_op(m, rng, t, s_in, shape, kh=1, kw=1, oc=32, stride=(1, 1),
                              padding="VALID", depthwise=False, act=1)
    zp = m.graph.tensors[t].quantization.zeroPoint[0]
    tp = m.tensor((1, 1, 1, 32), "INT8", scale=s_in, zero_point=zp)
    o = s.Pool2DOptionsT()
    o.padding, o.strideH, o.strideW = s.Padding.VALID, 1, 1
    o.filterHeight, o.filterWidth, o.fusedActivationFunction = shape[1], shape[2], 0
    m.op("AVERAGE_POOL_2D", 2, [t], [tp], "Pool2DOptions", o)
    tr = m.tensor((1, 32), "INT8", scale=s_in, zero_point=zp)
    tshape = m.tensor((2,), "INT32", data=np.array([1, 32], np.int32))
    o = s.ReshapeOptionsT()
    o.newShape = [1, 32]
    m.op("RESHAPE", 1, [tp, tshape], [tr], "ReshapeOptions", o)
    s_w = np.float32(0.01)
    tw = m.tensor((10, 32), "INT8", scale=s_w, zero_point=0,
                  data=rng.integers(-127, 128, (10, 32)).astype(np.int8))
    tb = m.tensor((10,), "INT32", scale=np.float32(s_in * s_w), zero_point=0,
                  data=np.round(rng.normal(0, 300, 10)).astype(np.int32))
    s_fc = np.float32(s_in * s_w * np.sqrt(32) * 40)
    tf = m.tensor((1, 10), "INT8", scale=s_fc, zero_point=int(rng.integers(-10, 10)))
    o = s.FullyConnectedOptionsT()
    o.fusedActivationFunction = 0
    m.op("FULLY_CONNECTED", 4, [tr, tw, tb], [tf], "FullyConnectedOptions", o)
    ts = m.tensor((1, 10), "INT8", scale=np.float32(1 / 256), zero_point=-128)
    o = s.SoftmaxOptionsT()
    o.beta = 1.0
    m.op("SOFTMAX", 1, [tf], [ts], "SoftmaxOptions", o)
    return m.finish([first_t], [ts])
