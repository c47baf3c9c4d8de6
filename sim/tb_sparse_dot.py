"""cocotb testbench: SparseDotProduct's Verilog against golden.sparse_dot.

``random_handshakes`` sweeps the weight and activation densities independently over 0..100%
with random idle and backpressure and checks every result and the counters. ``cycle_exact``
streams with valid and ready always high and checks that each result leaves exactly the
model's cycles after the previous one. ``given_beats`` (when the configuration gives a
``beats_file``) runs given beats: real digits-MLP beats, or a benchmark's.
"""

import json

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from sparq.golden.sparse_dot import sparse_dot
from sparq.sim.sparse_stim import beat_payloads, sweep_beats
from sparq.sim.stream import CycleCounter, StreamSink, StreamSource
from sparq.sim.tb_common import config, report, rng_for, start


class MemorySink:
    """Collects ``wr_en``/``wr_addr``/``wr_data`` writes (the memory output variant) and
    checks that the k-th write goes to address k modulo the address space."""

    def __init__(self, dut, addr_width):
        self.dut, self.data, self.cycles_at = dut, [], []
        self.mask = (1 << addr_width) - 1

    async def recv(self, count, *, cycle, max_cycles):
        for _ in range(max_cycles):
            if len(self.data) >= count:
                break
            await FallingEdge(self.dut.clk)
            if self.dut.wr_en.value:
                addr = int(self.dut.wr_addr.value)
                assert addr == len(self.data) & self.mask, \
                    f"write {len(self.data)} went to address {addr}"
                self.data.append(self.dut.wr_data.value.to_signed())
                self.cycles_at.append(cycle())
            await RisingEdge(self.dut.clk)
        assert len(self.data) == count, f"{len(self.data)} of {count} writes"
        return self.data


async def drive(dut, cfg, b, *, zp, idle, stall, rng):
    """Send the beats, collect the results; returns (results, result cycles)."""
    block = cfg["block"]
    n_vec = int(np.sum(b["last"]))
    dut.x_zero_point.value = zp
    src = StreamSource(dut, "i", block["payloads"]["i"], rng=rng, idle=idle)
    if block["params"]["output"] == "stream":
        sink = StreamSink(dut, "o", block["payloads"]["o"], rng=rng, stall=stall)
    else:
        sink = MemorySink(dut, block["params"]["addr_width"])
    await start(dut)
    count = CycleCounter(dut.clk)
    cocotb.start_soon(src.send(beat_payloads(b)))
    got = await sink.recv(n_vec, cycle=count, max_cycles=40 * len(b["last"]) + 200)
    if isinstance(sink, StreamSink):
        got = [g[""] for g in got]
    for _ in range(20):  # the counters of the last beats settle
        await RisingEdge(dut.clk)
    return np.array(got, np.int64), np.array(sink.cycles_at)


def counters(dut):
    return {k: int(getattr(dut, k).value) for k in
            ("cycles", "pairs", "skipped", "level_error", "level_errors", "overflow")}


def check(dut, want, got, params):
    bad = np.flatnonzero(got != want.results)
    for k in bad[:5]:
        dut._log.error("vector %d: got %d, want %d", k, got[k], want.results[k])
    c = counters(dut)
    stats = want.stats
    for key in ("cycles", "pairs", "skipped"):
        assert c[key] == stats[key], f"counter {key} = {c[key]}, model {stats[key]}"
    assert c["level_error"] == 0 and c["overflow"] == 0, c
    return int(bad.size)


@cocotb.test(timeout_time=5, timeout_unit="sec")
async def random_handshakes(dut):
    cfg = config()
    params = cfg["block"]["params"]
    rng = rng_for(cfg)
    zp = int(rng.integers(-128, 128))
    b = sweep_beats(rng, cfg["vectors"], params["lanes"], zp)
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zp, **params)
    got, _ = await drive(dut, cfg, b, zp=zp, idle=cfg["idle"], stall=cfg["stall"], rng=rng)
    mismatches = check(dut, want, got, params)
    report(cfg, vectors=len(want.results), beats=len(b["last"]), mismatches=mismatches,
           cycles=want.stats["cycles"], x_zero_point=zp)
    assert mismatches == 0, f"{mismatches} of {len(got)} results differ from the golden model"


@cocotb.test(timeout_time=5, timeout_unit="sec")
async def cycle_exact(dut):
    cfg = config()
    params = cfg["block"]["params"]
    rng = rng_for(cfg, salt=1)
    b = sweep_beats(rng, min(cfg["vectors"], 1000), params["lanes"], 0)
    b = {k: v[:np.flatnonzero(b["last"])[999] + 1] if b["last"].sum() > 1000 else v
         for k, v in b.items()}
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=0, **params)
    got, at = await drive(dut, cfg, b, zp=0, idle=0.0, stall=0.0, rng=rng)
    assert check(dut, want, got, params) == 0
    gaps = np.diff(at)
    off = np.flatnonzero(gaps != want.vector_cycles[1:])
    assert off.size == 0, (f"{off.size} results off the cycle model; first: vector "
                           f"{off[0] + 1} after {gaps[off[0]]} cycles, model "
                           f"{want.vector_cycles[off[0] + 1]}")
    report(cfg, cycle_exact_vectors=len(got), measured_cycles=int(at[-1] - at[0]),
           model_cycles=int(want.vector_cycles[1:].sum()))


@cocotb.test(timeout_time=5, timeout_unit="sec")
async def given_beats(dut):
    """Given beats (``beats_file``: real digits-MLP beats, or a bench's density point),
    streamed with valid and ready always high: values, counters and cycle-exact timing."""
    cfg = config()
    if not cfg.get("beats_file"):
        report(cfg, given_vectors=0)
        return
    params = cfg["block"]["params"]
    with open(cfg["beats_file"]) as f:
        d = json.load(f)
    b = {k: np.array(v) for k, v in d["beats"].items()}
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=d["x_zero_point"],
                      **params)
    got, at = await drive(dut, cfg, b, zp=d["x_zero_point"], idle=0.0, stall=0.0,
                          rng=rng_for(cfg, salt=2))
    mismatches = check(dut, want, got, params)
    gaps_ok = bool(np.all(np.diff(at) == want.vector_cycles[1:]))
    c = counters(dut)
    report(cfg, given_vectors=len(got), given_beats=len(b["last"]),
           given_mismatches=mismatches, given_rtl_cycles=c["cycles"],
           given_model_cycles=int(want.stats["cycles"]), given_pairs=c["pairs"],
           given_skipped=c["skipped"], given_cycle_exact=gaps_ok)
    assert mismatches == 0 and gaps_ok
