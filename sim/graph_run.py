"""Run a compiled convolutional graph (``golden.graph_compiler.CompiledGraph``) on the Core's
RTL (cocotb ``sim.tb_core``) and read every op's output back.

Each input row runs in two passes, each starting from the row's activation-memory image:

1. the whole program, as a deployed core runs it: its cycles are the inference's, and the
   last core op's output is read back;
2. with ``layers``, op by op: each core op's segment (its program and HALT) is loaded and
   run on the memory the one before left, and its output buffer is read back (buffers are
   reused once dead, so the whole run leaves only the last ones).

Host ops (RESHAPE, SOFTMAX: ``CompiledGraph.segments``) run here on the RTL's outputs, as
``CompiledGraph.run`` runs them on golden's. A graph whose program comes in parts (a host op
between core ops) is refused.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from sparq.sim.core_run import make_job, run_job


def core_segments(c):
    """The graph's core segments, in order (ValueError for a program in parts)."""
    if len(c.programs) != 1:
        host = [s.op.index for s in c.segments if c.writes_memory(s)]
        raise ValueError(f"the host runs ops {host} between the core's programs: the RTL run "
                         "takes graphs whose core ops form one program")
    return [s for s in c.segments if s.host is None]


def _read(c, tid):
    """The activation addresses of tensor ``tid``'s buffer."""
    a = c.buffers[tid]
    return list(range(a, a + int(np.prod(c.graph.t(tid).shape))))


def graph_job(c, xq_rows, *, layers=True, max_cycles=2_000_000):
    """The testbench's job: program 0 the whole program, program ``k + 1`` core segment
    ``k``'s; per row the whole pass and, with ``layers``, the pass op by op."""
    ops = core_segments(c)
    last = ops[-1].op.outputs[0]
    passes = [[dict(program=0, read=_read(c, last))]]
    if layers:
        passes.append([dict(program=k + 1, read=_read(c, s.op.outputs[0]))
                       for k, s in enumerate(ops)])
    programs = [c.program] + [s.program + [c.program[-1]] for s in ops]  # (+ HALT)
    return make_job(c.params, c.cfg.w_depth, programs, passes,
                    [c.x_image(row) for row in xq_rows], max_cycles=max_cycles)


def _tensors(c, row, values):
    """The ops' outputs (tensor id -> int8 array, batch 1) from core ops' values read back
    (``values``: tensor id -> flat list) and the host ops run on them; an op whose value or
    input is missing is left out."""
    tin = c.graph.inputs[0]
    out = {tin: np.asarray(row).reshape(c.graph.t(tin).shape).astype(np.int8)}
    for seg in c.segments:
        y = seg.op.outputs[0]
        if seg.host is not None and seg.op.inputs[0] in out:
            out[y] = seg.host(out[seg.op.inputs[0]]).astype(np.int8)
        elif seg.host is None and y in values:
            out[y] = np.asarray(values[y], np.int8).reshape(c.graph.t(y).shape)
    return out


def run_graph(name, c, xq_rows, *, layers=True, **run_kw):
    """Run the input rows on configuration ``name``'s RTL. Returns (per row a dict:
    ``cycles`` of the whole program, ``counters`` (the whole pass's), ``output`` (the graph's
    output: the whole pass's last core op's, the host ops after it run here); with
    ``layers``, ``tensors`` (every op's output from the op-by-op pass) and ``op_cycles``
    (each core segment's cycles, run alone); the testbench's report). ``run_kw`` as
    ``sim.core_run.run_job``'s."""
    ops = core_segments(c)
    last = ops[-1].op.outputs[0]
    steps, rep = run_job(name, graph_job(c, xq_rows, layers=layers), **run_kw)
    results = []
    for row, (whole, *per_op) in zip(xq_rows, steps, strict=True):
        r = dict(cycles=whole["cycles"], counters=whole,
                 output=_tensors(c, row, {last: whole["outputs"]})[c.graph.outputs[0]])
        if layers:
            r["tensors"] = _tensors(c, row, {s.op.outputs[0]: st["outputs"]
                                             for s, st in zip(ops, per_op, strict=True)})
            r["op_cycles"] = [st["cycles"] for st in per_op]
        results.append(r)
    return results, rep


def run_graph_beside(golden, name, c, xq_rows, **kw):
    """``run_graph(name, c, xq_rows, **kw)`` in a thread while ``golden()`` runs here: the
    simulator is a child process, so the golden model and the RTL use a core each. Returns
    (``golden()``'s result, ``run_graph``'s). An exception of either is raised once the RTL
    run has ended (the simulator is not stopped midway); the golden model's first, with the
    RTL's, if it failed too, as its context."""
    with ThreadPoolExecutor(1) as pool:
        rtl = pool.submit(run_graph, name, c, xq_rows, **kw)
        try:
            want = golden()
        except BaseException as e:
            failed = rtl.exception()  # (waits for the RTL run)
            if failed is not None:
                raise e from failed
            raise
        return want, rtl.result()


def golden_row(c, core, row):
    """One input row on the golden model: (every op's output, the core model's cycles of
    the whole program, each core segment's run alone). ``core``: the Core's parameters."""
    from sparq.golden.core import predict_program_cycles
    from sparq.golden.sequencer import MachineConfig

    extra = {k: v for k, v in core.items() if k not in MachineConfig.__dataclass_fields__}
    runs, starts = [], []
    tensors, _ = c.run(row, runs=runs, starts=starts)
    halt = c.program[-1]
    alone = [predict_program_cycles(c.cfg, c.params, s.program + [halt], x0, **extra)[0]
             for s, x0 in zip(core_segments(c), starts, strict=True)]
    return tensors, c.cycles(row, runs=runs, **extra), alone


def differences(c, results, golden):
    """Where the RTL's ``run_graph`` results differ from the golden model's ``golden_row``s:
    one line per input row that differs (an op's output, the whole program's output, the
    whole program's cycles or a segment's, run alone, from the core model's)."""
    lines = []
    for n, (r, (want, model, alone)) in enumerate(zip(results, golden, strict=True)):
        wrong = [op.index for op in c.graph.ops if "tensors" in r and
                 not np.array_equal(r["tensors"][op.outputs[0]], want[op.outputs[0]])]
        if not np.array_equal(r["output"], want[c.graph.outputs[0]]):
            wrong.append("the whole program's output")
        if "op_cycles" in r and r["op_cycles"] != alone:
            wrong.append(f"ops run alone: {r['op_cycles']} cycles (core model {alone})")
        if wrong or r["cycles"] != model:
            lines.append(f"input {n}: {wrong}; whole program {r['cycles']} cycles (core model "
                         f"{model})")
    return lines
