"""cocotb testbench: the Core's Verilog running a compiled network on given images.

The configuration's ``core_file`` (``sim.core_run.core_job``) holds the compiled model
(weights, parameters, program), the images (activation-memory images), the addresses to read
back after each image, and optionally updates: delta records to stream through the core's
delta port after a given image (a good update, or a corrupted one that must be refused). The
host streams are driven with random idle cycles. Per image the testbench saves the values
read back and the core's counters (``outputs_file``, JSON).
"""

import json

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge

from sim.stream import StreamSource
from sim.tb_common import config, report, rng_for, start


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
    for _ in range(max_cycles):
        await FallingEdge(dut.clk)
        if not int(dut.busy.value):
            return
        await RisingEdge(dut.clk)
    raise AssertionError(f"the core was still busy after {max_cycles} cycles: executed "
                         f"{int(dut.executed.value)}, engine cycles "
                         f"{int(dut.engine_cycles.value)}, datapath state {dut.dp_state.value}")


@cocotb.test()
async def given_images(dut):
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
    await _send(srcs["pload"], job["program"])
    updates = {int(k): v for k, v in job.get("updates", {}).items()}
    results = []
    for n, image in enumerate(job["images"]):
        await _send(srcs["x_wr"], [dict(addr=a, value=v) for a, v in enumerate(image)])
        await RisingEdge(dut.clk)
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await _wait_idle(dut, job.get("max_cycles", 200_000))
        got = await _read_back(dut, job["read"])
        counters = {k: int(getattr(dut, k).value) for k in (
            "cycles", "executed", "predicated_off", "engine_cycles", "pairs", "skipped",
            "error", "halted", "weights_active", "delta_status", "delta_updates")}
        results.append(dict(outputs=got, **counters))
        if n % 20 == 0:
            cocotb.log.info("image %d/%d: %d cycles", n + 1, len(job["images"]),
                            counters["cycles"])
        if n in updates:
            await _send(srcs["records"], updates[n])
            for _ in range(4):
                await RisingEdge(dut.clk)
    with open(cfg["outputs_file"], "w") as f:
        json.dump(results, f)
    report(cfg, images=len(results))
    assert all(not r["error"] for r in results), "the core raised its error flag"
