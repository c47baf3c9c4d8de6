"""Run a compiled network on the Core's RTL (cocotb ``tb_core``) and read the results back.

``core_job`` turns a ``golden.compiler.Compiled`` and quantized input rows into the
testbench's job (weights as delta records from an all-zero bank, parameters, program,
activation-memory images, the addresses to read back); ``run_core`` runs it on a Core
configuration and returns, per image, every layer's output (in the model's order) and the
core's counters; ``throughput`` reads a run's simulation speed from its report.
"""

import json

import numpy as np

from sparq.golden import delta_apply as golden_delta_apply
from sparq.sim.runner import BUILD, run


def weight_records(old, new):
    return [dict(op=op, arg=arg) for op, arg in golden_delta_apply.records_for(old, new)]


def weight_image(compiled):
    """The weight bank's image of a compiled model: its weights, zeros to the bank's depth."""
    w = np.zeros(compiled.cfg.w_depth, np.int64)
    w[:compiled.params.w.size] = compiled.params.w
    return w


def bit_exact_images(results, ref):
    """How many images' every layer equals the reference (``ref[k][n]``: layer k, image n)."""
    return sum(all(np.array_equal(r["layers"][k], ref[k][n]) for k in range(len(ref)))
               for n, r in enumerate(results))


def top1_accuracy(results, y):
    """Top-1 accuracy in percent of the last layer's outputs of ``run_core``'s results."""
    return 100.0 * float(np.mean(np.array([r["layers"][-1].argmax() for r in results])
                                 == np.asarray(y)))


def core_job(compiled, xq_rows, *, updates=None, max_cycles=None):
    """The testbench's job for an MLP (``golden.compiler.Compiled``): one pass of its
    program per input row, every layer's outputs read back; ``max_cycles``: how long an
    image may keep the core busy before the testbench gives up (its default, 200,000
    cycles, when None). Returns (job, the weight bank's image)."""
    c = compiled
    first = c.outputs[0][0]
    last = c.outputs[-1][0] + c.outputs[-1][1]
    job = make_job(c.params, c.cfg.w_depth, [c.program],
                   [[dict(program=0, read=list(range(first, last)))]],
                   [c.x_image(row) for row in xq_rows], updates=updates, max_cycles=max_cycles)
    return job, weight_image(c)


def make_job(params, w_depth, programs, passes, images, *, updates=None, max_cycles=None):
    """The testbench's job (``sim.tb_core``): the weights ``params.w`` (records from an
    all-zero bank of ``w_depth``), the channels' parameters, ``programs`` (word lists), the
    ``passes`` to run on each activation-memory image of ``images`` (a pass: steps
    ``dict(program=index, read=addresses)``), ``updates`` (image index -> delta records to
    stream after it)."""
    w = np.zeros(w_depth, np.int64)
    w[:params.w.size] = params.w.ravel()
    chans = [dict(ch=ch, p=dict(bias=int(params.bias[ch]),
                                multiplier=int(params.multiplier[ch]),
                                shift=int(params.shift[ch]),
                                output_zero_point=int(params.out_zp[ch]),
                                act_min=int(params.act_min[ch]), act_max=int(params.act_max[ch])))
             for ch in range(len(params.bias))]
    job = dict(records=weight_records(np.zeros_like(w), w), params=chans,
               programs=[[int(v) for v in p] for p in programs], passes=passes,
               images=[[int(v) for v in image] for image in images], updates=updates or {})
    if max_cycles is not None:
        job["max_cycles"] = int(max_cycles)
    return job


def run_job(name, job, *, sim=None, seed=1, idle=0.2, tag="run", **run_kw):
    """Run ``job`` on configuration ``name``'s RTL (``sim.tb_core``). Returns (per image,
    the list of its steps' results: ``outputs`` read back and the core's counters; the
    testbench's report). ``run_kw`` goes to ``sim.runner.run`` (a gate-level netlist as
    ``sources``, its ``defines`` and ``meta``; ``waves``)."""
    folder = BUILD / "given" / "core" / f"{name}-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    job_file, out_file = folder / "job.json", folder / "results.json"
    job_file.write_text(json.dumps(job))
    out_file.unlink(missing_ok=True)
    rep = run(name, "tb_core", sim=sim, vectors=len(job["images"]), seed=seed, idle=idle,
              stall=0.0, tag=tag, extra=dict(core_file=str(job_file),
                                             outputs_file=str(out_file)), **run_kw)
    return json.loads(out_file.read_text()), rep


def run_core(name, compiled, xq_rows, *, updates=None, max_cycles=None, **run_kw):
    """Run an MLP's input rows (``core_job``); returns (per image a dict: ``layers``
    (outputs per layer) and the counters; the testbench report). ``run_kw`` as
    ``run_job``'s."""
    job, _ = core_job(compiled, xq_rows, updates=updates, max_cycles=max_cycles)
    steps, rep = run_job(name, job, **run_kw)
    first = job["passes"][0][0]["read"][0]
    results = []
    for (r,) in steps:
        x = np.full(compiled.cfg.x_depth, compiled.cfg.x_zero_point, np.int64)
        x[first:first + len(r["outputs"])] = r["outputs"]
        r["layers"] = [compiled.layer_output(x, k) for k in range(len(compiled.outputs))]
        results.append(r)
    return results, rep


def throughput(rep):
    """A ``run_core`` run's simulation speed, from its report: ``clock_cycles`` (simulated
    clock cycles of the whole test), ``wall_seconds`` (wall-clock seconds of the test body,
    the build and the simulator's start-up left out) and ``cycles_per_second``, their
    ratio."""
    cycles, wall = int(rep["clock_cycles"]), float(rep["wall_seconds"])
    return dict(clock_cycles=cycles, wall_seconds=wall,
                cycles_per_second=round(cycles / wall, 1) if wall > 0 else None)
