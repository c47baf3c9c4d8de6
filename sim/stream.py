"""cocotb drivers for amaranth.lib.stream ports (valid/ready/payload), with random pauses.

The generated Verilog names a stream port ``<name>__valid``, ``<name>__ready`` and
``<name>__payload`` (one flat vector); ``fields`` is the flattened payload layout written by
``hw.export`` (``{dotted.name: {offset, width, signed}}``).

A transfer happens on a rising edge where valid and ready are both high. The drivers change
their outputs only right after a rising edge and read the handshake at the falling edge,
when everything has settled: reading right at the rising edge races the design's own
updates (Icarus was seen to return 'Z' for a register output there).
"""

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge


def _lookup(beat, name):
    """The value of field ``name`` ("p.shift", "w.3") in a beat of nested dicts and lists,
    or, for flat dicts, the value keyed by its last component ("shift")."""
    node = beat
    for part in name.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit():
            node = node[int(part)]
        else:
            return beat[name.rsplit(".", 1)[-1]]
    return node


def pack(fields, beat):
    """Pack ``beat`` into an int by the flattened layout ``fields``; a value that does not
    fit its field raises (never wraps)."""
    word = 0
    for name, f in fields.items():
        value = int(_lookup(beat, name))
        lo, hi = -(1 << (f["width"] - 1)) if f["signed"] else 0, \
            (1 << (f["width"] - (1 if f["signed"] else 0))) - 1
        if not lo <= value <= hi:
            raise ValueError(f"field {name} = {value} does not fit [{lo}, {hi}]")
        word |= (value & ((1 << f["width"]) - 1)) << f["offset"]
    return word


def unpack(fields, word):
    """Unpack an int to a dict keyed by the flattened field names of ``fields`` (``""`` for a
    payload that is one plain value); signed fields are sign-extended."""
    out = {}
    for name, f in fields.items():
        v = (word >> f["offset"]) & ((1 << f["width"]) - 1)
        if f["signed"] and v >> (f["width"] - 1):
            v -= 1 << f["width"]
        out[name] = v
    return out


class StreamSource:
    """Drives beats into the DUT's input stream ``prefix``; idles with probability ``idle``.

    With ``cycle`` (a ``CycleCounter``), ``cycles_at`` records each transfer's cycle number.
    """

    def __init__(self, dut, prefix, fields, *, rng, idle=0.0, cycle=None):
        self.clk = dut.clk
        self.cycle, self.cycles_at = cycle, []
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.fields, self.rng, self.idle = fields, rng, idle
        self.valid.value = 0
        self.sent = 0

    async def send(self, beats):
        for beat in beats:
            while self.rng.random() < self.idle:
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.payload.value = pack(self.fields, beat)
            self.valid.value = 1
            while True:
                await FallingEdge(self.clk)
                taken = bool(self.ready.value)
                await RisingEdge(self.clk)
                if taken:
                    break
            self.sent += 1
            if self.cycle is not None:
                self.cycles_at.append(self.cycle())
        self.valid.value = 0


class StreamSink:
    """Collects beats from the DUT's output stream ``prefix``: each cycle ``ready`` is low
    with probability ``stall``.

    ``beats`` holds every beat received so far (``unpack``'s dicts, a plain payload under the
    key ``""``) and ``cycles_at`` the cycle number of each one's transfer, read from the
    ``cycle`` callable that ``recv`` is given (a ``CycleCounter``).
    """

    def __init__(self, dut, prefix, fields, *, rng, stall=0.0):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.fields, self.rng, self.stall = fields, rng, stall
        self.ready.value = 0
        self.beats, self.cycles_at = [], []

    async def recv(self, count, *, cycle, max_cycles):
        """Receive until ``beats`` holds ``count`` beats in all (beats of earlier calls
        included) and return ``beats``, the same list; ``cycle()`` returns the current cycle
        number. Raises AssertionError if ``max_cycles`` cycles pass first, or if ``beats``
        already held more than ``count``."""
        for _ in range(max_cycles):
            if len(self.beats) >= count:
                break
            ready = int(self.rng.random() >= self.stall)
            self.ready.value = ready
            await FallingEdge(self.clk)
            taken = ready and bool(self.valid.value)
            word = int(self.payload.value) if taken else None
            await RisingEdge(self.clk)
            if taken:
                self.beats.append(unpack(self.fields, word))
                self.cycles_at.append(cycle())
        self.ready.value = 0
        assert len(self.beats) == count, \
            f"received {len(self.beats)} of {count} beats in {max_cycles} cycles"
        return self.beats


class CycleCounter:
    """Counts rising edges of ``clk`` from when it is started."""

    def __init__(self, clk):
        self.clk, self.n = clk, 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.n += 1

    def __call__(self):
        return self.n
