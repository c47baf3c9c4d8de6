"""Compile a quantized MLP into the core's memory images and a predicated program.

``compile_mlp(layers, ...)`` takes int8 dense layers (``golden.litert_model.DenseLayer``, from
a .tflite file or ``golden.mlp``), each with its own input zero point, and returns a ``Compiled``:
the machine configuration, the read-only memories (weights, biases, requantizer parameters
in ``single`` mode, LiteRT's FULLY_CONNECTED), the program, and where each layer's input and
output live in the activation memory.

Layout: each layer's input occupies ``ceil(n_in / lanes)`` beats of the activation memory
(padding lanes hold that layer's input zero point), its output follows; weight rows are
padded to whole beats; output channels are numbered across layers in the parameter memory.

Program, per layer (``predicate_blocks=True``):

    SETL in_zp = the layer's input zero point           when it differs from the one before
                                                         (a program starts with the
                                                         machine's, ``x_zero_point``)
    SETP p(1+j) = (activation block j is all zero)       one per block of ``lanes``
    for each output channel o, with accumulator a = o % accs (accs=4 by default):
        LDB acc_a = bias[o]
        [SETP p7 = (row o has no non-zero weight); @!p7 LOOP count=1 body=B]  (dead_channels)
        @!p(1+j) DOT acc_a += x block j . w[o] block j     for each block j
        REQ x[out + o - accs + 1] = requantize(...)    the REQ of channel o - (accs - 1)

so a DOT whose activation block is all zero, or every DOT of a channel whose weights are all
zero, is predicated off. Without predication each channel has one DOT over its whole row
(one per 15 beats, the most a DOT takes, for longer rows).
A channel's REQ is issued after the next ``accs - 1`` channels' DOTs (the accumulators take
turns), so the core's engine latency is hidden behind them. ``order``: a permutation of
each hidden layer's units and of the inputs that puts often-zero units side by side (from
calibration data), so that whole blocks are zero more often; the results are unchanged (the
weights are permuted with them) and ``Compiled.unpermute`` restores the outputs' order.

``compile_sequence(layer, max_steps, ...)``: a variable-length loop. The input holds up to
``max_steps`` steps, each a block with a presence marker in its first padding lane; a LOOP
runs the layer on every step, and the steps past the sequence's length (marker at the zero
point) are predicated off.
"""

from dataclasses import dataclass

import numpy as np

from . import isa
from .isa import ins
from .sequencer import MachineConfig, Params

MAX_BLOCK_PREDICATES = 6  # p1..p6; p7 is the dead-channel predicate
MAX_BEATS = 15  # a DOT's beats field (4 bits); a longer row takes several DOTs


@dataclass
class Compiled:
    cfg: MachineConfig
    params: Params
    program: list
    inputs: tuple  # (address, width) of the network input
    outputs: list  # (address, width) of each layer's output
    perms: list  # per layer, the order of its outputs as stored (None: identity)
    # the activation memory before the input is written: each layer's input block (its
    # padding lanes) at that layer's zero point (None: all at the machine's)
    fill: np.ndarray = None

    def x_image(self, xq):
        """The activation memory's initial contents for one quantized input row."""
        x = (np.full(self.cfg.x_depth, self.cfg.x_zero_point, np.int64) if self.fill is None
             else self.fill.copy())
        a, n = self.inputs
        perm = self.perms[0]
        row = np.asarray(xq, np.int64)
        x[a:a + n] = row if perm is None else row[perm]
        return x

    def layer_output(self, x, k):
        """Layer ``k``'s output (in the model's own order) read from activation memory ``x``."""
        a, n = self.outputs[k]
        out = np.asarray(x[a:a + n])
        perm = self.perms[k + 1]
        if perm is None:
            return out.copy()
        back = np.empty_like(out)
        back[perm] = out
        return back

    def listing(self):
        """The program as assembly text."""
        return "\n".join(isa.disassemble(w) for w in self.program)


def _pad(n, lanes):
    return -(-n // lanes) * lanes


def zero_first_order(acts, zero_point):
    """Units ordered by how often they sit at the zero point (most often first)."""
    p_zero = (np.asarray(acts) == zero_point).mean(axis=0)
    return np.argsort(-p_zero, kind="stable")


def compile_mlp(layers, *, lanes=16, predicate_blocks=True, dead_channels=False,
                calibration=None, perms=None, prog_depth=None, x_depth=256, w_depth=4096,
                channels=64, accs=4, x_zero_point=-128):
    """Compile ``layers`` for a machine that starts a program with activation zero point
    ``x_zero_point`` (a SETL sets each layer's where it differs); ``accs`` accumulators
    take turns (a channel's REQ is issued after the DOTs of the next ``accs - 1``
    channels, hiding the engine's latency);
    ``calibration`` (quantized inputs) enables the zero-first order (not for a block-pruned
    model: it would mix the pruned blocks),
    ``perms`` reuses another compilation's order (an updated model keeps its layout, so a
    weight update is a delta of the weight image).

    Raises ValueError if the layers do not chain, or the model does not fit the memories or
    the program memory.
    """
    if accs not in (1, 2, 3, 4):
        raise ValueError(f"accs must be 1, 2, 3 or 4 (the machine's accumulators), not {accs!r}")
    for k in range(1, len(layers)):
        if layers[k].w.shape[1] != layers[k - 1].w.shape[0]:
            raise ValueError(f"layer {k} takes {layers[k].w.shape[1]} inputs, layer {k - 1} "
                             f"gives {layers[k - 1].w.shape[0]}")
    if perms is not None:
        perms = list(perms)
    else:
        perms = [None] * (len(layers) + 1)
    if calibration is not None and not any(q is not None for q in perms):
        from .mlp import run_int8
        acts = [np.asarray(calibration)] + run_int8(layers, calibration)
        for k in range(len(layers)):  # inputs and hidden units; never the logits
            perms[k] = zero_first_order(acts[k], layers[k].input_zero_point)
    ws = _permuted_weights(layers, perms)

    # memory images
    x_addr, addrs = 0, []
    n_in = layers[0].w.shape[1]
    inputs = (0, n_in)
    x_addr = _pad(n_in, lanes)
    w_flat, bias, mult, shift, ozp, amin, amax = [], [], [], [], [], [], []
    w_addr, ch0, layer_meta = 0, 0, []
    for k, (lay, w) in enumerate(zip(layers, ws, strict=True)):
        n_out, n_in = w.shape
        row = _pad(n_in, lanes)
        padded = np.zeros((n_out, row), np.int64)
        padded[:, :n_in] = w
        w_flat.append(padded.ravel())
        m, s = lay.requant_params()
        order = perms[k + 1] if perms[k + 1] is not None else np.arange(n_out)
        bias += list(lay.bias[order])
        mult += list(m[order])
        shift += list(s[order])
        ozp += [lay.output_zero_point] * n_out
        amin += [lay.act_min] * n_out
        amax += [lay.act_max] * n_out
        in_addr = inputs[0] if k == 0 else addrs[-1][0]
        addrs.append((x_addr, n_out))
        layer_meta.append(dict(in_addr=in_addr, beats=row // lanes, w_addr=w_addr, row=row,
                               ch0=ch0, out_addr=x_addr, n_out=n_out))
        w_addr += padded.size
        ch0 += n_out
        x_addr += _pad(n_out, lanes)
    if x_addr > x_depth or w_addr > w_depth or ch0 > channels:
        raise ValueError(f"the model needs {x_addr} activations, {w_addr} weights and {ch0} "
                         f"channels; the machine has {x_depth}, {w_depth} and {channels}")

    prog, fill = _mlp_program(layers, layer_meta, lanes, x_depth, x_zero_point,
                              (predicate_blocks, dead_channels, accs))
    depth = prog_depth or max(64, 1 << (len(prog) - 1).bit_length())
    if len(prog) > depth:
        raise ValueError(f"the program has {len(prog)} words, prog_depth is {depth}")
    cfg = MachineConfig(lanes=lanes, x_depth=x_depth, w_depth=w_depth, channels=channels,
                        prog_depth=depth, x_zero_point=x_zero_point, mode="single")
    params = Params(w=np.concatenate(w_flat), bias=np.array(bias, np.int64),
                    multiplier=np.array(mult, np.int64), shift=np.array(shift, np.int64),
                    out_zp=np.array(ozp, np.int64), act_min=np.array(amin, np.int64),
                    act_max=np.array(amax, np.int64))
    return Compiled(cfg, params, prog, inputs, addrs, perms, fill)


def _permuted_weights(layers, perms):
    """Each layer's weights with its inputs and outputs in their stored orders."""
    ws = []
    for k, lay in enumerate(layers):
        w = lay.w.astype(np.int64)
        if perms[k] is not None:
            w = w[:, perms[k]]
        if perms[k + 1] is not None:
            w = w[perms[k + 1], :]
        ws.append(w)
    return ws


def _mlp_program(layers, layer_meta, lanes, x_depth, x_zero_point, options):
    """The program (with its HALT) and the activation memory's fill: each layer's input
    block at its zero point, a SETL where the zero point changes. ``options``:
    ``(predicate_blocks, dead_channels, accs)``."""
    prog, zp = [], x_zero_point
    fill = np.full(x_depth, x_zero_point, np.int64)
    for lay, meta in zip(layers, layer_meta, strict=True):
        n_in = meta["beats"] * lanes
        fill[meta["in_addr"]:meta["in_addr"] + n_in] = lay.input_zero_point
        if lay.input_zero_point != zp:
            zp = lay.input_zero_point
            prog.append(ins("SETL", in_zp=zp))
        prog += _layer_program(meta, lanes, *options)
    return prog + [ins("HALT")], fill


def compile_for_core(layers, core, **kw):
    """``compile_mlp`` for the memories of a core configuration (the keyword arguments of
    ``spec.params.core``, e.g. ``spec.configs.CONFIGS["core_ice40"][1]``)."""
    from sparq.spec import params as spec_params

    p = spec_params.core(**core)
    return compile_mlp(layers, lanes=p["lanes"], x_depth=p["x_depth"], w_depth=p["w_depth"],
                       channels=p["channels"], prog_depth=p["prog_depth"],
                       x_zero_point=p["x_zero_point"], **kw)


def _layer_program(meta, lanes, predicate_blocks, dead_channels, accs):
    beats = meta["beats"]
    if predicate_blocks and beats > MAX_BLOCK_PREDICATES:
        raise ValueError(f"a layer of {beats} input blocks needs more than the "
                         f"{MAX_BLOCK_PREDICATES} block predicates")
    prog = []
    if predicate_blocks:
        for j in range(beats):
            prog.append(ins("SETP", pd=1 + j, cmp=isa.CMPS.index("EQ"),
                            src=isa.SRCS.index("XZERO"), addr=meta["in_addr"] + j * lanes,
                            beats=1, imm=1))
    pending = []  # REQs of earlier channels, each issued ``accs - 1`` channels later
    for o in range(meta["n_out"]):
        row = meta["w_addr"] + o * meta["row"]
        a = o % accs  # accumulators take turns: a REQ waits for its channel's last DOT
        prog.append(ins("LDB", acc=a, ch=meta["ch0"] + o))
        chunks = [(j, min(MAX_BEATS, beats - j)) for j in range(0, beats, MAX_BEATS)]
        if dead_channels:  # a LOOP once over the DOTs, skipped when the row is all zero
            n_dots = beats if predicate_blocks else len(chunks)
            prog += [ins("SETP", pd=7, cmp=isa.CMPS.index("EQ"), src=isa.SRCS.index("WNNZ"),
                         addr=row, beats=beats, imm=0),
                     ins("LOOP", pred=7, neg=1, count=1, body=n_dots)]
        if predicate_blocks:
            for j in range(beats):
                prog.append(ins("DOT", pred=1 + j, neg=1, acc=a,
                                xaddr=meta["in_addr"] + j * lanes, waddr=row + j * lanes,
                                beats=1))
        else:  # the whole row in one DOT (or one per 15 beats)
            prog += [ins("DOT", acc=a, xaddr=meta["in_addr"] + j * lanes, waddr=row + j * lanes,
                         beats=n) for j, n in chunks]
        pending.append(ins("REQ", acc=a, ch=meta["ch0"] + o, oaddr=meta["out_addr"] + o))
        if len(pending) == accs:
            prog.append(pending.pop(0))
    prog += pending
    return prog


def compile_sequence(layer, max_steps, *, lanes=16, x_depth=256, w_depth=4096, channels=64,
                     prog_depth=64, x_zero_point=-128):
    """A LOOP over up to ``max_steps`` steps of one dense layer (see the module docstring).

    Returns ``(Compiled, step_block)``: step ``t``'s input starts at ``t * step_block``; its
    presence marker is at ``t * step_block + n_in`` (any value but the zero point: present).
    Outputs of step ``t`` are at ``outputs[0][0] + t * n_out``.
    """
    n_out, n_in = layer.w.shape
    block = _pad(n_in + 1, lanes)
    beats = block // lanes
    zp = layer.input_zero_point
    out0 = _pad(max_steps * block, lanes)
    body = 1 + n_out * 3
    if body > 255 or out0 + max_steps * n_out > x_depth:
        raise ValueError(f"{n_out} outputs over {max_steps} steps do not fit one loop body "
                         f"or x_depth={x_depth}")
    w = np.zeros((n_out, block), np.int64)
    w[:, :n_in] = layer.w  # the marker lane's weight is 0
    m, s = layer.requant_params()
    prog = [ins("SETL", in_zp=zp)] if zp != x_zero_point else []
    prog += [ins("LOOP", count=max_steps, body=body, xstride=block, ostride=n_out),
            ins("SETP", pd=1, cmp=isa.CMPS.index("EQ"), src=isa.SRCS.index("X"), ai=1,
                addr=n_in, beats=1, imm=zp)]
    for o in range(n_out):
        prog += [ins("LDB", pred=1, neg=1, acc=0, ch=o),
                 ins("DOT", pred=1, neg=1, acc=0, xi=1, xaddr=0, waddr=o * block, beats=beats),
                 ins("REQ", pred=1, neg=1, acc=0, ch=o, oi=1, oaddr=out0 + o)]
    prog.append(ins("HALT"))
    cfg = MachineConfig(lanes=lanes, x_depth=x_depth, w_depth=w_depth, channels=channels,
                        prog_depth=max(prog_depth, 1 << (len(prog) - 1).bit_length()),
                        x_zero_point=x_zero_point, mode="single")
    params = Params(w=w.ravel(), bias=layer.bias.astype(np.int64), multiplier=m, shift=s,
                    out_zp=np.full(n_out, layer.output_zero_point),
                    act_min=np.full(n_out, layer.act_min), act_max=np.full(n_out, layer.act_max))
    fill = np.full(x_depth, x_zero_point, np.int64)
    fill[:max_steps * block] = zp
    return Compiled(cfg, params, prog, (0, max_steps * block), [(out0, max_steps * n_out)],
                    [None, None], fill), block
