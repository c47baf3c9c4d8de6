"""Read int8 dense layers out of a .tflite file, and run LiteRT's reference kernels on it.

A dense layer is a FULLY_CONNECTED op, or a CONV_2D op with a 1x1 kernel applied to a 1x1
image (the same arithmetic; LiteRT's reference CONV_2D kernel is the integer double-rounding
oracle). The reader uses the flatbuffer schema shipped with ``ai-edge-litert``; running the
interpreter needs it too, with ``OpResolverType.BUILTIN_REF`` (the reference kernels).
"""

import pathlib
import struct
from dataclasses import dataclass

import numpy as np

from .qparams import quantize_multiplier

_ACT_NONE, _ACT_RELU, _ACT_RELU_N1_TO_1, _ACT_RELU6 = 0, 1, 2, 3


@dataclass(frozen=True)
class DenseLayer:
    """One int8 dense layer as stored in the model: weights (out, in), per-channel scales."""
    op: str
    w: np.ndarray
    bias: np.ndarray
    input_scale: float
    input_zero_point: int
    weight_scales: np.ndarray
    output_scale: float
    output_zero_point: int
    act_min: int
    act_max: int
    output_tensor: int

    def effective_scales(self):
        """``s_in * s_w[o] / s_out`` in double precision, as LiteRT's per-channel kernels."""
        return (np.float64(self.input_scale) * self.weight_scales.astype(np.float64)
                / np.float64(self.output_scale))

    def requant_params(self):
        """Per-channel ``(output_multiplier, output_shift)`` arrays via QuantizeMultiplier."""
        pairs = [quantize_multiplier(float(s)) for s in self.effective_scales()]
        return (np.array([p[0] for p in pairs], np.int64),
                np.array([p[1] for p in pairs], np.int64))

    def fc_kwargs(self, mode):
        """Keyword arguments for ``golden.layers.fully_connected`` in ``mode``."""
        m, s = self.requant_params()
        return dict(input_zero_point=self.input_zero_point, output_multiplier=m,
                    output_shift=s, output_zero_point=self.output_zero_point,
                    act_min=self.act_min, act_max=self.act_max, mode=mode)


def _schema():
    from ai_edge_litert import schema_py_generated
    return schema_py_generated


def _act_range(code, scale, zp):
    q = lambda v: zp + int(round(v / scale))  # noqa: E731 - TFLite's Quantize of a bound
    lo, hi = {_ACT_NONE: (-128, 127), _ACT_RELU: (max(-128, q(0.0)), 127),
              _ACT_RELU_N1_TO_1: (max(-128, q(-1.0)), min(127, q(1.0))),
              _ACT_RELU6: (max(-128, q(0.0)), min(127, q(6.0)))}[code]
    return lo, hi


def read_dense_layers(path):
    """Return the model's dense layers in execution order, as ``DenseLayer`` records.

    Raises ValueError naming the op if a layer is not int8 dense (or not 1x1 for CONV_2D),
    and naming the fault if the file is not a .tflite flatbuffer or is damaged.
    """
    return parse_tflite(open(path, "rb").read(), _dense_layers)


def parse_tflite(buf, parse):
    """``parse(buf)`` of the .tflite bytes ``buf``, with a ValueError naming the fault if
    they are not a .tflite flatbuffer or are damaged."""
    buf = bytes(buf)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError(f"not a .tflite file (bytes 4-7 are {bytes(buf[4:8])!r}, not the "
                         "flatbuffer identifier b'TFL3')")
    try:
        return parse(buf)
    except (struct.error, IndexError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"a damaged .tflite file ({len(buf)} bytes; {type(e).__name__}: "
                         f"{e})") from None


def _dense_layers(buf):
    s = _schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(buf, 0))
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}

    def tensor(i):
        t = graph.tensors[i]
        data = model.buffers[t.buffer].data
        dtype = {s.TensorType.INT8: np.int8, s.TensorType.INT32: np.int32}.get(t.type)
        arr = None if data is None or dtype is None else \
            np.frombuffer(bytes(bytearray(data)), dtype).reshape(t.shape)
        return t, arr

    layers = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        if name not in ("FULLY_CONNECTED", "CONV_2D"):
            continue
        (ti, _), (tw, w), (_, b) = tensor(op.inputs[0]), tensor(op.inputs[1]), \
            tensor(op.inputs[2])
        to, _ = tensor(op.outputs[0])
        if tw.type != s.TensorType.INT8 or w is None:
            raise ValueError(f"{name} op writing tensor {op.outputs[0]} has no constant int8 "
                             "weights")
        if name == "CONV_2D":
            if w.shape[1:3] != (1, 1) or list(ti.shape[1:3]) != [1, 1]:
                raise ValueError(f"CONV_2D writing tensor {op.outputs[0]} is not a 1x1 "
                                 f"convolution of a 1x1 image (filter {w.shape})")
            w = w.reshape(w.shape[0], -1)
        out_scale, out_zp = float(to.quantization.scale[0]), int(to.quantization.zeroPoint[0])
        w_scales = np.broadcast_to(np.asarray(tw.quantization.scale, np.float32),
                                   (w.shape[0],)).copy()
        lo, hi = _act_range(op.builtinOptions.fusedActivationFunction, out_scale, out_zp)
        layers.append(DenseLayer(
            op=name, w=w.astype(np.int8),
            bias=(np.zeros(w.shape[0], np.int32) if b is None else b.astype(np.int32)),
            input_scale=float(ti.quantization.scale[0]),
            input_zero_point=int(ti.quantization.zeroPoint[0]),
            weight_scales=w_scales, output_scale=out_scale, output_zero_point=out_zp,
            act_min=lo, act_max=hi, output_tensor=op.outputs[0]))
    return layers


def quantize_input(path, x_float):
    """Quantize float inputs (batch, features) with the model's input tensor parameters."""
    layer = read_dense_layers(path)[0]
    q = np.round(np.asarray(x_float, np.float64) / layer.input_scale) + layer.input_zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def run_reference(path, x_int8):
    """Run LiteRT's reference kernels image by image; return every dense layer's int8 output.

    Returns a list (one entry per dense layer) of int8 arrays of shape (batch, out).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    layers = read_dense_layers(path)
    it = Interpreter(model_path=str(path),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    outs = [np.zeros((len(x_int8), lay.w.shape[0]), np.int8) for lay in layers]
    for n, row in enumerate(np.asarray(x_int8, np.int8)):
        it.set_tensor(inp["index"], row.reshape(inp["shape"]))
        it.invoke()
        for k, lay in enumerate(layers):
            outs[k][n] = it.get_tensor(lay.output_tensor).reshape(-1)
    return outs


def write_dense_model(template, layers, path):
    """Write ``layers`` (``DenseLayer``s) into a copy of the .tflite ``template`` of the same
    architecture: weights, biases and every scale and zero point are replaced, the graph is
    kept. So a model trained or narrowed here runs on LiteRT's reference kernels, the
    oracle of the int8 layers. Raises ValueError if the shapes or the layer count differ.
    """
    import flatbuffers

    s = _schema()
    buf = open(template, "rb").read()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(buf, 0))
    graph = model.subgraphs[0]
    dense = [op for op in graph.operators
             if model.operatorCodes[op.opcodeIndex].builtinCode in
             (s.BuiltinOperator.FULLY_CONNECTED, s.BuiltinOperator.CONV_2D)]
    if len(dense) != len(layers):
        raise ValueError(f"{template} has {len(dense)} dense layers, the model {len(layers)}")
    for op, lay in zip(dense, layers, strict=True):
        ti, tw, tb, to = (graph.tensors[i] for i in (*op.inputs[:3], op.outputs[0]))
        if int(np.prod(tw.shape)) != lay.w.size or tw.shape[0] != lay.w.shape[0]:
            raise ValueError(f"layer writing tensor {op.outputs[0]}: template weights "
                             f"{list(tw.shape)}, model {list(lay.w.shape)}")
        model.buffers[tw.buffer].data = np.asarray(lay.w, np.int8).view(np.uint8).ravel()
        model.buffers[tb.buffer].data = np.asarray(lay.bias, "<i4").view(np.uint8).ravel()
        tw.quantization.scale = [float(v) for v in lay.weight_scales]
        tw.quantization.zeroPoint = [0] * len(lay.weight_scales)
        tb.quantization.scale = [float(lay.input_scale * v) for v in lay.weight_scales]
        tb.quantization.zeroPoint = [0] * len(lay.weight_scales)
        ti.quantization.scale, ti.quantization.zeroPoint = [lay.input_scale], \
            [lay.input_zero_point]
        to.quantization.scale, to.quantization.zeroPoint = [lay.output_scale], \
            [lay.output_zero_point]
    builder = flatbuffers.Builder(len(buf) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(bytes(builder.Output()))
    tmp.replace(path)
    return path
