"""cocotb testbench: the Core's Verilog running a compiled network on given images.

The configuration's ``core_file`` (``sim.core_run.core_job`` or ``graph_job``) holds the
compiled model (weights, parameters, ``programs``), the images (activation-memory images),
the ``passes`` to run on each image and optionally updates: delta records to stream through
the core's delta port after a given image (a good update, or a corrupted one that must be
refused). A pass writes the image into activation memory, then runs its steps in turn: a
step loads its program (unless it is the one loaded), starts the core, waits until it is
idle and reads its addresses back (``read``). The host streams are driven with random idle
cycles. Per image the testbench saves each step's values read back and the core's counters
(``outputs_file``, JSON: per image, the list of steps of every pass in order).

The report also gives the simulation's speed (``sim.core_run.throughput``): ``clock_cycles``
(simulated clock cycles of the whole test, reset included), ``wall_seconds`` (wall-clock
seconds of the test body: the build and the simulator's start-up are not in it),
``core_cycles`` (the core's own ``cycles`` counter summed over the images: its busy cycles),
``busy_wall_seconds`` (the part of ``wall_seconds`` spent waiting for the busy core) and
``started_at`` (``time.time()`` at the test's first line: what came before it, the Verilog
export, the build, the simulator's start, is a caller's ``started_at - time before run``).
"""

import json
import time

import cocotb
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer
from cocotb.utils import get_sim_steps, get_sim_time

from sparq.sim.stream import StreamSource
from sparq.sim.tb_common import CLOCK_NS, config, report, rng_for, start


def _clock_steps():
    """The clock period in simulator steps (``get_sim_time()``'s unit)."""
    return get_sim_steps(CLOCK_NS, "ns")


async def _send(src, payloads):
    await src.send(payloads)


async def _read_back(dut, addrs):
    out = []
    for a in addrs:
        dut.x_rd_addr.value = a
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        out.append(dut.x_rd_data.value.to_signed())
    return out


async def _wait_idle(dut, max_cycles):
    """Return at the first falling clock edge at which the core is not busy, as a loop over
    the clock's edges would, but without waking Python on every edge while the core is busy:
    one trigger on ``busy`` falling (or on the timeout: ``max_cycles`` clock periods of
    simulated time), then the next falling clock edge, where ``busy`` is checked again (a
    glitch of the combinational ``busy`` costs one more round, not a wrong answer)."""
    deadline = get_sim_time() + max_cycles * _clock_steps()
    await FallingEdge(dut.clk)
    while int(dut.busy.value):
        left = deadline - get_sim_time()
        timeout = Timer(max(left, 1), "step")
        if left <= 0 or await First(FallingEdge(dut.busy), timeout) is timeout:
            raise AssertionError(
                f"the core was still busy after {max_cycles} cycles: executed "
                f"{int(dut.executed.value)}, engine cycles {int(dut.engine_cycles.value)}, "
                f"halted {dut.halted.value}, error {dut.error.value}")
        await FallingEdge(dut.clk)


async def _run_step(dut, read, max_cycles):
    """Start the loaded program, wait until the core is idle, read ``read`` back. Returns
    (the values and the core's counters, the wall seconds spent waiting for the core)."""
    await RisingEdge(dut.clk)
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    t_busy = time.perf_counter()
    await _wait_idle(dut, max_cycles)
    busy = time.perf_counter() - t_busy
    got = await _read_back(dut, read)
    counters = {k: int(getattr(dut, k).value) for k in (
        "cycles", "executed", "predicated_off", "engine_cycles", "pairs", "skipped",
        "error", "halted", "weights_active", "delta_status", "delta_updates")}
    return dict(outputs=got, **counters), busy


@cocotb.test()
async def given_images(dut):
    started_at, t0 = time.time(), time.perf_counter()
    cfg = config()
    block = cfg["block"]
    rng = rng_for(cfg)
    for port in ("pload__valid", "records__valid", "param_wr__valid", "x_wr__valid",
                 "start"):
        getattr(dut, port).value = 0
    dut.x_rd_addr.value = 0
    await start(dut)
    with open(cfg["core_file"]) as f:
        job = json.load(f)
    idle = cfg["idle"]
    srcs = {name: StreamSource(dut, name, block["payloads"][name], rng=rng, idle=idle)
            for name in ("pload", "records", "param_wr", "x_wr")}
    await _send(srcs["records"], job["records"])
    await _send(srcs["param_wr"], job["params"])
    updates = {int(k): v for k, v in job.get("updates", {}).items()}
    results, loaded = [], None
    busy_wall = 0.0  # wall seconds spent waiting for the core (its busy cycles)
    for n, image in enumerate(job["images"]):
        steps = []
        for pass_ in job["passes"]:
            await _send(srcs["x_wr"], [dict(addr=a, value=v) for a, v in enumerate(image)])
            for step in pass_:
                if step["program"] != loaded:
                    loaded = step["program"]
                    await _send(srcs["pload"], [dict(addr=a, word=w) for a, w in
                                                enumerate(job["programs"][loaded])])
                got, busy = await _run_step(dut, step["read"], job.get("max_cycles", 200_000))
                steps.append(got)
                busy_wall += busy
        results.append(steps)
        if n % 20 == 0 or len(job["images"]) <= 50:
            cocotb.log.info("image %d/%d: %s cycles", n + 1, len(job["images"]),
                            "+".join(str(s["cycles"]) for s in steps))
        if n in updates:
            await _send(srcs["records"], updates[n])
            for _ in range(4):
                await RisingEdge(dut.clk)
    wall = time.perf_counter() - t0
    with open(cfg["outputs_file"], "w") as f:
        json.dump(results, f)
    report(cfg, images=len(results), clock_cycles=get_sim_time() // _clock_steps(),
           wall_seconds=round(wall, 6),
           core_cycles=sum(st["cycles"] for r in results for st in r),
           busy_wall_seconds=round(busy_wall, 6), started_at=round(started_at, 3))
    assert all(not st["error"] for r in results for st in r), "the core raised its error flag"
