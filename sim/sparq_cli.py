"""``sparq``: compile an int8 .tflite model for the core and run it on the core model or the RTL.

    sparq compile model.tflite -o build/mymodel        memory images, program, listing
    sparq run model.tflite inputs.npy                   the golden core model
    sparq run model.tflite inputs.npy --rtl             the Core's RTL (cocotb, Verilator)
    sparq run model.tflite inputs.npy --config core_ice40   the iCE40 UP5K configuration

An MLP (FULLY_CONNECTED layers) runs on the shipped cores (default ``core``); a
convolutional graph (the MLPerf Tiny keyword spotter, say) on a configuration with the
convolution extensions (``core_kws``: the golden model and the core model; ``sim.sparq_graph``).

``inputs.npy``: float inputs (batch, features), quantized with the model's input scale and
zero point, or int8 inputs used as they are. ``run`` prints the predicted classes and the
cycles, checks every layer's output against LiteRT's reference kernels (``--no-litert`` to
skip) and writes the int8 outputs to ``--out`` (.npy). Exit codes: 0 done; 1 a mismatch; 2
bad usage or an unsupported model (the message says what is wrong).
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


class _Usage(Exception):
    pass


def _say(msg):
    print(f"sparq: {msg}", file=sys.stderr, flush=True)


def _load(model, predicate_blocks, calibration=None, config="core"):
    from sparq.golden import compiler
    from sparq.golden.litert_model import read_dense_layers
    from sparq.spec.configs import CONFIGS

    try:
        layers = read_dense_layers(model)
    except (OSError, ValueError) as e:
        raise _Usage(f"cannot use {model}: {e}") from None
    for k, lay in enumerate(layers):
        if lay.op != "FULLY_CONNECTED":
            raise _Usage(f"layer {k} of {model} is {lay.op}; the core runs FULLY_CONNECTED "
                         "layers (its FC reference is the single-rounding requantizer)")
    try:
        return layers, compiler.compile_for_core(layers, CONFIGS[config][1],
                                                 predicate_blocks=predicate_blocks,
                                                 calibration=calibration)
    except ValueError as e:
        hint = " (try --no-predicates)" if "block predicates" in str(e) else ""
        raise _Usage(f"{model} does not fit the core configuration {config}: {e}{hint}") \
            from None


def _inputs(path, layers):
    from sparq.golden.mlp import quantize_input

    try:
        x = np.load(path)
    except (OSError, ValueError) as e:
        raise _Usage(f"cannot read inputs {path}: {e}") from None
    x = np.atleast_2d(x)
    if x.ndim != 2 or not len(x):
        raise _Usage(f"inputs must be an array of rows (inputs, features) with at least one "
                     f"row, not of shape {x.shape}")
    if x.shape[1] != layers[0].w.shape[1]:
        raise _Usage(f"inputs have {x.shape[1]} features, the model takes "
                     f"{layers[0].w.shape[1]}")
    if x.dtype == np.int8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise _Usage(f"inputs are {x.dtype}: give float inputs (quantized here with the "
                     "model's input scale and zero point) or int8 ones (used as they are)")
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        raise _Usage(f"inputs hold {len(bad)} values that are not finite numbers (the first "
                     f"at row {bad[0][0]}, feature {bad[0][1]})")
    return quantize_input(layers, x)


def _folder(path, what):
    """Make the folder ``path`` (and its parents); a clear error if it cannot be made."""
    path = pathlib.Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _Usage(f"cannot make the {what} {path}: {e.strerror}") from None
    return path


def _graph(args):
    """The model is a convolutional graph (``sim.sparq_graph``); an MLP gets ``core``
    unless a configuration was named."""
    from sparq.sim import sparq_graph

    try:
        graph = sparq_graph.is_graph(args.model)
    except (OSError, ValueError) as e:
        raise _Usage(f"cannot use {args.model}: {e}") from None
    if not graph:
        args.config = args.config or "core"
        if args.config in sparq_graph.conv_configs():
            raise _Usage(f"{args.config} runs convolutional graphs; {args.model} is an MLP: "
                         "use a shipped core (core, core_ice40, core_dense)")
    return graph


def cmd_compile(args):
    out = _folder(args.out, "output folder")
    if _graph(args):
        from sparq.sim import sparq_graph
        return sparq_graph.cmd_compile(args, out, _Usage)
    layers, c = _load(args.model, not args.no_predicates, config=args.config)
    (out / "program.s").write_text(c.listing() + "\n")
    np.save(out / "weights.npy", c.params.w.astype(np.int8))
    prm = {k: getattr(c.params, k).tolist() for k in
           ("bias", "multiplier", "shift", "out_zp", "act_min", "act_max")}
    (out / "layout.json").write_text(json.dumps(dict(
        machine=vars(c.cfg), params=prm, inputs=c.inputs, outputs=c.outputs,
        program=[int(w) for w in c.program]), indent=1))
    print(f"{args.model}: {len(layers)} layers, {len(c.program)} instructions, "
          f"{c.params.w.size} weight bytes -> {out}/program.s, weights.npy, layout.json")
    return EXIT_OK


def cmd_run(args):
    if _graph(args):
        from sparq.sim import sparq_graph
        return sparq_graph.cmd_run(args, _Usage, _say)
    return _run_mlp(args)


def _run_mlp(args):
    from sparq.golden import core as golden_core
    from sparq.golden.litert_model import run_reference
    from sparq.spec.configs import CONFIGS

    if args.out:  # checked before the run, which may be a long simulation
        if pathlib.Path(args.out).is_dir():
            raise _Usage(f"--out {args.out} is a folder; give a file name (.npy)")
        _folder(pathlib.Path(args.out).parent, "folder of --out")
    layers, c = _load(args.model, not args.no_predicates, config=args.config)
    xq = _inputs(args.inputs, layers)
    t0 = time.time()
    if args.rtl:
        from sparq.sim.core_run import run_core
        _say(f"running {len(xq)} inputs on the RTL core ({args.sim}) ...")
        res, _ = run_core(args.config, c, xq, sim=args.sim, tag="cli")
        outs = [np.array([r["layers"][k] for r in res]) for k in range(len(layers))]
        cycles = np.array([r["cycles"] for r in res])
    else:
        outs = [np.zeros((len(xq), lay.w.shape[0]), np.int64) for lay in layers]
        cycles = np.zeros(len(xq), np.int64)
        for n, row in enumerate(xq):
            cycles[n], m = golden_core.predict_cycles(c, row, **CONFIGS[args.config][1])
            for k in range(len(layers)):
                outs[k][n] = c.layer_output(m.x, k)
            if (n + 1) % 100 == 0:
                _say(f"{n + 1}/{len(xq)} inputs")
    status = EXIT_OK
    if not args.no_litert:
        ref = run_reference(args.model, xq)
        bad = [k for k in range(len(layers)) if not np.array_equal(outs[k], ref[k])]
        if bad:
            _say(f"MISMATCH against LiteRT in layers {bad}")
            status = EXIT_MISMATCH
        else:
            print(f"every layer equals LiteRT's reference kernels on {len(xq)} inputs")
    print(f"classes: {outs[-1].argmax(axis=1).tolist()[:32]}"
          f"{' ...' if len(xq) > 32 else ''}")
    print(f"cycles per input: {cycles.mean():.1f} ({'RTL' if args.rtl else 'core model'}); "
          f"{time.time() - t0:.1f} s")
    if args.out:
        np.save(args.out, outs[-1].astype(np.int8))
        print(f"wrote {args.out}")
    return status


def _config_option(p):
    from sparq.spec.configs import CONFIGS, PLANNED

    cores = [name for name, (block, _) in {**CONFIGS, **PLANNED}.items() if block == "Core"]
    p.add_argument("--config", default=None, choices=cores,
                   help="the core configuration (spec.configs; an MLP: default core, the "
                   "ECP5 one; core_ice40: 4 lanes, 2 multipliers, fits the iCE40 UP5K; a "
                   "convolutional graph: the first configuration with the convolution "
                   "extensions that it fits, core_kws)")


def parser():
    ap = argparse.ArgumentParser(prog="sparq", description=__doc__.splitlines()[0],
                                 epilog="exit codes: 0 done, 1 mismatch, 2 usage or model")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("compile", help="memory images and the predicated program")
    p.add_argument("model")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--no-predicates", action="store_true", help="no block predication")
    _config_option(p)
    p.set_defaults(func=cmd_compile)
    p = sub.add_parser("run", help="run inputs on the core model or the RTL")
    p.add_argument("model")
    p.add_argument("inputs", help=".npy, float (quantized here) or int8")
    p.add_argument("--rtl", action="store_true", help="on the Core's RTL (cocotb)")
    p.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    p.add_argument("--no-predicates", action="store_true")
    p.add_argument("--no-litert", action="store_true", help="skip the LiteRT check")
    p.add_argument("--out", help="write the last layer's int8 outputs (.npy)")
    _config_option(p)
    p.set_defaults(func=cmd_run)
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except _Usage as e:
        _say(f"error: {e}")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
