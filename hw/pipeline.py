"""A stall-together pipeline: every stage register advances when the output can move.

The enable is ``~o.valid | o.ready``: the last stage is empty or is being emptied. All stages
share it, so the pipeline never holds two results in one stage, the output valid is a
register (it never waits for ready), and under continuous valid and ready one result leaves
every cycle with no bubbles.
"""

from types import SimpleNamespace

from amaranth.hdl import Signal, Value


class StallPipeline:
    """Builds stage registers in module ``m``; ``depth`` counts the stages made so far and
    ``latency`` the registered ones. ``merged``: stage numbers (1-based) that get no
    register (their logic runs in one cycle with the next stage's: a shorter, slower
    pipeline)."""

    def __init__(self, m, en, merged=()):
        self._m, self._en, self.depth, self.latency = m, en, 0, 0
        self._merged = frozenset(merged)

    def stage(self, **values):
        """One stage: a register per named value, loaded when enabled (or, for a merged
        stage, a named combinational signal). Returns them by name."""
        self.depth += 1
        registered = self.depth not in self._merged
        self.latency += registered
        regs = {}
        for name, value in values.items():
            value = Value.cast(value)
            reg = Signal(value.shape(), name=f"s{self.depth}_{name}")
            if not registered:
                self._m.d.comb += reg.eq(value)
            else:
                with self._m.If(self._en):
                    self._m.d.sync += reg.eq(value)
            regs[name] = reg
        return SimpleNamespace(**regs)

    def valid_chain(self, valid_in):
        """The valid bit delayed by ``latency`` enabled stages (call after the last stage)."""
        v = valid_in
        for k in range(self.latency):
            nxt = Signal(name=f"s{k + 1}_valid")
            with self._m.If(self._en):
                self._m.d.sync += nxt.eq(v)
            v = nxt
        return v


def carried(stage, names):
    """The registered copies, in ``stage``, of the values named in ``names``."""
    return {k: getattr(stage, k) for k in names}
