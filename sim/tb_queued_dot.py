"""cocotb testbench: QueuedDotProduct's Verilog (the carry-over engine, ``hw.queued_dot``)
against its golden twins.

``random_handshakes`` sweeps the weight and activation densities with random idle and
backpressure; ``given_beats`` (when the configuration gives a ``beats_file``: the digits
MLP's beats) streams given beats the same way. Both check every result against
``golden.sparse_dot`` and every result's cycle against ``golden.queued_dot.queued_cycles``
(in the model's time: the cycles ``o`` did not stall the engine; its ``arrive`` are
``QueuedDotProduct.INPUT_REGISTERS`` cycles after each beat's transfer).
"""

import json

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from sparq.golden.queued_dot import queued_cycles
from sparq.golden.sparse_dot import sparse_dot
from sparq.hw.queued_dot import QueuedDotProduct
from sparq.sim.sparse_stim import beat_payloads, queued_times, sweep_beats
from sparq.sim.stream import CycleCounter, StreamSink, StreamSource
from sparq.sim.tb_common import config, report, rng_for, start


async def _sample(dut, samples, done):
    """Once a cycle (at the falling edge, the handshakes settled): ``i`` fired, ``o`` valid,
    ``o`` ready."""
    while not done():
        await FallingEdge(dut.clk)
        samples.append((bool(dut.i__valid.value) and bool(dut.i__ready.value),
                        bool(dut.o__valid.value), bool(dut.o__ready.value)))
        await RisingEdge(dut.clk)


async def run_and_check(dut, cfg, b, zp, *, idle, stall, rng):
    """Stream ``b``; returns (vectors, result mismatches, cycle mismatches, cycles: from the
    first beat offered to the one after the last multiply, the model's, which the RTL's
    results' cycles were checked against)."""
    block = cfg["block"]
    params = dict(block["params"])
    if params.pop("push", False):  # o.ready is not looked at: a consumer always ready
        stall = 0.0
    n_vec = int(np.sum(b["last"]))
    dut.x_zero_point.value = zp
    src = StreamSource(dut, "i", block["payloads"]["i"], rng=rng, idle=idle)
    sink = StreamSink(dut, "o", block["payloads"]["o"], rng=rng, stall=stall)
    await start(dut)
    count = CycleCounter(dut.clk)
    samples = []
    cocotb.start_soon(src.send(beat_payloads(b)))
    cocotb.start_soon(_sample(dut, samples, lambda: len(sink.beats) >= n_vec))
    got = await sink.recv(n_vec, cycle=count, max_cycles=40 * len(b["last"]) + 200)
    got = np.array([g[""] for g in got], np.int64)
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zp,
                      lanes=params["lanes"], slots=params["slots"]).results
    bad = np.flatnonzero(got != want)
    for k in bad[:5]:
        dut._log.error("vector %d: got %d, want %d", k, got[k], want[k])
    arrive, leave = queued_times(*zip(*samples, strict=True),
                                 registers=QueuedDotProduct.INPUT_REGISTERS)
    assert len(arrive) == len(b["last"]), f"{len(arrive)} of {len(b['last'])} beats taken"
    nz = (b["w"] != 0) & (b["x"] != zp)
    model = queued_cycles(nz, b["last"], arrive=arrive, **params)
    off = np.flatnonzero(leave[:n_vec] != model.leave)
    for k in off[:5]:
        dut._log.error("vector %d left at %d, model %d", k, leave[k], model.leave[k])
    # the stream's cycles: from the first beat offered to the one after the last multiply
    return n_vec, int(bad.size), int(off.size), int(model.cycles - arrive[0])


@cocotb.test(timeout_time=5, timeout_unit="sec")
async def random_handshakes(dut):
    cfg = config()
    rng = rng_for(cfg)
    zp = int(rng.integers(-128, 128))
    b = sweep_beats(rng, cfg["vectors"], cfg["block"]["params"]["lanes"], zp)
    n, bad, off, cycles = await run_and_check(dut, cfg, b, zp, idle=cfg["idle"],
                                              stall=cfg["stall"], rng=rng)
    report(cfg, vectors=n, beats=len(b["last"]), mismatches=bad, cycle_mismatches=off,
           model_cycles=cycles, x_zero_point=zp)
    assert bad == 0, f"{bad} of {n} results differ from golden.sparse_dot"
    assert off == 0, f"{off} of {n} results off golden.queued_dot's cycles"


@cocotb.test(timeout_time=5, timeout_unit="sec")
async def given_beats(dut):
    """Given beats (``beats_file``: the digits MLP's), random valid and ready."""
    cfg = config()
    if not cfg.get("beats_file"):
        report(cfg, given_vectors=0)
        return
    with open(cfg["beats_file"]) as f:
        d = json.load(f)
    b = {k: np.array(v) for k, v in d["beats"].items()}
    n, bad, off, cycles = await run_and_check(dut, cfg, b, d["x_zero_point"],
                                              idle=cfg["idle"], stall=cfg["stall"],
                                              rng=rng_for(cfg, salt=2))
    report(cfg, given_vectors=n, given_beats=len(b["last"]), given_mismatches=bad,
           given_cycle_mismatches=off, given_model_cycles=cycles)
    assert bad == 0 and off == 0, (bad, off)


@cocotb.test(timeout_time=20, timeout_unit="sec")
async def overflow_flag(dut):
    """Two vectors of dense beats of the largest products (127 * (127 - -128) = 32,385 a
    pair): 4,144 beats sum to 2,147,335,040 (int32: no flag), 4,145 to 2,147,853,200 (the
    flag rises, the result is the low 32 bits)."""
    cfg = config()
    lanes = cfg["block"]["params"]["lanes"]
    zp, per_beat = -128, 127 * 255 * lanes
    n1, n2 = -(-(2**31 - 1) // per_beat) - 1, -(-(2**31 - 1) // per_beat)
    assert n1 * per_beat < 2**31 <= n2 * per_beat
    beat = dict(w=[127] * lanes, x=[127] * lanes, lvl=[3] * lanes)
    dut.x_zero_point.value = zp
    src = StreamSource(dut, "i", cfg["block"]["payloads"]["i"], rng=rng_for(cfg, salt=3))
    sink = StreamSink(dut, "o", cfg["block"]["payloads"]["o"], rng=rng_for(cfg, salt=4))
    await start(dut)
    count = CycleCounter(dut.clk)
    cocotb.start_soon(src.send([dict(beat, last=int(k == n1 - 1)) for k in range(n1)]
                               + [dict(beat, last=int(k == n2 - 1)) for k in range(n2)]))
    await sink.recv(1, cycle=count, max_cycles=8 * n1 + 100)
    for _ in range(4):
        await RisingEdge(dut.clk)
    first_flag = int(dut.overflow.value)
    got = await sink.recv(2, cycle=count, max_cycles=8 * n2 + 100)
    for _ in range(4):
        await RisingEdge(dut.clk)
    want = (n2 * per_beat + 2**31) % 2**32 - 2**31
    report(cfg, overflow_vectors=[n1, n2], overflow_first=first_flag,
           overflow_second=int(dut.overflow.value))
    assert got[0][""] == n1 * per_beat and first_flag == 0, (got[0], first_flag)
    assert got[1][""] == want and int(dut.overflow.value) == 1, (got[1], want)
