"""``hw.uop_skid.UopSkid`` between a producer that waits while it is ``held`` (as the
Sequencer does with ``hold``) and a consumer with random ready: every uop reaches the
consumer once and in order, and each is first shown to it in the cycle a direct
connection would show it (the cycle after the one before was taken, plus the producer's
own cycles in between): the buffer changes no cycle. A flush drops the held uop and says
so (``dropped``, until ``clear``)."""

import numpy as np
from amaranth.sim import Simulator

from sparq.hw.uop_skid import UopSkid

SEED = 20261207


def test_skid_changes_no_cycle():
    seed = SEED
    rng = np.random.default_rng(seed)
    print(f"seed {seed}")
    dut = UopSkid(16)
    n = 3000
    # the producer's own cycles before each uop (instructions that complete in a cycle
    # each, unless the buffer holds a uop), and the consumer's ready pattern
    gaps = [int(rng.integers(0, 3)) if rng.random() < 0.4 else 0 for _ in range(n)]
    p_ready = float(rng.choice([0.3, 0.7, 1.0]))
    shown, taken = {}, []

    async def bench(ctx):
        k, gap, cycle = 0, gaps[0], 0
        while len(taken) < n:
            held = ctx.get(dut.held)
            offering = k < n and gap == 0
            ctx.set(dut.i.valid, offering)
            ctx.set(dut.i.payload, k if offering else 0xFFFF)
            ctx.set(dut.o.ready, int(rng.random() < p_ready))
            if ctx.get(dut.o.valid):
                v = ctx.get(dut.o.payload)
                shown.setdefault(v, cycle)
                if ctx.get(dut.o.ready):
                    taken.append((v, cycle))
            accepted = offering and ctx.get(dut.i.ready)
            assert ctx.get(dut.i.ready) == (not held)
            await ctx.tick()
            cycle += 1
            if accepted:
                k += 1
                gap = gaps[k] if k < n else 0
            elif not offering and not held and k < n:
                gap -= 1  # (one of the producer's instructions completes)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert [v for v, _ in taken] == list(range(n))
    waits = 0
    for k in range(1, n):
        assert shown[k] == taken[k - 1][1] + 1 + gaps[k], (k, shown[k], taken[k - 1], gaps[k])
        waits += taken[k][1] > shown[k]
    print(f"p_ready {p_ready}: {waits} of {n} uops waited")
    assert waits > 100 or p_ready == 1.0


def test_flush_drops_the_held_uop():
    dut = UopSkid(8)

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 42)
        await ctx.tick()  # (not taken by the consumer: held)
        ctx.set(dut.i.valid, 0)
        assert ctx.get(dut.held) and ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 42
        ctx.set(dut.flush, 1)
        assert not ctx.get(dut.o.valid)
        await ctx.tick()
        assert not ctx.get(dut.held) and ctx.get(dut.dropped) and not ctx.get(dut.o.valid)
        ctx.set(dut.flush, 0)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.dropped)  # (until a run starts)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        assert not ctx.get(dut.dropped)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
