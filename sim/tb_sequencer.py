"""cocotb testbench: the Sequencer's Verilog against the golden ISA simulator.

``random_programs`` loads ``vectors`` random programs one after the other (sim.seq_stim:
every op, random predicates, loops, a share of illegal words) through ``pload`` with random
idle cycles, starts each, and plays the datapath on ``uop``/``probe``/``value`` with random
ready and random response delays. After each program the architectural state must equal the
ISA simulator's: predicates, accumulators and activation memory (the datapath stand-in
applies exactly the uops the RTL issued), executed and predicated-off counts, the error flag,
and ``cycles - stalls`` equal to the cycle model. ``given_program`` (with a ``program_file``:
``sim.seq_stim.case_to_json``) runs one given case, a compiled digits MLP for example, the
same way and saves the final activation memory as its outputs.
"""

import json

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from sparq.golden.sequencer import MachineConfig
from sparq.sim import seq_stim
from sparq.sim.stream import StreamSource, unpack
from sparq.sim.tb_common import config, report, rng_for, start


class Datapath:
    """Serves the uop, probe and value streams with random ready and delays, cycle by cycle."""

    def __init__(self, dut, block, rng, stall):
        self.dut, self.rng, self.stall = dut, rng, stall
        self.uop_fields = block["payloads"]["uop"]
        self.probe_fields = block["payloads"]["probe"]
        self.model = None

    async def run_program(self, max_cycles=20_000):
        dut, rng = self.dut, self.rng
        reply = seq_stim.ValueReply(rng, self.stall)
        for _ in range(max_cycles):
            ur, pr = int(rng.random() >= self.stall), int(rng.random() >= self.stall)
            dut.uop__ready.value = ur
            dut.probe__ready.value = pr
            value = reply.presented()
            dut.value__valid.value = int(value is not None)
            if value is not None:
                dut.value__payload.value = value & 0xFFFF
            await FallingEdge(dut.clk)
            uv, pv, vr = int(dut.uop__valid.value), int(dut.probe__valid.value), \
                int(dut.value__ready.value)
            busy = int(dut.busy.value)
            if uv and ur:
                u = unpack(self.uop_fields, int(dut.uop__payload.value))
                conv = None
                if "win" in u:  # a convolution machine's (its window: SETG's fields)
                    conv = dict(u, window={k.split(".", 1)[1]: v for k, v in u.items()
                                           if k.startswith("window.")})
                self.model.uop(u["kind"], u["acc"], u["ch"], u["xaddr"], u["waddr"],
                               u["beats"], u["oaddr"], u["zp"], conv=conv)
            reply.clock(vr)
            if pv and pr:
                q = unpack(self.probe_fields, int(dut.probe__payload.value))
                reply.probe(self.model.probe(q["src"], q["addr"], q["beats"], q["zp"]))
            await RisingEdge(dut.clk)
            if not busy:
                break
        else:
            raise AssertionError(f"the sequencer did not halt within {max_cycles} cycles")
        dut.value__valid.value = 0
        dut.uop__ready.value = 0
        dut.probe__ready.value = 0


def _counters(dut):
    return {k: int(getattr(dut, k).value) for k in (
        "cycles", "executed", "predicated_off", "stalls", "halted", "error", "preds")}


async def _setup(dut, cfg):
    block = cfg["block"]
    rng = rng_for(cfg)
    for port in ("pload__valid", "start", "abort", "hold", "value__valid", "uop__ready",
                 "probe__ready"):
        getattr(dut, port).value = 0
    await start(dut)
    dp = Datapath(dut, block, rng, cfg["stall"])
    loader = StreamSource(dut, "pload", block["payloads"]["pload"], rng=rng, idle=cfg["idle"])
    return rng, dp, loader


async def _run_case(dut, case, dp, loader):
    """Load, start and serve one case; returns (counters, golden state, golden error, ok)."""
    await loader.send([dict(addr=a, word=w) for a, w in enumerate(case.program)])
    await RisingEdge(dut.clk)
    dp.model = seq_stim.Datapath(case)
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    await dp.run_program()
    c = _counters(dut)
    want, err = seq_stim.expected(case)
    got = dp.model.m.state()
    preds = [bool(c["preds"] >> k & 1) for k in range(8)]
    checks = dict(
        error=bool(c["error"]) == (err is not None), preds=preds == want["p"],
        acc=got["acc"] == want["acc"], x=got["x"] == want["x"],
        executed=c["executed"] == want["executed"],
        predicated_off=c["predicated_off"] == want["predicated_off"],
        cycles=err is not None or c["cycles"] - c["stalls"] == want["cycles"])
    failed = [k for k, v in checks.items() if not v]
    return c, got, err, failed


@cocotb.test()
async def given_program(dut):
    cfg = config()
    if not cfg.get("program_file"):
        report(cfg, given_programs=0)
        return
    _, dp, loader = await _setup(dut, cfg)
    with open(cfg["program_file"]) as f:
        case = seq_stim.case_from_json(json.load(f))
    c, got, err, failed = await _run_case(dut, case, dp, loader)
    if cfg.get("outputs_file"):
        np.save(cfg["outputs_file"], np.array(got["x"], np.int64))
    report(cfg, given_programs=1, given_failed=failed, given_error=err, given_cycles=c["cycles"],
           given_stalls=c["stalls"], given_executed=c["executed"],
           given_predicated_off=c["predicated_off"])
    assert not failed and err is None, (failed, err)


@cocotb.test()
async def random_programs(dut):
    cfg = config()
    mcfg = MachineConfig(**cfg["block"]["params"])
    rng, dp, loader = await _setup(dut, cfg)
    totals = dict(programs=0, errors=0, executed=0, predicated_off=0, cycles=0, stalls=0,
                  mismatches=0)
    for n in range(cfg["vectors"]):
        case = (seq_stim.conv_case(rng, **vars(mcfg)) if mcfg.conv
                else seq_stim.random_case(rng, mcfg, bad_rate=0.01))
        c, _, err, failed = await _run_case(dut, case, dp, loader)
        if failed:
            totals["mismatches"] += 1
            cocotb.log.error("program %d: failed %s (golden error: %s)", n, failed, err)
        totals["programs"] += 1
        totals["errors"] += err is not None
        for k in ("executed", "predicated_off", "cycles", "stalls"):
            totals[k] += c[k]
    report(cfg, vectors=totals["programs"], **totals)
    assert totals["mismatches"] == 0, totals
