"""Compile an int8 .tflite graph for a convolution machine (``conv=True``, ``golden.isa``).

``compile_graph(model, cfg)`` lowers a chain of CONV_2D, DEPTHWISE_CONV_2D,
AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED and SOFTMAX ops (``golden.tflite_graph``) onto the
DOT engine, with loop-generated addresses and no im2col copy in memory:

- **CONV_2D 1x1** (pointwise): lanes over input channels; a DOT of ``C_in / lanes`` beats per
  output (pixel, channel); loops over rows, columns and groups of four output channels
  (four accumulators take turns), weights and channels indexed by the loops (``wi``,
  ``ci``).
- **CONV_2D on the graph's input with one input channel** (the keyword spotter's first
  layer): the host writes the input as *column strips* (for each output column, the
  ``kw`` input columns its windows read, every padded row, row-major: a window is then
  ``kh * kw`` consecutive bytes); a window starts mid-word in some rows (its *phase*), so the
  weights are stored once per phase, shifted.
- **CONV_2D with ``C_in`` a multiple of ``lanes``** (any kernel): window DOTs (``win``), one
  per group of ``lanes`` input channels, the padding taps dropped by the address unit.
- **DEPTHWISE_CONV_2D** (depth multiplier 1): lanes over channels, a window DOT per group
  of ``lanes`` channels into a lane-accumulator bank (elementwise), then a REQ of the bank
  (REQW); two banks alternate.
- **AVERAGE_POOL_2D** over the whole input (global pooling): the sum of every pixel into a
  bank (weights: one word of ones), requantized by ``1/n`` in single rounding; the compiler
  checks that this equals LiteRT's rounded division on every reachable sum (it does for the
  keyword spotter's n = 125; for an even n the ties round differently), else the pool runs
  on the host.
- **FULLY_CONNECTED**: a DOT per output, single rounding (the core's); the compiler checks
  that it equals LiteRT's double-precision rescale on every reachable accumulator, else the
  layer runs on the host.
- **RESHAPE** of a tensor stored contiguously: nothing (an alias); **SOFTMAX**: on the host
  (``golden.ops.softmax``, bit-exact), after reading its input out of the core.

Convolutions round twice (SETL ``round=1``: LiteRT's CONV_2D and DEPTHWISE_CONV_2D), the
others once. Every layer is a *segment* of the program that sets what it uses (SETL, SETG,
STRD), so the segments run one after another equal the whole program (``CompiledGraph.run``
checks each layer). Activation memory is planned with lifetimes: a tensor's buffer is free
once its last reader has run; a model that does not fit is refused with the bytes it needs
and has.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from sparq.spec.isa import field_width

from . import ops
from .isa import IllegalInstruction, ins
from .qparams import quantize_multiplier
from .requant import rescale_q31
from .sequencer import MachineConfig, Params, new_machine, run
from .tflite_graph import op_kwargs, read_graph

MAX_BEATS = (1 << field_width("beats", "DOT")) - 1  # a DOT's beats
MAX_COUNT = (1 << field_width("count", "LOOP")) - 1  # a LOOP's count
MAX_BODY = (1 << field_width("body", "LOOP")) - 1  # a LOOP's body


@dataclass
class Segment:
    """One op of the graph as the machine runs it: ``program`` (without HALT) on the core,
    or ``host`` (a function of the input arrays) off it, with the reason (``note``); a host
    op's output is written back to the activation memory when a core op reads it."""
    op: object
    program: list = field(default_factory=list)
    host: object = None
    note: str = ""


@dataclass
class CompiledGraph:
    cfg: MachineConfig
    params: Params
    graph: object
    segments: list
    buffers: dict  # tensor id -> activation memory address (NHWC, contiguous)
    strips: dict = None  # the conv-strip layout of the graph's input (None: as it is)

    def writes_memory(self, seg):
        """A host op whose output the core reads from activation memory (the host writes it
        there): it splits the program (``programs``)."""
        return seg.host is not None and seg.op.kind != "RESHAPE" and \
            seg.op.outputs[0] in self.buffers

    @property
    def programs(self):
        """The core's programs, in order, each ending in HALT: one, unless a host op whose
        output a later core op reads sits between core ops (then the host runs between
        them)."""
        progs, cur = [], None
        for seg in self.segments:
            if self.writes_memory(seg):
                cur = None
            elif seg.host is None:
                if cur is None:
                    cur = []
                    progs.append(cur)
                cur += seg.program
        return [p + [ins("HALT")] for p in progs]

    @property
    def program(self):
        """The whole program: every core segment in order, then HALT (ValueError when a host
        op splits it: ``programs``)."""
        progs = self.programs
        if len(progs) != 1:
            host = [s.op.index for s in self.segments if self.writes_memory(s)]
            raise ValueError(f"the host runs ops {host} between core ops: the program comes "
                             f"in {len(progs)} parts (CompiledGraph.programs)")
        return progs[0]

    def x_image(self, xq):
        """The activation memory's initial contents for one int8 input (the graph input's
        shape without the batch axis)."""
        x = np.zeros(self.cfg.x_depth, np.int64)
        tin = self.graph.t(self.graph.inputs[0])
        row = np.asarray(xq, np.int64).reshape(tin.shape[1:])
        data = _strip_image(row, **self.strips) if self.strips else row.ravel()
        a = self.buffers[tin.id]
        x[a:a + data.size] = data
        return x

    def tensor(self, x, tid):
        """Tensor ``tid`` (NHWC, batch 1) read from activation memory ``x``."""
        t = self.graph.t(tid)
        a, n = self.buffers[tid], int(np.prod(t.shape))
        return np.asarray(x[a:a + n]).reshape(t.shape)

    def run(self, xq, dot_cost=None, runs=None, starts=None):
        """Run one input segment by segment on the ISA simulator (host ops on the host).
        Returns ``(tensors, cycles)``: every op's output (tensor id -> int8 array, batch 1)
        and the ISA simulator's cycles of the programs (the segments' less their extra
        HALTs). ``runs``, a list, receives for each of ``programs`` the activation memory it
        starts from and its segments: ``(x, [(first word, segment), ...])``; ``starts``, a
        list, for each core segment the activation memory it starts from."""
        tin = self.graph.inputs[0]
        x, cycles, halts, cur = self.x_image(xq), 0, 0, None
        out = {tin: np.asarray(xq).reshape(self.graph.t(tin).shape).astype(np.int8)}
        for seg in self.segments:
            y = seg.op.outputs[0]
            if seg.host is not None:
                out[y] = seg.host(*[out[i] for i in seg.op.inputs[:1]]).astype(np.int8)
                if self.writes_memory(seg):  # the host writes it for the core ops after
                    a, x, cur = self.buffers[y], x.copy(), None
                    x[a:a + out[y].size] = out[y].reshape(-1)
                continue
            if cur is None:
                cur = (x.copy(), [])
                halts += 1
                if runs is not None:
                    runs.append(cur)
            cur[1].append((sum(len(s.program) for _, s in cur[1]), seg))
            if starts is not None:
                starts.append(x)
            m = new_machine(self.cfg, self.params, x)
            m.dot_cost = dot_cost
            run(m, seg.program + [ins("HALT")])
            x, cycles = m.x, cycles + m.cycles - 1
            out[y] = self.tensor(x, y).astype(np.int8)
        return out, cycles + halts

    def cycles(self, xq, runs=None, **core):
        """The core model's cycles for one input (``golden.core.predict_program_cycles``
        with the Core's parameters ``core``), summed over ``programs``; ``runs``: what
        ``run`` gave for that input, if it ran already (else it runs)."""
        from .core import predict_program_cycles

        if runs is None:
            runs = []
            self.run(xq, runs=runs)
        return sum(predict_program_cycles(self.cfg, self.params, prog, x0, **core)[0]
                   for prog, (x0, _) in zip(self.programs, runs, strict=True))


def _strip_image(row, *, zp, kh, kw, sy, sx, pt, pl, oh, ow, strip, **_):
    """The column strips of a one-channel input ``row`` (H, W, 1): strip ``ox`` holds input
    columns ``ox*sx - pl .. + kw`` of rows ``-pt .. (oh-1)*sy - pt + kh``, row-major, the
    padding at the zero point, each strip ``strip`` bytes."""
    h, w = row.shape[:2]
    rows = (oh - 1) * sy + kh
    pad = np.full((rows + 2 * h, w + 2 * kw + sx * ow), zp, np.int64)
    pad[pt:pt + h, kw + pl:kw + pl + w] = row[:, :, 0]
    out = np.full((ow, strip), zp, np.int64)
    for ox in range(ow):
        c0 = kw + ox * sx
        out[ox, :rows * kw] = pad[:rows, c0:c0 + kw].ravel()
    return out.ravel()


class _Images:
    """The read-only memories being built: weights (word-aligned blocks) and channels."""

    def __init__(self, lanes):
        self.lanes, self.w, self.n = lanes, [], 0
        self.ch = {k: [] for k in ("bias", "multiplier", "shift", "out_zp", "act_min",
                                   "act_max")}

    def weights(self, arr):
        """Append int8 weights (padded to whole words); returns their address."""
        a = np.asarray(arr, np.int64).ravel()
        a = np.concatenate([a, np.zeros(-a.size % self.lanes, np.int64)])
        addr = self.n
        self.w.append(a)
        self.n += a.size
        return addr

    def channels(self, bias, multiplier, shift, out_zp, act_min, act_max):
        """Append channels' parameters (arrays, or scalars broadcast to ``bias``'s length);
        returns the first channel's number."""
        first, n = len(self.ch["bias"]), len(bias)
        for k, v in dict(bias=bias, multiplier=multiplier, shift=shift, out_zp=out_zp,
                         act_min=act_min, act_max=act_max).items():
            self.ch[k] += [int(u) for u in np.broadcast_to(np.asarray(v, np.int64), (n,))]
        return first

    def params(self):
        w = np.concatenate(self.w) if self.w else np.zeros(0, np.int64)
        return Params(w=w, **{k: np.array(v, np.int64) for k, v in self.ch.items()})


def _loop_nest(levels, body):
    """Words for ``body`` inside a loop nest. ``levels``: outermost first, each ``(count,
    xstride, ostride, wstride, chstride)``; the w and ch strides of every level are set
    first (``_strides``)."""
    return _strides(levels) + _wrap(levels, body)


def _strides(levels):
    """STRD for the w and ch strides of every level, so that a segment does not depend on
    what the one before left in the stride registers."""
    return [ins("STRD", level=lvl, kind=k, stride=st) for lvl, level in enumerate(levels)
            for k, st in enumerate(level[3:])]


def _wrap(levels, body):
    """``body`` inside the LOOPs of ``levels`` (outermost first)."""
    body = list(body)
    for count, xs, os_, _, _ in reversed(levels):
        body = [_loop(count, xs, os_, body)] + body
    return body


def _loop(count, xs, os_, body):
    if not 1 <= count <= MAX_COUNT or not 1 <= len(body) <= MAX_BODY:
        raise ValueError(f"a loop of {count} iterations over {len(body)} instructions does "
                         f"not fit a LOOP (1..{MAX_COUNT} and 1..{MAX_BODY})")
    if count == 1:  # (the strides of a loop run once are never used)
        xs = os_ = 0
    return ins("LOOP", count=count, body=len(body), xstride=xs, ostride=os_)


def _groups(n):
    """Accumulators that take turns over ``n`` output channels (a divisor of n, at most 4)."""
    return next(a for a in (4, 2, 1) if n % a == 0)


def _output_groups(outer, oc, wstride, dots_of, out, ch0):
    """The output channels of one output pixel (the ``outer`` loop levels walk the pixels)
    in groups of ``a`` (``_groups``), accumulators 0..a-1, software-pipelined so that no REQ
    waits for the DOT just before it: group 0's LDBs and DOTs and its first REQ (the
    prologue); then a loop over the other groups, each ``LDB j, DOT j, REQ j+1 of the group
    before`` and last the group's first REQ; then the last group's other REQs (the
    epilogue). ``dots_of(j, g)``: the DOTs of output ``g*a + j`` (``g`` 0 or 1: the loop's
    index adds the rest through ``wi``, ``wstride`` weight bytes per output channel)."""
    a = _groups(oc)
    groups = oc // a

    def ldb(j, grp):
        return [ins("LDB", acc=j, ci=1, ch=ch0 + grp * a + j)] + dots_of(j, grp)

    def req(j, grp):
        return ins("REQ", acc=j, ci=1, ch=ch0 + grp * a + j, oi=1, oaddr=out + grp * a + j)
    prologue = [w for j in range(a) for w in ldb(j, 0)] + [req(0, 0)]
    steady = []
    for j in range(a):
        steady += ldb(j, 1) + [req(j + 1, 0) if j + 1 < a else req(0, 1)]
    epilogue = [req(j, groups - 1) for j in range(1, a)]
    inner = [_loop(groups - 1, 0, a, steady)] + steady if groups > 1 else []
    return _strides(outer + [(groups - 1, 0, a, a * wstride, a)]) \
        + _wrap(outer, prologue + inner + epilogue)


def _row_dots(acc, xaddr, xi, waddr, beats, lanes):
    """The DOTs of one row of ``beats`` beats into ``acc``: as many as it takes, each at
    most ``MAX_BEATS`` beats (weights indexed by the loops: ``wi``)."""
    return [ins("DOT", acc=acc, xi=xi, xaddr=xaddr + k * lanes, wi=1, waddr=waddr + k * lanes,
                beats=min(MAX_BEATS, beats - k)) for k in range(0, beats, MAX_BEATS)]


def _conv_params(kw, images):
    oc = len(kw["output_multiplier"])
    bias = kw["bias"] if kw["bias"] is not None else np.zeros(oc, np.int64)
    return images.channels(bias, kw["output_multiplier"], kw["output_shift"],
                           kw["output_zero_point"], kw["act_min"], kw["act_max"])


def _setl(zp, rnd):
    return ins("SETL", in_zp=int(zp), round=rnd)


def _pointwise(g, op, kw, images, buf, lanes):
    """CONV_2D 1x1: rows x columns x groups of output channels."""
    _, h, w, cin = g.t(op.inputs[0]).shape
    _, oh, ow, oc = g.t(op.outputs[0]).shape
    sy, sx = op.options["stride"]
    beats = cin // lanes
    wa = images.weights(np.asarray(kw["w"]).reshape(oc, cin))
    ch0 = _conv_params(kw, images)
    xin, out = buf[op.inputs[0]], buf[op.outputs[0]]

    def dots(j, grp):
        return _row_dots(j, xin, 1, wa + (grp * _groups(oc) + j) * cin, beats, lanes)
    outer = [(oh, sy * w * cin, ow * oc, 0, 0), (ow, sx * cin, oc, 0, 0)]
    return [_setl(kw["input_zero_point"], 1)] + _output_groups(outer, oc, cin, dots, out, ch0)


def _window_conv(g, op, kw, images, buf, lanes):
    """CONV_2D with C_in a multiple of lanes: window DOTs per group of input channels."""
    _, h, w, cin = g.t(op.inputs[0]).shape
    _, oh, ow, oc = g.t(op.outputs[0]).shape
    _, kh, kwid, _ = np.asarray(kw["w"]).shape
    (sy, sx), cg = op.options["stride"], cin // lanes
    pt, pl = ops.pad_before(h, kh, sy, 1, oh), ops.pad_before(w, kwid, sx, 1, ow)
    # weights: per output channel, per channel group, the taps' words
    wt = np.asarray(kw["w"]).reshape(oc, kh * kwid, cg, lanes).transpose(0, 2, 1, 3)
    wa = images.weights(wt)
    per_oc = cg * kh * kwid * lanes
    ch0 = _conv_params(kw, images)
    xin, out = buf[op.inputs[0]], buf[op.outputs[0]]

    def dots(j, grp):
        first = wa + (grp * _groups(oc) + j) * per_oc
        return [ins("DOT", acc=j, xi=1, xaddr=xin + c * lanes, wi=1,
                    waddr=first + c * kh * kwid * lanes, win=1, beats=kh * kwid)
                for c in range(cg)]
    outer = [(oh, sy * w * cin, ow * oc, 0, 0), (ow, sx * cin, oc, 0, 0)]
    return [_setl(kw["input_zero_point"], 1), _setg(h, w, kwid, pt, pl, sy, sx, cin, lanes)] \
        + _output_groups(outer, oc, per_oc, dots, out, ch0)


def _setg(h, w, kw, pt, pl, sy, sx, c, lanes):
    return ins("SETG", ih=h, iw=w, kw=kw, pt=pt, pl=pl, sy=sy, sx=sx, pixpitch=c // lanes,
               rowpitch=w * c // lanes)


def _depthwise(g, op, kw, images, buf, lanes):
    """DEPTHWISE_CONV_2D: per output pixel, a window DOT per group of channels into a lane
    bank (two alternate), each bank requantized into one word (REQW)."""
    _, h, w, c = g.t(op.inputs[0]).shape
    _, oh, ow, _ = g.t(op.outputs[0]).shape
    _, kh, kwid, _ = np.asarray(kw["w"]).shape
    sy, sx = op.options["stride"]
    pt, pl = ops.pad_before(h, kh, sy, 1, oh), ops.pad_before(w, kwid, sx, 1, ow)
    groups = c // lanes
    # weights: per group, per tap, the group's lanes
    wa = images.weights(np.asarray(kw["w"]).reshape(kh * kwid, groups, lanes)
                        .transpose(1, 0, 2))
    ch0 = _conv_params(kw, images)
    xin, out = buf[op.inputs[0]], buf[op.outputs[0]]
    body = []
    for k in range(groups):
        bank = 4 + k % 2
        body += [ins("CLR", acc=bank),
                 ins("DOT", acc=bank, xi=1, xaddr=xin + k * lanes, win=1,
                     waddr=wa + k * kh * kwid * lanes, beats=kh * kwid)]
        if k:
            body.append(_reqw(4 + (k - 1) % 2, out, ch0, k - 1, lanes))
    body.append(_reqw(4 + (groups - 1) % 2, out, ch0, groups - 1, lanes))
    levels = [(oh, sy * w * c, ow * c, 0, 0), (ow, sx * c, c, 0, 0)]
    return [_setl(kw["input_zero_point"], 1), _setg(h, w, kwid, pt, pl, sy, sx, c, lanes)] \
        + _loop_nest(levels, body)


def _reqw(bank, out, ch0, k, lanes):
    return ins("REQ", acc=bank, ch=ch0 + k * lanes, oi=1, oaddr=out + k * lanes)


def _strip_layout(g, op, kw, lanes):
    """The column-strip layout of the one-channel input of CONV_2D ``op`` (``_strip_image``'s
    keywords)."""
    _, h, w, _ = g.t(op.inputs[0]).shape
    _, oh, ow, _ = g.t(op.outputs[0]).shape
    _, kh, kwid, _ = np.asarray(kw["w"]).shape
    sy, sx = op.options["stride"]
    rows = (oh - 1) * sy + kh
    step = sy * kwid  # a window's phase (its first byte within a word) repeats after
    phases = [(r * step) % lanes for r in range(min(lanes // math.gcd(step, lanes), oh))]
    beats = -(-(max(phases) + kh * kwid) // lanes)
    return dict(zp=kw["input_zero_point"], kh=kh, kw=kwid, sy=sy, sx=sx,
                pt=ops.pad_before(h, kh, sy, 1, oh), pl=ops.pad_before(w, kwid, sx, 1, ow),
                oh=oh, ow=ow, strip=-(-rows * kwid // lanes) * lanes, phases=phases,
                beats=beats, overhang=beats * lanes)


def _strip_conv(g, op, kw, images, buf, lanes):
    """CONV_2D of the graph's one-channel input laid out as column strips (the module
    docstring)."""
    lay = _strip_layout(g, op, kw, lanes)
    kh, kwid, sy, oh, ow, strip, phases, beats = (lay[k] for k in (
        "kh", "kw", "sy", "oh", "ow", "strip", "phases", "beats"))
    oc = g.t(op.outputs[0]).shape[3]
    step = sy * kwid  # bytes from one output row's window to the next
    period = lanes // math.gcd(step, lanes)  # rows until the phase repeats
    if beats > MAX_BEATS:
        raise ValueError(f"op {op.index} (CONV_2D): a {kh}x{kwid} window in strips needs "
                         f"{beats} beats, more than a DOT's {MAX_BEATS}")
    taps = np.asarray(kw["w"]).reshape(oc, kh * kwid)
    copies = np.zeros((len(phases), oc, beats * lanes), np.int64)
    for r, ph in enumerate(phases):
        copies[r, :, ph:ph + kh * kwid] = taps
    wa = images.weights(copies)
    per_copy = oc * beats * lanes
    ch0 = _conv_params(kw, images)
    xin, out = buf[op.inputs[0]], buf[op.outputs[0]]
    prog = [_setl(kw["input_zero_point"], 1)]
    full, rest = divmod(oh, period)
    for r in range(min(period, oh)):  # a nest per phase: rows r, r + period, ...
        xb = xin + (r * step) // lanes * lanes

        def dots(j, grp, r=r, xb=xb):
            return [ins("DOT", acc=j, xi=1, xaddr=xb, wi=1, beats=beats,
                        waddr=wa + r * per_copy + (grp * _groups(oc) + j) * beats * lanes)]
        outer = [(full + (r < rest), period * step, period * ow * oc, 0, 0),
                 (ow, strip, oc, 0, 0)]
        prog += _output_groups(outer, oc, beats * lanes, dots, out + r * ow * oc, ch0)
    return prog


class _OffCore(Exception):
    """The op cannot run on the core bit-exactly; the message says why (it runs on the
    host)."""


def _exact_single(name, lo, hi, multiplier, shift, want):
    """Single rounding by ``(multiplier, shift)`` (``golden.requant``, before the zero point
    and clamp) equals ``want(acc)`` on every accumulator in [lo, hi]; raises ``_OffCore``
    naming the first that differs."""
    acc = np.arange(lo, hi + 1, dtype=np.int64)
    got = rescale_q31(acc, multiplier, shift, double_round=False)
    bad = np.flatnonzero(got != want(acc))
    if bad.size:
        raise _OffCore(f"{name}: the core's single rounding differs from LiteRT's at "
                       f"accumulator {int(acc[bad[0]])}")


def _round_double(acc, mantissa, exponent):
    """LiteRT's FULLY_CONNECTED rescale ``round((double)acc * scale)``, vectorized: the
    float64 product is C++'s double product; then half away from zero."""
    p = acc.astype(np.float64) * (float(mantissa) * 2.0 ** int(exponent))
    return np.where(p >= 0, np.floor(p + 0.5), np.ceil(p - 0.5)).astype(np.int64)


def _fully_connected(g, op, kw, images, buf, lanes):
    """FULLY_CONNECTED: a DOT per output channel, single rounding (checked exact)."""
    w = np.asarray(kw["w"], np.int64)
    oc, n_in = w.shape
    row = -(-n_in // lanes) * lanes
    beats = row // lanes
    if oc > MAX_COUNT:
        raise ValueError(f"op {op.index} (FULLY_CONNECTED): {oc} outputs exceed a LOOP's "
                         f"{MAX_COUNT}")
    padded = np.zeros((oc, row), np.int64)
    padded[:, :n_in] = w
    wa = images.weights(padded)
    zp = kw["input_zero_point"]
    bias = kw["bias"] if kw["bias"] is not None else np.zeros(oc, np.int64)
    mult, shift = [], []
    for c in range(oc):
        s = float(kw["output_mantissa"][c]) * 2.0 ** int(kw["output_exponent"][c])
        m, sh = quantize_multiplier(s)
        lo = int(bias[c] + np.minimum(w[c] * (-128 - zp), w[c] * (127 - zp)).sum())
        hi = int(bias[c] + np.maximum(w[c] * (-128 - zp), w[c] * (127 - zp)).sum())
        _exact_single(f"op {op.index} (FULLY_CONNECTED) channel {c}", lo, hi, m, sh,
                      lambda a, c=c: _round_double(a, kw["output_mantissa"][c],
                                                   kw["output_exponent"][c]))
        mult.append(m)
        shift.append(sh)
    ch0 = images.channels(bias, mult, shift, kw["output_zero_point"], kw["act_min"],
                          kw["act_max"])
    body = [ins("LDB", acc=0, ci=1, ch=ch0),
            *_row_dots(0, buf[op.inputs[0]], 0, wa, beats, lanes),
            ins("REQ", acc=0, ci=1, ch=ch0, oi=1, oaddr=buf[op.outputs[0]])]
    return [_setl(zp, 0)] + _loop_nest([(oc, 0, 1, row, 1)], body)


def _average_pool(g, op, kw, images, buf, lanes):
    """AVERAGE_POOL_2D over the whole input: each group's sum into a bank, then REQW by
    ``1/n`` in single rounding (checked exact on every reachable sum)."""
    tin, tout = g.t(op.inputs[0]), g.t(op.outputs[0])
    _, h, w, c = tin.shape
    n = h * w
    if tuple(op.options["filter_size"]) != (h, w) or tout.shape[1:3] != (1, 1):
        raise ValueError(f"op {op.index} (AVERAGE_POOL_2D): only a pool over the whole "
                         f"{h}x{w} input is supported, not {op.options['filter_size']}")
    if tin.zp != tout.zp or abs(tin.s - tout.s) > 1e-6 * tin.s:
        raise ValueError(f"op {op.index} (AVERAGE_POOL_2D): input and output quantization "
                         "differ")
    zp = tin.zp
    m, sh = quantize_multiplier(1.0 / n)

    def litert(s):  # on the raw sum s' + n*zp, less zp (the output zero point)
        raw = s + n * zp
        half = n // 2
        return np.where(raw > 0, (raw + half) // n, -((half - raw) // n)) - zp
    _exact_single(f"op {op.index} (AVERAGE_POOL_2D)", n * (-128 - zp), n * (127 - zp), m,
                  sh, litert)
    ones = images.weights(np.ones(lanes, np.int64))
    ch0 = images.channels(np.zeros(c, np.int64), m, sh, zp, kw["act_min"], kw["act_max"])
    xin, out = buf[op.inputs[0]], buf[op.outputs[0]]
    prog = [_setl(zp, 0)]
    for k in range(c // lanes):
        prog += [ins("CLR", acc=4)]
        prog += _loop_nest([(n, c, 0, 0, 0)], [ins("DOT", acc=4, xi=1, xaddr=xin + k * lanes,
                                                   waddr=ones, beats=1)])
        prog.append(_reqw(4, out, ch0, k, lanes))
    return prog


def _plan(g, order, sizes, x_depth, lanes, alias):
    """Activation memory with lifetimes: a tensor lives from the op that writes it to the
    last op that reads it; each is placed first-fit from the bottom or the top of memory,
    the two ends taking turns (a chain's tensors ping-pong and do not fragment the memory).
    Returns tensor id -> address; raises ValueError with the bytes needed and available
    when a tensor does not fit."""
    last = {}
    for k, op in enumerate(order):
        for i in op.inputs:
            last[alias.get(i, i)] = k
    live, addr, top = {}, {}, [False]

    def words(t):
        return -(-sizes[t] // lanes) * lanes

    def fit(need, from_top):
        spans = sorted((addr[t], addr[t] + words(t)) for t in live)
        bounds = [(0, 0)] + spans + [(x_depth, x_depth)]
        gaps = [(a1, a0) for (_, a1), (a0, _) in zip(bounds[:-1], bounds[1:], strict=True)]
        gaps = [(lo, hi) for lo, hi in gaps if hi - lo >= need]
        if not gaps:
            return None
        return gaps[-1][1] - need if from_top else gaps[0][0]

    def place(tid, k):
        need = words(tid)
        at = fit(need, top[0])
        if at is None:
            total = sum(words(t) for t in live) + need
            raise ValueError(f"the model does not fit: at op {k} it needs {total} bytes of "
                             f"activation memory (tensors {sorted(live) + [tid]}), the "
                             f"machine has {x_depth}")
        addr[tid], live[tid], top[0] = at, True, not top[0]
    place(g.inputs[0], 0)
    for k, op in enumerate(order):
        y = op.outputs[0]
        if y in alias:
            addr[y] = addr[alias[y]]
        elif y in sizes:
            place(y, k)
        for t in [t for t in live if last.get(t, -1) <= k and t != y]:
            del live[t]
    return addr


LOWER = {"DEPTHWISE_CONV_2D": _depthwise, "FULLY_CONNECTED": _fully_connected,
         "AVERAGE_POOL_2D": _average_pool}
HOST_OPS = {"DEPTHWISE_CONV_2D": ops.depthwise_conv_2d, "FULLY_CONNECTED": ops.fully_connected,
            "AVERAGE_POOL_2D": ops.average_pool_2d}


def compile_graph(model, cfg):
    """Compile the .tflite ``model`` (path or bytes) for machine ``cfg`` (a
    ``MachineConfig`` with ``conv=True``). Raises ValueError naming the op (or the memory)
    that the machine cannot run or hold."""
    if not cfg.conv:
        raise ValueError("compile_graph needs a convolution machine (conv=True)")
    g = read_graph(model)
    lanes, images = cfg.lanes, _Images(cfg.lanes)
    alias, sizes, strips = {}, {}, None
    for op in g.ops:
        y = g.t(op.outputs[0])
        if op.kind == "RESHAPE":
            alias[y.id] = alias.get(op.inputs[0], op.inputs[0])
        elif op.kind != "SOFTMAX":
            sizes[y.id] = int(np.prod(y.shape))
    tin = g.t(g.inputs[0])
    first = g.ops[0]
    strip_input = first.kind == "CONV_2D" and tin.shape[3] == 1
    sizes[tin.id] = int(np.prod(tin.shape))
    if strip_input:  # the host writes the input as column strips
        strips = _strip_layout(g, first, op_kwargs(g, first), lanes)
        # (the last strip's windows of a low phase read up to a DOT's length past it)
        sizes[tin.id] = strips["ow"] * strips["strip"] + strips["overhang"]
    buf = _plan(g, g.ops, sizes, cfg.x_depth, lanes, alias)
    for y, src in alias.items():
        buf[y] = buf[src]
    segments = []
    for op in g.ops:
        try:
            segments.append(_lower(g, op, images, buf, lanes, strip_input and op is first))
        except IllegalInstruction as e:  # a field the op's shape overflows
            raise ValueError(f"op {op.index} ({op.kind}) does not fit the instruction set: "
                             f"{e}") from None
    prm = images.params()
    _check_fit(cfg, prm, segments)
    return CompiledGraph(cfg, prm, g, segments, buf, strips)


def _lower(g, op, images, buf, lanes, strip):
    """The segment of one op."""
    if op.kind == "RESHAPE":  # an alias: nothing runs
        shape = g.t(op.outputs[0]).shape
        return Segment(op, host=lambda a: a.reshape(shape))
    kw = op_kwargs(g, op)
    if op.kind == "SOFTMAX":
        return Segment(op, host=lambda a, kw=kw: ops.softmax(a.reshape(1, -1), **kw))
    cin = g.t(op.inputs[0]).shape[-1]
    if tuple(op.options.get("dilation") or (1, 1)) != (1, 1):
        raise ValueError(f"op {op.index} ({op.kind}): dilation {op.options['dilation']} is "
                         "not supported (only 1)")
    if op.kind == "DEPTHWISE_CONV_2D" and op.options["depth_multiplier"] != 1:
        raise ValueError(f"op {op.index} (DEPTHWISE_CONV_2D): depth multiplier "
                         f"{op.options['depth_multiplier']} is not supported (only 1)")
    if op.kind == "CONV_2D":
        kh, kwid = np.asarray(kw["w"]).shape[1:3]
        if strip:
            return Segment(op, _strip_conv(g, op, kw, images, buf, lanes))
        if cin % lanes:
            raise ValueError(f"op {op.index} (CONV_2D): {cin} input channels are not a "
                             f"multiple of the {lanes} lanes")
        if (kh, kwid) == (1, 1):
            return Segment(op, _pointwise(g, op, kw, images, buf, lanes))
        return Segment(op, _window_conv(g, op, kw, images, buf, lanes))
    if op.kind in LOWER:
        if op.kind != "FULLY_CONNECTED" and cin % lanes:
            raise ValueError(f"op {op.index} ({op.kind}): {cin} channels are not a multiple "
                             f"of the {lanes} lanes")
        try:
            return Segment(op, LOWER[op.kind](g, op, kw, images, buf, lanes))
        except _OffCore as e:  # bit-exact on the host instead
            run_op = HOST_OPS[op.kind]
            return Segment(op, host=lambda a, kw=kw: run_op(a.reshape(
                g.t(op.inputs[0]).shape), **kw), note=f"on the host: {e}")
    raise ValueError(f"op {op.index}: {op.kind} does not run on the core yet")


def _check_fit(cfg, prm, segments):
    prog = sum(len(s.program) for s in segments) + 1
    for what, need, have in (("weight bytes", prm.w.size, cfg.w_depth),
                             ("channels", prm.bias.size, cfg.channels),
                             ("program words", prog, cfg.prog_depth)):
        if need > have:
            raise ValueError(f"the model does not fit: it needs {need} {what}, the machine "
                             f"has {have}")


def layer_figures(c, xq, **core):
    """The core model's figures for one input, per core segment (op): ``cycles``
    (``golden.core.predict_program_cycles`` with the Core's parameters ``core``, attributed
    to a layer up to the cycle its last instruction is taken), ``dense`` (the same program
    on the dense baseline: same multipliers, no skipping), ``pairs`` (the (activation,
    weight) pairs the DOTs feed), ``effectual`` (both non-zero: the MACs the engine does),
    ``skipped`` and ``ideal`` = ceil(effectual / multipliers). Each of ``programs`` is run
    from the memory the ops before it leave."""
    from sparq.spec import params as spec_params

    slots = spec_params.core(**dict(vars(c.cfg), **core))["slots"]
    runs, out = [], []
    c.run(xq, runs=runs)
    for prog, (x0, segs) in zip(c.programs, runs, strict=True):
        ends = [b for b, _ in segs[1:]] + [len(prog) - 1]
        cyc = {skip: _segment_cycles(c, prog, x0, ends, dict(core, skip=skip))
               for skip in (True, False)}
        eff, pairs = _effectual(c, prog, x0)
        for k, ((b, s), e) in enumerate(zip(segs, ends, strict=True)):
            ek = sum(v for pc, v in eff.items() if b <= pc < e)
            pk = sum(v for pc, v in pairs.items() if b <= pc < e)
            out.append(dict(op=s.op.index, kind=s.op.kind, cycles=cyc[True][k],
                            dense=cyc[False][k], pairs=pk, effectual=ek, skipped=pk - ek,
                            ideal=-(-ek // slots)))
    return out


def _segment_cycles(c, prog, x0, ends, core):
    """The core model's cycles of ``prog`` split at ``ends`` (each segment's end: the cycle
    its last instruction is taken; the last segment runs to the program's end)."""
    from .core import predict_program_cycles

    tl = []
    total, _ = predict_program_cycles(c.cfg, c.params, prog, x0, timeline=tl, **core)
    last = dict(tl)  # pc -> the cycle its last execution was taken
    marks = [max(t for pc, t in last.items() if pc < e) for e in ends[:-1]] + [total]
    return [b - a for a, b in zip([0] + marks[:-1], marks, strict=True)]


def engine_stream(c, xq, *, lanes):
    """The beats the engine is fed over a run of ``c`` on input ``xq`` (every core segment's
    DOTs in execution order, padding taps not fed): ``(nz, last)``, ``nz`` bools (beats,
    lanes) (the pair is effectual: activation off the zero point, weight non-zero) and
    ``last`` bools (beats,) (the beat ends its DOT)."""
    runs, masks = [], []
    c.run(xq, runs=runs)
    for prog, (x0, _) in zip(c.programs, runs, strict=True):
        m = new_machine(c.cfg, c.params, x0)

        def cost(xd, w):
            masks.append(((np.asarray(xd) != 0) & (np.asarray(w) != 0)).reshape(-1, lanes))
            return 1
        m.dot_cost = cost
        run(m, prog)
    last = [np.arange(len(k)) == len(k) - 1 for k in masks]
    return np.concatenate(masks), np.concatenate(last)


def _effectual(c, prog, x0):
    """Per DOT pc: the effectual pairs (activation off the zero point, weight non-zero) and
    all pairs it fed, summed over a run of ``prog`` from ``x0``."""
    eff, pairs = {}, {}
    m = new_machine(c.cfg, c.params, x0)

    def cost(xd, w):
        nz = (np.asarray(xd) != 0) & (np.asarray(w) != 0)
        eff[m.pc] = eff.get(m.pc, 0) + int(nz.sum())
        pairs[m.pc] = pairs.get(m.pc, 0) + int(nz.size)
        return 1
    m.dot_cost = cost
    run(m, prog)
    return eff, pairs
