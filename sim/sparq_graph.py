"""``sparq compile`` / ``sparq run`` for convolutional graphs (``golden.graph_compiler``).

A model with ops besides FULLY_CONNECTED is compiled for a configuration with the
convolution extensions (``spec.configs``: the first the model fits, or the one named).
``run`` prints the classes and the cycles per input and checks every op's output against
LiteRT's reference kernels: on the golden model and the core model's cycles, or with
``--rtl`` on the Core's RTL (``sim.graph_run``: every op read back, the whole program's
cycles checked against the core model's).
"""

import json
import time

import numpy as np

EXIT_OK, EXIT_MISMATCH = 0, 1


def is_graph(model):
    """The .tflite ``model`` is not an MLP the shipped cores run (its dense layers, which
    ``golden.litert_model.read_dense_layers`` reads, skipping a RESHAPE or SOFTMAX) but a
    graph ``golden.tflite_graph.read_graph`` reads; ValueError (the graph reader's) if it
    is neither."""
    from sparq.golden.litert_model import read_dense_layers
    from sparq.golden.tflite_graph import read_graph

    try:
        read_dense_layers(model)
        return False
    except ValueError:
        read_graph(model)
        return True


def conv_configs():
    """The configurations with the convolution extensions, by name."""
    from sparq.spec.configs import CONFIGS, PLANNED

    return {n: p for n, (block, p) in {**CONFIGS, **PLANNED}.items()
            if block == "Core" and p.get("conv")}


def load(model, config, usage):
    """``(name, core parameters, CompiledGraph)``: the configuration asked for, or the
    first convolution configuration the model fits; ``usage(msg)`` makes the error."""
    from sparq.golden.graph_compiler import compile_graph
    from sparq.golden.sequencer import MachineConfig

    names = [config] if config else list(conv_configs())
    errors = []
    for name in names:
        core = conv_configs().get(name)
        if core is None:
            raise usage(f"{model} is a convolutional graph; configuration {name} has no "
                        f"convolution extensions (those that do: {', '.join(conv_configs())})")
        try:
            return name, core, compile_graph(model, MachineConfig.of(core))
        except ValueError as e:
            errors.append(f"{name}: {e}")
    raise usage(f"{model} does not fit: " + "; ".join(errors))


def inputs(path, c, usage):
    """The int8 inputs of ``path`` (.npy) in the graph input's shape: int8 as they are,
    float quantized with the input's scale and zero point."""
    t = c.graph.t(c.graph.inputs[0])
    try:
        x = np.load(path)
    except (OSError, ValueError) as e:
        raise usage(f"cannot read inputs {path}: {e}") from None
    size = int(np.prod(t.shape[1:]))
    if x.size == 0 or x.size % size:
        raise usage(f"inputs of shape {x.shape} are not rows of the model's input "
                    f"{tuple(t.shape[1:])} ({size} values each)")
    x = x.reshape(-1, *t.shape[1:])
    if x.dtype == np.int8:
        return x
    if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
        raise usage(f"inputs are {x.dtype} or not finite: give float inputs (quantized here "
                    "with the model's input scale and zero point) or int8 ones")
    return np.clip(np.round(x / t.s) + t.zp, -128, 127).astype(np.int8)


def cmd_compile(args, out, usage):
    name, _, c = load(args.model, args.config, usage)
    from sparq.golden import isa

    parts = []
    for k, prog in enumerate(c.programs):  # (a host op between core ops splits the program)
        if len(c.programs) > 1:
            parts.append(f"# part {k + 1} of {len(c.programs)}")
        parts += [isa.disassemble(w) for w in prog]
    (out / "program.s").write_text("\n".join(parts) + "\n")
    np.save(out / "weights.npy", c.params.w.astype(np.int8))
    prm = {k: getattr(c.params, k).tolist() for k in
           ("bias", "multiplier", "shift", "out_zp", "act_min", "act_max")}
    host = {s.op.index: s.note or f"{s.op.kind} on the host" for s in c.segments
            if s.host and s.op.kind != "RESHAPE"}  # (a RESHAPE is an alias: nothing runs)
    (out / "layout.json").write_text(json.dumps(dict(
        config=name, machine=vars(c.cfg), params=prm, buffers=c.buffers, strips=c.strips,
        host_ops=host, programs=[[int(w) for w in p] for p in c.programs]), indent=1))
    words = sum(len(p) for p in c.programs)
    print(f"{args.model}: {len(c.graph.ops)} ops for {name}, {words} instructions, "
          f"{c.params.w.size} weight bytes, {c.params.bias.size} channels -> {out}/program.s, "
          f"weights.npy, layout.json")
    for k, note in host.items():
        print(f"  op {k}: {note}")
    return EXIT_OK


def cmd_run(args, usage, say):
    from sparq.golden.tflite_graph import run_litert

    name, core, c = load(args.model, args.config, usage)
    xq = inputs(args.inputs, c, usage)
    if args.rtl:
        from sparq.sim.graph_run import core_segments
        try:
            core_segments(c)  # (a program in parts: refused before anything runs)
        except ValueError as e:
            raise usage(str(e)) from None
    t0 = time.time()
    ref = None if args.no_litert else run_litert(args.model, xq)
    status = EXIT_OK
    if args.rtl:
        golden, (tensors, cycles, differ) = _rtl(args, (name, core, c), xq, say)
        for line in differ:
            say(f"MISMATCH between the RTL and the golden model: {line}")
        status = EXIT_MISMATCH if differ else status
    else:
        golden = _golden(c, core, xq, say)
        tensors, cycles = [t for t, _, _ in golden], [k for _, k, _ in golden]
    if ref is not None:
        bad = {op.index for op in c.graph.ops for n in range(len(xq)) if not np.array_equal(
            tensors[n][op.outputs[0]].reshape(-1), ref[op.outputs[0]][n].reshape(-1))}
        if bad:
            say(f"MISMATCH against LiteRT in ops {sorted(bad)}")
            status = EXIT_MISMATCH
        else:
            print(f"every op equals LiteRT's reference kernels on {len(xq)} inputs"
                  f"{' (RTL)' if args.rtl else ''}")
    outs = np.array([t[c.graph.outputs[0]].reshape(-1) for t in tensors])
    print(f"classes: {outs.argmax(axis=1).tolist()[:32]}{' ...' if len(xq) > 32 else ''}")
    print(f"cycles per input: {np.mean(cycles):.1f} ({'RTL' if args.rtl else 'core model'}, "
          f"{name}); {time.time() - t0:.1f} s")
    for s in c.segments:
        if s.host is not None and s.op.kind != "RESHAPE":
            print(f"  op {s.op.index} ({s.op.kind}) {s.note or 'on the host'}")
    if args.out:
        np.save(args.out, outs.astype(np.int8))
        print(f"wrote {args.out}")
    return status


def _golden(c, core, xq, say):
    """Per input row ``graph_run.golden_row``: every op's output on the golden model, the
    core model's cycles (the whole program's, and each op's run alone)."""
    from sparq.sim.graph_run import golden_row

    out, t0 = [], time.time()
    for n, row in enumerate(xq):
        out.append(golden_row(c, core, row))
        say(f"golden model: {n + 1}/{len(xq)} inputs ({time.time() - t0:.0f} s)")
    return out


def _rtl(args, config, xq, say):
    """The golden model's ``_golden`` and, beside it (``graph_run.run_graph_beside``), every
    op's outputs and the cycles on the RTL, and where they differ from the golden model
    (``graph_run.differences``)."""
    from sparq.sim.graph_run import differences, run_graph_beside

    name, core, c = config
    say(f"running {len(xq)} inputs on the RTL core {name} ({args.sim}): the whole program, "
        "then op by op, beside the golden model ...")
    golden, (res, _) = run_graph_beside(lambda: _golden(c, core, xq, say), name, c, xq,
                                        sim=args.sim, tag="cli")
    differ = differences(c, res, golden)
    if not differ:
        print(f"the RTL equals the golden model on every op, and its cycles the core "
              f"model's (the whole program and each op alone), on {len(xq)} inputs")
    return golden, ([r["tensors"] for r in res], [r["cycles"] for r in res], differ)
