"""cocotb testbench: the Requantizer's Verilog against golden.requant, beat by beat.

Test 1 streams the shaped vectors (corners, ties, saturation; see sim.requant_stim) with
random idle cycles on the input and random backpressure on the output. Test 2 streams with
valid and ready always high and checks one result per cycle.
"""

import json

import cocotb
import numpy as np

from sparq.sim.requant_stim import expected, requant_vectors
from sparq.sim.stream import CycleCounter, StreamSink, StreamSource
from sparq.sim.tb_common import config, report, rng_for, start
from sparq.spec import params as spec_params


def _fields(cfg):
    return cfg["block"]["payloads"]["i"], cfg["block"]["payloads"]["o"]


async def _run(dut, cfg, vectors, *, idle, stall, rng):
    fi, fo = _fields(cfg)
    src = StreamSource(dut, "i", fi, rng=rng, idle=idle)  # drive the handshakes low first
    sink = StreamSink(dut, "o", fo, rng=rng, stall=stall)
    await start(dut)
    count = CycleCounter(dut.clk)
    src.cycle = count
    cocotb.start_soon(src.send(vectors))
    got = await sink.recv(len(vectors), cycle=count, max_cycles=20 * len(vectors) + 100)
    return np.array([b[""] for b in got], np.int64), sink.cycles_at, src.cycles_at


def _check(dut, vectors, got, want):
    bad = np.flatnonzero(got != want)
    for k in bad[:5]:
        dut._log.error("vector %d %s: got %d, want %d", k, vectors[k], got[k], want[k])
    return int(bad.size)


@cocotb.test(timeout_time=2, timeout_unit="sec")
async def random_handshakes(dut):
    cfg = config()
    params = cfg["block"]["params"]
    rng = rng_for(cfg)
    if cfg.get("vectors_file"):  # given vectors (real data) instead of generated ones
        with open(cfg["vectors_file"]) as f:
            vectors = json.load(f)
    else:
        vectors = requant_vectors(rng, cfg["vectors"], **params)
    want = expected(vectors, **params)
    got, at, _ = await _run(dut, cfg, vectors, idle=cfg["idle"], stall=cfg["stall"], rng=rng)
    if cfg.get("outputs_file"):
        np.save(cfg["outputs_file"], got)
    mismatches = _check(dut, vectors, got, want)
    assert int(dut.param_error.value) == 0, "param_error raised on valid parameters"
    report(cfg, vectors=len(vectors), mismatches=mismatches, cycles=at[-1])
    assert mismatches == 0, f"{mismatches} of {len(vectors)} outputs differ from the golden model"


@cocotb.test(timeout_time=2, timeout_unit="sec")
async def full_throughput(dut):
    cfg = config()
    params = cfg["block"]["params"]
    rng = rng_for(cfg, salt=1)
    vectors = requant_vectors(rng, 2000, **params)
    want = expected(vectors, **params)
    got, at, sent_at = await _run(dut, cfg, vectors, idle=0.0, stall=0.0, rng=rng)
    assert _check(dut, vectors, got, want) == 0
    span = at[-1] - at[0] + 1
    latency = at[0] - sent_at[0]  # cycles from the first input transfer to the first output
    report(cfg, results_per_cycle=len(vectors) / span, latency=latency,
           throughput_vectors=len(vectors), throughput_cycles=span)
    assert span == len(vectors), f"{len(vectors)} results took {span} cycles: bubbles"
    want_latency = spec_params.requant_latency(**params)
    assert latency == want_latency, f"latency {latency}, the block states {want_latency}"
