"""``make bench``: the project's measured figures, in build/reports/bench.json, and plots.

Each section is a function that returns a JSON-able dict; ``python -m sim.bench [SECTION]``
runs all sections (or the named ones) and merges them into bench.json. Plots are written to
build/reports/ and copied to docs/img/ (the docs show them).

Sections:
- ``requant``: every requantizer configuration co-simulated on the default simulator (vectors,
  mismatches, results per cycle under continuous valid/ready), the RTL against LiteRT's
  reference kernels on every accumulator of the digits MLP (``litert_bitexact``: k/n
  outputs), and the prepost error against exact rounding as the multiplier width varies.
"""

import argparse
import json
import os
import pathlib
import shutil
import tempfile
import time

import numpy as np

from golden.data import digits_split
from golden.layers import fc_accumulators
from golden.litert_model import quantize_input, read_dense_layers, run_reference
from golden.qparams import derive_prepost, prepost_error_bound
from golden.requant import requantize
from hw.export import CONFIGS
from sim.requant_stim import digits_vectors
from sim.runner import BUILD, ROOT, default_simulator, run

FIXTURES = ROOT / "tests" / "fixtures"
REPORTS = BUILD / "reports"
DOC_IMG = ROOT / "docs" / "img"
SEED = int(os.environ.get("SPARQ_SEED", "20261123"))


def _log(msg):
    print(f"[bench] {msg}", flush=True)


def _rtl_on_digits(name, fixture, x_test, sim):
    mode = CONFIGS[name][1]["mode"]
    vectors, litert = digits_vectors(FIXTURES / fixture, x_test, mode)
    with tempfile.TemporaryDirectory() as tmp:
        vfile, ofile = pathlib.Path(tmp) / "v.json", pathlib.Path(tmp) / "o.npy"
        vfile.write_text(json.dumps(vectors))
        run(name, "tb_requant", sim=sim, seed=SEED, tag="digits",
            extra=dict(vectors_file=str(vfile), outputs_file=str(ofile)))
        got = np.load(ofile)
    return int((got == litert).sum()), int(litert.size)


def prepost_sweep(x_test, m_bits_list=range(4, 21), x_bits=18):
    """prepost on the digits FC model, each layer fed LiteRT's input: outputs that differ
    from LiteRT (exactly rounded) and the largest stated bound, per multiplier width."""
    path = FIXTURES / "digits_mlp_fc.tflite"
    x = quantize_input(path, x_test)
    refs = run_reference(path, x)
    layers = read_dense_layers(path)
    rows = []
    for m_bits in m_bits_list:
        differ = total = worst = 0
        bound_max = 0.0
        a = x
        for layer, ref in zip(layers, refs, strict=True):
            acc = fc_accumulators(a, layer.w, layer.bias, input_zero_point=layer.input_zero_point)
            acc_bound = int(np.abs(acc).max())
            scales = layer.effective_scales()
            params = [derive_prepost(float(s), acc_bound=acc_bound, m_bits=m_bits,
                                     x_bits=x_bits) for s in scales]
            bound_max = max(bound_max, *(prepost_error_bound(float(s), *p, acc_bound=acc_bound)
                                         for s, p in zip(scales, params, strict=True)))
            m, pre, post = (np.array(v) for v in zip(*params, strict=True))
            out = requantize(acc, multiplier=m, pre=pre, post=post, mode="prepost",
                             output_zero_point=layer.output_zero_point, act_min=layer.act_min,
                             act_max=layer.act_max, m_bits=m_bits, x_bits=x_bits)
            diff = np.abs(out.astype(int) - ref.astype(int))
            differ, total = differ + int((diff > 0).sum()), total + diff.size
            worst = max(worst, int(diff.max()))
            a = ref
        rows.append(dict(m_bits=m_bits, x_bits=x_bits, outputs=total, differ=differ,
                         max_abs_diff=worst, bound=round(bound_max, 4)))
    return rows


def _plot_prepost(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    mb = [r["m_bits"] for r in rows]
    ax.semilogy(mb, [max(r["differ"], 0.5) / r["outputs"] for r in rows], "o-",
                label="outputs differing from LiteRT")
    ax.set_xlabel("prepost multiplier width m_bits (x_bits = 18)")
    ax.set_ylabel("share of int8 outputs")
    ax2 = ax.twinx()
    ax2.plot(mb, [r["bound"] for r in rows], "s--", color="tab:red", label="stated bound")
    ax2.plot(mb, [r["max_abs_diff"] for r in rows], "x:", color="tab:green",
             label="largest |difference|")
    ax2.set_ylabel("error (output steps)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right", fontsize=8)
    ax.set_title("prepost on the digits MLP (20,880 outputs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_requant():
    sim = default_simulator()
    _, x_test, _, _ = digits_split()
    per_config, vectors, mismatches, rpc = {}, 0, 0, []
    for name in (n for n in CONFIGS if n.startswith("requant_")):
        _log(f"requant: {name} on {sim}, 20000 vectors")
        rep = run(name, "tb_requant", sim=sim, vectors=20_000, seed=SEED)
        per_config[name] = {k: rep[k] for k in ("vectors", "mismatches", "cycles",
                                                "results_per_cycle", "latency")}
        vectors += rep["vectors"]
        mismatches += rep["mismatches"]
        rpc.append(rep["results_per_cycle"])
    exact = total = 0
    litert = {}
    for name, fixture in (("requant_single", "digits_mlp_fc.tflite"),
                          ("requant_tflite", "digits_mlp_conv1x1.tflite")):
        _log(f"requant: {name} RTL against LiteRT ({fixture})")
        k, n = _rtl_on_digits(name, fixture, x_test, sim)
        litert[name] = f"{k}/{n}"
        exact, total = exact + k, total + n
    _log("requant: prepost error sweep")
    sweep = prepost_sweep(x_test)
    img = REPORTS / "requant_prepost_error.png"
    _plot_prepost(sweep, img)
    DOC_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copy(img, DOC_IMG / img.name)
    return dict(vectors=vectors, mismatches=mismatches, results_per_cycle=min(rpc),
                litert_bitexact=f"{exact}/{total}", litert_by_config=litert,
                simulator=sim, seed=SEED, configs=per_config, prepost_error=sweep)


SECTIONS = {"requant": bench_requant}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sections", nargs="*", help=f"sections (default: all of {list(SECTIONS)})")
    args = ap.parse_args(argv)
    REPORTS.mkdir(parents=True, exist_ok=True)
    out = REPORTS / "bench.json"
    report = json.loads(out.read_text()) if out.exists() else {}
    for name in args.sections or SECTIONS:
        if name not in SECTIONS:
            ap.error(f"unknown section {name!r}; known: {', '.join(SECTIONS)}")
        t0 = time.time()
        report[name] = SECTIONS[name]()
        _log(f"{name} done in {time.time() - t0:.0f} s")
        out.write_text(json.dumps(report, indent=1) + "\n")
    _log(f"wrote {out}")


if __name__ == "__main__":
    main()
