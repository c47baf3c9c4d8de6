"""Read an int8 .tflite graph into op records; run it with the golden ops or with LiteRT.

``read_graph`` returns a ``Graph``: the tensors (shape, type, scales and zero points, constant
data) and the operators in the file's order, which is an execution order, each an ``Op``
record with its kind (the builtin operator's name), normalized options and the ids of its
input and output tensors. ``run_golden`` runs the graph with ``golden.ops`` on a batch of
inputs and returns every activation tensor; ``run_litert`` does the same with LiteRT's
interpreter, by default with the reference kernels (``OpResolverType.BUILTIN_REF``), the
oracle of the golden ops. The supported ops are those of ``golden.ops``: CONV_2D,
DEPTHWISE_CONV_2D, AVERAGE_POOL_2D, ADD, RESHAPE, FULLY_CONNECTED, SOFTMAX.
"""

import pathlib
from dataclasses import dataclass, field

import numpy as np

from . import ops
from .litert_model import _schema, parse_tflite
from .requant import check_range

SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "ADD", "RESHAPE",
             "FULLY_CONNECTED", "SOFTMAX")
_DTYPES = {"INT8": np.int8, "INT32": np.int32, "INT64": np.int64, "FLOAT32": np.float32,
           "UINT8": np.uint8, "INT16": np.int16}


@dataclass(frozen=True)
class Tensor:
    """One tensor of the graph. ``scale``/``zero_point``: float32 / int64 arrays (one entry
    per tensor, or per channel along ``quantized_dimension``), None if not quantized;
    ``data``: the constant's values in ``shape``, None for activations."""
    id: int
    name: str
    shape: tuple
    dtype: str
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    quantized_dimension: int = 0
    data: np.ndarray | None = field(default=None, repr=False)

    @property
    def s(self):
        """The per-tensor scale (raises if the tensor has per-channel scales)."""
        if self.scale is None or self.scale.size != 1:
            raise ValueError(f"tensor {self.id} ({self.name}) has no single scale")
        return float(self.scale[0])

    @property
    def zp(self):
        """The per-tensor zero point."""
        if self.zero_point is None or self.zero_point.size < 1:
            raise ValueError(f"tensor {self.id} ({self.name}) has no zero point")
        return int(self.zero_point[0])


@dataclass(frozen=True)
class Op:
    """One operator: ``kind`` (e.g. "CONV_2D"), ``inputs``/``outputs`` (tensor ids; -1 for an
    absent optional input), ``options`` (normalized: ``stride`` (h, w), ``dilation`` (h, w),
    ``padding`` "SAME"/"VALID", ``activation`` code, ``filter_size`` (h, w),
    ``depth_multiplier``, ``beta``, ``keep_num_dims``)."""
    index: int
    kind: str
    inputs: tuple
    outputs: tuple
    options: dict


@dataclass(frozen=True)
class Graph:
    tensors: dict
    ops: list
    inputs: tuple
    outputs: tuple

    def t(self, i):
        return self.tensors[i]


def read_graph(model):
    """Read a .tflite (path or bytes) into a ``Graph``. Raises ValueError naming the op if
    the graph holds an op outside ``SUPPORTED`` or an int8 op with unsupported options,
    and naming the fault if the file is not a .tflite flatbuffer or is damaged."""
    buf = model if isinstance(model, (bytes, bytearray)) else pathlib.Path(model).read_bytes()
    return parse_tflite(buf, _read)


def _read(buf):
    s = _schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(buf, 0))
    if len(model.subgraphs) != 1:
        raise ValueError(f"the model has {len(model.subgraphs)} subgraphs; one is supported")
    g = model.subgraphs[0]
    op_names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    pad_names = {s.Padding.SAME: "SAME", s.Padding.VALID: "VALID"}

    tensors = {}
    for i, t in enumerate(g.tensors):
        tname = type_names.get(t.type, str(t.type))
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        q = t.quantization
        scale = zp = None
        qdim = 0
        if q is not None and q.scale is not None and len(q.scale):
            scale = np.asarray(q.scale, np.float32)
            zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * scale.size,
                            np.int64)
            qdim = int(q.quantizedDimension)
        data = None
        raw = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
        if raw is not None and len(raw) and tname in _DTYPES:
            data = np.frombuffer(bytes(bytearray(raw)), np.dtype(_DTYPES[tname]).newbyteorder(
                "<")).astype(_DTYPES[tname]).reshape(shape)
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors[i] = Tensor(i, name, shape, tname, scale, zp, qdim, data)

    graph_ops = []
    for k, op in enumerate(g.operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        ins = tuple(int(i) for i in (op.inputs if op.inputs is not None else ()))
        outs = tuple(int(i) for i in op.outputs)
        if kind not in SUPPORTED:
            raise ValueError(f"op {k} ({kind}, writing tensor {outs[0]}) is not supported; "
                             f"the supported ops are {', '.join(SUPPORTED)}")
        o = op.builtinOptions
        opt = {}
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opt = dict(stride=(o.strideH, o.strideW), padding=pad_names[o.padding],
                       dilation=(o.dilationHFactor, o.dilationWFactor),
                       activation=o.fusedActivationFunction)
            if kind == "DEPTHWISE_CONV_2D":
                opt["depth_multiplier"] = int(o.depthMultiplier)
        elif kind == "AVERAGE_POOL_2D":
            opt = dict(stride=(o.strideH, o.strideW), padding=pad_names[o.padding],
                       filter_size=(o.filterHeight, o.filterWidth),
                       activation=o.fusedActivationFunction)
        elif kind in ("ADD", "FULLY_CONNECTED"):
            opt = dict(activation=o.fusedActivationFunction if o is not None else 0)
            if kind == "FULLY_CONNECTED":
                opt["keep_num_dims"] = bool(o.keepNumDims) if o is not None else False
                if o is not None and o.weightsFormat != 0:
                    raise ValueError(f"op {k} (FULLY_CONNECTED) has shuffled weights")
        elif kind == "SOFTMAX":
            opt = dict(beta=float(o.beta))
        graph_ops.append(Op(k, kind, ins, outs, opt))
    graph = Graph(tensors, graph_ops, tuple(int(i) for i in g.inputs),
                  tuple(int(i) for i in g.outputs))
    for op in graph_ops:
        op_kwargs(graph, op)  # check every op's types and parameters now
    return graph


def _int8_act(graph, op, i):
    t = graph.t(i)
    if t.dtype != "INT8" or t.scale is None or t.scale.size != 1:
        raise ValueError(f"op {op.index} ({op.kind}): tensor {i} ({t.name}) is not an int8 "
                         f"per-tensor quantized activation ({t.dtype})")
    return t


def _const(graph, op, i, dtype):
    t = graph.t(i)
    if t.data is None or t.dtype != dtype:
        raise ValueError(f"op {op.index} ({op.kind}): tensor {i} ({t.name}) is not a constant "
                         f"{dtype} tensor")
    return t


def op_kwargs(graph, op):
    """The golden op's keyword arguments for ``op``: constants and the integer parameters
    derived from the stored scales (``golden.ops`` ``*_params``)."""
    x = _int8_act(graph, op, op.inputs[0])
    y = _int8_act(graph, op, op.outputs[0])
    o = op.options
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        w = _const(graph, op, op.inputs[1], "INT8")
        b = _const(graph, op, op.inputs[2], "INT32").data if len(op.inputs) > 2 and \
            op.inputs[2] >= 0 else None
        if w.zero_point is not None and np.any(w.zero_point != 0):
            raise ValueError(f"op {op.index} ({op.kind}): weights with a nonzero zero point")
        channels = w.shape[3] if op.kind == "DEPTHWISE_CONV_2D" else w.shape[0]
        lo, hi = ops.act_range(o["activation"], y.s, y.zp)
        common = dict(input_zero_point=x.zp, output_zero_point=y.zp, act_min=lo, act_max=hi)
        if op.kind == "FULLY_CONNECTED":
            mant, expo = ops.fc_output_params(x.s, w.scale, y.s, channels)
            return dict(w=w.data, bias=b, output_mantissa=mant, output_exponent=expo,
                        **common)
        m, sh = ops.conv_output_params(x.s, w.scale, y.s, channels)
        kw = dict(w=w.data, bias=b, stride=o["stride"], padding=o["padding"],
                  dilation=o["dilation"], output_multiplier=m, output_shift=sh, **common)
        if op.kind == "DEPTHWISE_CONV_2D":
            kw["depth_multiplier"] = o["depth_multiplier"]
        return kw
    if op.kind == "AVERAGE_POOL_2D":
        lo, hi = ops.act_range(o["activation"], y.s, y.zp)
        return dict(filter_size=o["filter_size"], stride=o["stride"], padding=o["padding"],
                    act_min=lo, act_max=hi)
    if op.kind == "ADD":
        x2 = _int8_act(graph, op, op.inputs[1])
        lo, hi = ops.act_range(o["activation"], y.s, y.zp)
        return dict(input1_zero_point=x.zp, input2_zero_point=x2.zp, output_zero_point=y.zp,
                    act_min=lo, act_max=hi, **ops.add_params(x.s, x2.s, y.s))
    if op.kind == "RESHAPE":
        return dict(shape=y.shape)
    if op.kind == "SOFTMAX":
        if y.zp != -128 or abs(y.s - 1 / 256) > 0.001 / 256:
            raise ValueError(f"op {op.index} (SOFTMAX): output quantization ({y.s}, {y.zp}) "
                             "is not (1/256, -128)")
        return ops.softmax_params(o["beta"], x.s)
    raise ValueError(f"op {op.index}: {op.kind} is not supported")


def _batched(shape, n):
    """A tensor's shape with its leading (batch) axis replaced by ``n`` (the stored graphs
    have batch 1)."""
    return (n, *shape[1:]) if shape else (n,)


def run_golden(graph, x):
    """Run ``graph`` on int8 inputs ``x`` of shape (N, *input shape[1:]) with the golden ops.
    Returns {tensor id: int8 array (N, *shape[1:])} for the input and every op's output."""
    if len(graph.inputs) != 1:
        raise ValueError(f"the graph has {len(graph.inputs)} inputs; one is supported")
    tin = graph.t(graph.inputs[0])
    x = np.asarray(x)
    if x.shape[1:] != tin.shape[1:]:
        raise ValueError(f"x must have shape (N, {', '.join(map(str, tin.shape[1:]))}), "
                         f"got {x.shape}")
    n = x.shape[0]
    vals = {tin.id: check_range("x", x, -128, 127).astype(np.int8)}
    for op in graph.ops:
        kw = op_kwargs(graph, op)
        a = vals[op.inputs[0]]
        if op.kind == "CONV_2D":
            r = ops.conv_2d(a, **kw)
        elif op.kind == "DEPTHWISE_CONV_2D":
            r = ops.depthwise_conv_2d(a, **kw)
        elif op.kind == "AVERAGE_POOL_2D":
            r = ops.average_pool_2d(a, **kw)
        elif op.kind == "ADD":
            c = graph.t(op.inputs[1]).data  # a constant operand broadcasts over the batch
            r = ops.add(a, vals[op.inputs[1]] if c is None else c, **kw)
        elif op.kind == "RESHAPE":
            r = ops.reshape(a, _batched(kw["shape"], n))
        elif op.kind == "FULLY_CONNECTED":
            r = ops.fully_connected(a, **kw)
            yshape = graph.t(op.outputs[0]).shape
            r = r.reshape(_batched(yshape, n) if op.options["keep_num_dims"] else
                          (-1, r.shape[-1]))
        else:  # SOFTMAX
            r = ops.softmax(a, **kw)
        want = _batched(graph.t(op.outputs[0]).shape, n)
        if op.kind != "FULLY_CONNECTED" and r.shape != want:
            raise ValueError(f"op {op.index} ({op.kind}) gave shape {r.shape}, the graph "
                             f"says {want}")
        vals[op.outputs[0]] = r
    return vals


def run_litert(model, x, *, resolver="reference", tensors=None):
    """Run LiteRT's interpreter on each input of ``x`` (N, *input shape[1:]); return
    {tensor id: array (N, ...)} for ``tensors`` (default: the input and every op's output).

    ``resolver``: "reference" (``OpResolverType.BUILTIN_REF``, the reference kernels),
    "builtin" (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``, the optimized kernels) or "default"
    (``AUTO``: the optimized kernels and LiteRT's default delegates). Every intermediate
    tensor is kept (``experimental_preserve_all_tensors``).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kinds = {"reference": OpResolverType.BUILTIN_REF,
             "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
             "default": OpResolverType.AUTO}
    if resolver not in kinds:
        raise ValueError(f"resolver must be one of {sorted(kinds)}, not {resolver!r}")
    graph = read_graph(model)
    if tensors is None:
        tensors = [graph.inputs[0]] + [op.outputs[0] for op in graph.ops]
    src = dict(model_content=bytes(model)) if isinstance(model, (bytes, bytearray)) else \
        dict(model_path=str(model))
    it = Interpreter(**src, experimental_op_resolver_type=kinds[resolver],
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = np.asarray(x, np.int8)
    out = {i: [] for i in tensors}
    for row in x:
        it.set_tensor(inp["index"], row.reshape(inp["shape"]))
        it.invoke()
        for i in tensors:
            out[i].append(it.get_tensor(i).copy())
    return {i: np.concatenate(v) if v[0].ndim and v[0].shape[0] == 1 else np.stack(v)
            for i, v in out.items()}
