"""The MLPerf Tiny keyword spotter (``tests/fixtures/mlperf_tiny/kws_ref_model.tflite``, DS-CNN,
Apache 2.0) on the ``core_kws`` RTL: the shipped real input (class 5), random int8 inputs
and, on request, structured ones (all at the input's zero point, all saturated high, all
saturated low). Every op's output is read back (``sim.graph_run``) and compared with the
golden model's and with LiteRT's reference kernels'; the cycles of the whole program (and of
each op run alone) with the core model's. ``make sim`` runs it after the digits MLP.
"""

import time

import numpy as np

from sparq.sim.runner import ROOT

FOLDER = ROOT / "tests" / "fixtures" / "mlperf_tiny"
MODEL = FOLDER / "kws_ref_model.tflite"
CONFIG = "core_kws"
REAL_CLASS = 5  # the real input's class (the reference output's argmax)


def inputs(rng, n_random, *, structured=False):
    """The real input, ``n_random`` random int8 ones and, with ``structured``, the three
    structured ones; int8 rows (N, 49, 10, 1)."""
    from sparq.golden.tflite_graph import read_graph

    real = np.load(FOLDER / "kws_input.npy").astype(np.int8)
    shape = real.shape[1:]
    rows = [real[0], *rng.integers(-128, 128, (n_random, *shape))]
    if structured:
        g = read_graph(MODEL)
        rows += [np.full(shape, g.t(g.inputs[0]).zp), np.full(shape, 127),
                 np.full(shape, -128)]
    return np.array(rows, np.int8)


def run(rows, *, sim, seed, say=print):
    """The rows on the RTL (the first must be the real input). Returns the report: inputs,
    ops checked, how many inputs equal the golden model (every op, and the cycles the core
    model's: ``graph_run.differences``) and LiteRT (every op), cycles per input (RTL) and
    the core model's, classes, ``pass``."""
    from sparq.golden.graph_compiler import compile_graph
    from sparq.golden.sequencer import MachineConfig
    from sparq.golden.tflite_graph import run_litert
    from sparq.sim.graph_run import differences, golden_row, run_graph_beside
    from sparq.spec.configs import CONFIGS

    core = CONFIGS[CONFIG][1]
    c = compile_graph(MODEL, MachineConfig.of(core))
    t0 = time.time()
    say(f"keyword spotter: {len(rows)} inputs on the RTL ({sim}: the whole program, then op "
        "by op) beside the golden model and LiteRT")

    # (LiteRT first, before the simulator's thread starts: that thread's runner sets
    # environment variables, which C code must not read at the same time)
    ref = run_litert(MODEL, rows)
    say(f"keyword spotter: LiteRT done ({time.time() - t0:.0f} s)")

    def reference():
        golden = [golden_row(c, core, row) for row in rows]
        say(f"keyword spotter: golden model done ({time.time() - t0:.0f} s)")
        return golden
    golden, (res, rep) = run_graph_beside(reference, CONFIG, c, rows, sim=sim, seed=seed,
                                          tag="kws")
    differ = differences(c, res, golden)
    litert_ok = sum(all(np.array_equal(r["tensors"][op.outputs[0]].reshape(-1),
                                       ref[op.outputs[0]][n].reshape(-1)) for op in c.graph.ops)
                    for n, r in enumerate(res))
    cycles = [r["cycles"] for r in res]
    classes = [int(r["output"].argmax()) for r in res]
    ok = not differ and litert_ok == len(rows) and classes[0] == REAL_CLASS
    return dict(config=CONFIG, simulator=sim, inputs=len(rows), ops=len(c.graph.ops),
                golden_and_model=f"{len(rows) - len(differ)}/{len(rows)}",
                bit_exact_litert=f"{litert_ok}/{len(rows)}", differences=differ,
                cycles=cycles, model_cycles=[k for _, k, _ in golden],
                op_cycles_alone=res[0]["op_cycles"], classes=classes,
                real_class=classes[0], simulated_cycles=int(rep["clock_cycles"]),
                wall_seconds=round(time.time() - t0, 1), **{"pass": bool(ok)})
