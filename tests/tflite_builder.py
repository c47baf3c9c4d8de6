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
