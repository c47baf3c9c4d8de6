"""amaranth.sim stream producer and consumer testbenches with random idle and backpressure,
and a wrapper whose reset the testbench drives."""

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal


class WithReset(Elaboratable):
    """The DUT in a ``sync`` domain whose reset the testbench drives (``rst``)."""

    def __init__(self, dut):
        self.dut, self.rst = dut, Signal()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain()
        m.d.comb += cd.rst.eq(self.rst)
        m.submodules.dut = self.dut
        return m


async def stream_send(ctx, port, payloads, *, rng, idle=0.3):
    """Drive ``payloads`` (dicts of payload fields, or ints) into ``port`` (an In stream).

    Valid is raised without looking at ready and held, with the payload stable, until the
    transfer; between beats valid drops for a random number of idle cycles.
    """
    for payload in payloads:
        while rng.random() < idle:
            ctx.set(port.valid, 0)
            await ctx.tick()
        _set_payload(ctx, port.payload, payload)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


def _set_payload(ctx, target, payload):
    if isinstance(payload, dict):
        for name, value in payload.items():
            _set_payload(ctx, getattr(target, name), value)
    else:
        ctx.set(target, payload)


async def stream_recv(ctx, port, count, *, rng, stall=0.3, max_cycles=1_000_000):
    """Collect ``count`` payloads from ``port`` (an Out stream) with random backpressure."""
    got, cycles = [], 0
    while len(got) < count:
        ready = int(rng.random() >= stall)
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if ready and valid:
            got.append(payload)
        cycles += 1
        assert cycles < max_cycles, f"only {len(got)} of {count} results after {cycles} cycles"
    ctx.set(port.ready, 0)
    return got
