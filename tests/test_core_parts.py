# amaranth: UnusedElaboratable=no
"""The core's parts with logic of their own, each alone under amaranth.sim: the ProbeUnit
(every SETP source on random memories, against ``golden.sequencer.representative``, with
random waits before a probe may start and backpressure on its value) and the
AccumulatorFile (random DOT results, writes and tags against a model of four accumulators,
their pending counts and the int32 overflow fault). The DotFeeder's hazards have their own
check, ``tests/test_dot_feeder.py``."""

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from sparq.golden.sequencer import MachineConfig, representative
from sparq.hw.accumulators import AccumulatorFile
from sparq.hw.probe_unit import ProbeUnit
from sparq.spec.isa import SRCS
from tests.conftest import SEED


class _ProbeWithMemories(Elaboratable):
    """A ProbeUnit reading two memories of random words through synchronous ports."""

    def __init__(self, lanes, x, w):
        self.dut = ProbeUnit(lanes=lanes)
        self.lanes, self.x, self.w = lanes, x, w

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        n = self.lanes
        words = lambda a: [sum((int(v) & 0xFF) << (8 * k) for k, v in enumerate(a[i:i + n]))  # noqa: E731
                           for i in range(0, len(a), n)]
        m.submodules.xm = xm = Memory(shape=unsigned(8 * n), depth=len(self.x) // n,
                                      init=words(self.x))
        m.submodules.wm = wm = Memory(shape=unsigned(8 * n), depth=len(self.w) // n,
                                      init=words(self.w))  # (read as lanes by the unit)
        xr, wr = xm.read_port(), wm.read_port()
        m.d.comb += [xr.addr.eq(dut.rd_addr), wr.addr.eq(dut.rd_addr),
                     dut.x_data.eq(xr.data), dut.w_data.eq(wr.data)]
        return m


@pytest.mark.parametrize("lanes,zp", [(16, -128), (4, 3), (1, 0)])
def test_probe_unit_every_source(lanes, zp):
    seed = SEED + 40 + lanes
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    depth = 16 * lanes
    x = rng.integers(-128, 128, depth)
    x[rng.random(depth) < 0.6] = zp  # mostly zero point, some blocks all of it
    x[: 2 * lanes] = zp
    w = rng.integers(-128, 128, depth)
    w[rng.random(depth) < 0.5] = 0
    top = _ProbeWithMemories(lanes, x, w)
    dut = top.dut
    cfg = MachineConfig(lanes=lanes, x_depth=depth, w_depth=depth, x_zero_point=zp)
    machine = SimpleNamespace(cfg=cfg, params=SimpleNamespace(w=w), x=x, xstride=0)
    probes = []
    for _ in range(120):
        src = int(rng.integers(0, len(SRCS)))
        if SRCS[src] in ("W", "X"):
            addr, beats = int(rng.integers(0, depth)), 1
        else:
            beats = int(rng.integers(1, 16))
            addr = int(rng.integers(0, 16 - beats + 1)) * lanes
        # the probe's zero point (SETL's): mostly the one the memory is full of, else any
        pzp = zp if rng.random() < 0.6 else int(rng.choice([-128, 127, int(x[addr])]))
        probes.append((src, addr, beats, pzp))
    checked = []

    async def bench(ctx):
        for src, addr, beats, pzp in probes:
            ins = SimpleNamespace(src=src, addr=addr, beats=beats, ai=0)
            machine.x_zp = pzp
            want = representative(machine, ins)
            ctx.set(dut.probe.payload.zp, pzp)
            ctx.set(dut.probe.payload.src, src)
            ctx.set(dut.probe.payload.addr, addr)
            ctx.set(dut.probe.payload.beats, beats)
            ctx.set(dut.probe.valid, 1)
            taken = False
            while not taken:  # random waits: the feeder busy, activation writes in flight
                blocked, writes = rng.random() < 0.3, rng.random() < 0.3
                ctx.set(dut.blocked, blocked)
                ctx.set(dut.x_writes, writes)
                may = not blocked and (not writes or SRCS[src] in ("W", "WNNZ"))
                assert ctx.get(dut.probe.ready) == may
                taken = may
                await ctx.tick()
            ctx.set(dut.probe.valid, 0)
            cycles = 0
            while not ctx.get(dut.value.valid):
                cycles += 1
                await ctx.tick()
            assert cycles == (2 if SRCS[src] in ("W", "X") else beats + 2), (src, beats, cycles)
            for _ in range(int(rng.integers(0, 3))):  # backpressure: the value stays
                await ctx.tick()
                assert ctx.get(dut.value.valid)
            got = ctx.get(dut.value.payload)
            assert got == want, (SRCS[src], addr, beats, got, want)
            checked.append(SRCS[src])
            ctx.set(dut.value.ready, 1)
            await ctx.tick()
            ctx.set(dut.value.ready, 0)
            assert not ctx.get(dut.value.valid)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == len(probes) and set(checked) == set(SRCS)
    print({s: checked.count(s) for s in SRCS})


def test_accumulator_file_against_a_model():
    seed = SEED + 50
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    dut = AccumulatorFile(prog_depth=64, tags=4)
    counts = dict(results=0, faults=0, writes=0)

    async def bench(ctx):
        acc, pend, tags = [0] * 4, [0] * 4, []
        for cycle in range(3000):
            sel = int(rng.integers(0, 4))
            ctx.set(dut.sel, sel)
            assert ctx.get(dut.value) == acc[sel] and ctx.get(dut.idle) == (pend[sel] == 0)
            assert ctx.get(dut.pending) == any(pend)
            issued = rng.random() < 0.3 and sum(pend) < 6
            # a tag when some issued DOT has none yet; a result when a tag is queued
            tag = rng.random() < 0.4 and sum(pend) > len(tags) and len(tags) < 4
            # (a result at least 2 cycles after its tag: the FIFO's latency; the engine's
            # is 3 or more)
            result = rng.random() < 0.5 and len(tags) > 0 and tags[0][2] <= cycle - 2
            write = rng.random() < 0.2 and pend[sel] == 0 and not issued
            value = int(rng.choice([rng.integers(-(1 << 31), 1 << 31),
                                    rng.integers(-1000, 1000), (1 << 31) - 1, -(1 << 31)]))
            res = int(rng.choice([rng.integers(-(1 << 20), 1 << 20), (1 << 31) - 1,
                                  -(1 << 31)]))
            tag_acc = next(k for k in range(4) if pend[k] > sum(t[0] == k for t in tags)) \
                if tag else 0
            tag_pc = int(rng.integers(0, 64))
            for sig, v in ((dut.issued, issued), (dut.write, write),
                           (dut.write_value, value), (dut.tag.valid, tag),
                           (dut.tag.payload.acc, tag_acc), (dut.tag.payload.pc, tag_pc),
                           (dut.result.valid, result), (dut.result.payload, res)):
                ctx.set(sig, v)
            if result:
                k, pc, _ = tags[0]
                total = acc[k] + res
                fault = not -(1 << 31) <= total < (1 << 31)
                assert ctx.get(dut.fault) == fault and (not fault or ctx.get(dut.fault_pc) == pc)
                counts["faults"] += fault
                acc[k] = (total + (1 << 31)) % (1 << 32) - (1 << 31)
                pend[k] -= 1
                tags.pop(0)
                counts["results"] += 1
            else:
                assert not ctx.get(dut.fault)
            if write:
                acc[sel] = value
                counts["writes"] += 1
            if issued:
                pend[sel] += 1
            await ctx.tick()
            if tag:
                tags.append((tag_acc, tag_pc, cycle))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    print(counts)
    assert counts["results"] > 300 and counts["faults"] > 5 and counts["writes"] > 100
