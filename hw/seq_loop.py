"""The Sequencer's loop unit: the loop registers, and the state after the current instruction.

The state once the current instruction completes (the reset state when a program starts)
depends on which of five cases holds (``CASES``): a start, a LOOP that runs, the end of an
iteration with more to go, the end of a loop's last one, anything else. Which case holds
depends on whether the current instruction commits, known late in the cycle; so the unit
shows the state of every case (``cases.case``) and the conditions (``cases.sel``) beside the
chosen one (``cases.next``): with ``fetch_ports=2`` the fetch stage computes what it needs
for every case and chooses last (``by_case``).
"""

import types

from amaranth.hdl import Cat, Const, Module, Shape, Signal, Value, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params

from .seq_decode import BODY_BITS, COUNT_BITS, OFFSET_BITS, STRIDE_BITS
from .seq_run import Control

# the cases, in priority order; the last holds when no condition does
CASES = ("start", "begin", "step", "end", "other")
# How the loop unit makes each case's state (``cases.case``): the fields that are constants
# (``CASE_CONSTANTS``) and those that keep the registers' values (``CASE_KEPT``); the rest
# are new values (``LoopUnit.elaborate``). A reader of a case takes it with ``case_fields``:
# the constants as constants and the kept fields as wide as the registers, so that what it
# computes of a case is the same expression, with the same widths, as when the Sequencer
# was one module (not logic on port signals that synthesis folds later, and differently)
CASE_CONSTANTS = {"start": dict(in_loop=0), "begin": dict(in_loop=1, xoff=0, ooff=0),
                  "end": dict(in_loop=0)}
_FIELDS = ("in_loop", "l_start", "l_end", "l_left", "xstride", "ostride", "xoff", "ooff",
           "xoff_next", "ooff_next")
CASE_KEPT = {"start": _FIELDS[1:], "begin": (),
             "step": ("in_loop", "l_start", "l_end", "xstride", "ostride"),
             "end": _FIELDS[1:], "other": _FIELDS}


def loop_state_layout(prog_depth):
    """The loop registers: ``in_loop``; the body's first and last address (``l_start``,
    ``l_end``); the iterations left after the current one (``l_left``); the strides; the
    offsets of the current iteration and, kept ready so that no adder sits between the loop
    step and the next instruction's addresses, of the next (``xoff_next``, ``ooff_next``)."""
    return data.StructLayout({
        "in_loop": 1, "l_start": range(prog_depth), "l_end": range(prog_depth),
        "l_left": COUNT_BITS, "xstride": STRIDE_BITS, "ostride": STRIDE_BITS,
        "xoff": OFFSET_BITS, "ooff": OFFSET_BITS, "xoff_next": OFFSET_BITS,
        "ooff_next": OFFSET_BITS})


def case_state_layout(prog_depth):
    """The loop state of one case as the fetch stage takes it: as ``loop_state_layout`` but
    as wide as the sums that make the new values (``pc + 1``, ``pc + body``, ``count - 1``,
    ``l_left - 1``, ``xoff_next + xstride``), not yet wrapped to the registers' widths, and
    ``l_left`` signed, as a difference is (the logic the fetch stage was tuned with)."""
    pc_bits = (prog_depth - 1).bit_length() + 1
    return data.StructLayout({
        "in_loop": 1, "l_start": pc_bits, "l_end": pc_bits, "l_left": signed(COUNT_BITS + 1),
        "xstride": STRIDE_BITS, "ostride": STRIDE_BITS, "xoff": OFFSET_BITS,
        "ooff": OFFSET_BITS, "xoff_next": OFFSET_BITS + 1, "ooff_next": OFFSET_BITS + 1})


class LoopCommand(wiring.Signature):
    """From the execute stage (``Out``): ``begin`` (a LOOP commits this cycle) with its
    ``pc`` and fields (``body``, ``count``, ``xstride``, ``ostride``); ``at_end`` (the current
    instruction is the loop body's last); ``advance`` (the current instruction completes).
    To it (``In``): ``in_loop``."""

    def __init__(self, prog_depth):
        super().__init__({
            "begin": Out(1), "pc": Out(range(prog_depth)), "body": Out(BODY_BITS),
            "count": Out(COUNT_BITS), "xstride": Out(STRIDE_BITS), "ostride": Out(STRIDE_BITS),
            "at_end": Out(1), "advance": Out(1), "in_loop": In(1)})


class LoopCases(wiring.Signature):
    """From the loop unit (``Out``): the state after the current instruction (``next``), and
    that state in each of ``CASES`` (``case``, ``case_state_layout``) with the conditions of
    all but the last (``sel``, in priority order)."""

    def __init__(self, prog_depth):
        super().__init__({"sel": Out(len(CASES) - 1), "next": Out(loop_state_layout(prog_depth)),
                          "case": Out(data.ArrayLayout(case_state_layout(prog_depth),
                                                       len(CASES)))})


def case_fields(case, name, prog_depth):
    """The fields of ``case`` (a ``case_state_layout(prog_depth)`` view of the case ``name``)
    by name, as attributes: those constant in that case (``CASE_CONSTANTS``) as constants,
    those that keep a register's value (``CASE_KEPT``) as wide as the register."""
    regs = loop_state_layout(prog_depth)
    fields = {k: case[k] for k, _ in case.shape()}
    for k in CASE_KEPT[name]:
        fields[k] = Value.cast(case[k])[:Shape.cast(regs[k].shape).width]
    for k, v in CASE_CONSTANTS.get(name, {}).items():
        fields[k] = Const(v, regs[k].shape)
    return types.SimpleNamespace(**fields)


def by_case(m, sel, values, shape, name):
    """A signal ``name`` of ``shape``: ``values[i]`` for the first ``sel[i]`` that holds, else
    the last value (a priority multiplexer, the choice made last)."""
    out = Signal(shape, name=name)
    for i, value in enumerate(values):
        last = i == len(values) - 1
        with (m.If(sel[i]) if i == 0 else m.Else() if last else m.Elif(sel[i])):
            m.d.comb += out.eq(value)
    return out


class LoopUnit(wiring.Component):
    """The loop registers (``loop_state_layout``) and the state after the current instruction
    (the machine's ``prog_depth``).

    ===== ===== ==========================================================================
    ctl   In    ``seq_run.Control``: ``go`` (the program starts: the ``start`` case),
                ``start`` (clears ``in_loop``)
    cmd   In    ``LoopCommand``: the current instruction
    cases Out   ``LoopCases`` (comb): the registers take ``cases.next`` on ``cmd.advance``
    ===== ===== ==========================================================================

    A LOOP that runs starts its first iteration (offsets 0, ``count - 1`` left); the end of
    an iteration with more to go steps the offsets by the strides; the end of the last one,
    and a start, leave the loop. Bit-exact reference: ``golden.sequencer``'s LOOP.
    """

    def __init__(self, **machine):
        self._p = spec_params.machine(**machine)
        depth = self._p["prog_depth"]
        super().__init__({"ctl": In(Control()), "cmd": In(LoopCommand(depth)),
                          "cases": Out(LoopCases(depth))})

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        cmd, out = self.cmd, self.cases
        cur = Signal(loop_state_layout(self._p["prog_depth"]), name="loop")
        st = {k: cur[k] for k, _ in cur.shape()}
        step = Signal()
        m.d.comb += [step.eq(cmd.at_end & (cur.l_left != 0)), cmd.in_loop.eq(cur.in_loop)]
        const = {name: {k: Const(v, cur.shape()[k].shape) for k, v in c.items()}
                 for name, c in CASE_CONSTANTS.items()}
        changed = {  # the fields neither kept nor constant
            "begin": dict(l_start=cmd.pc + 1, l_end=cmd.pc + cmd.body, l_left=cmd.count - 1,
                          xstride=cmd.xstride, ostride=cmd.ostride, xoff_next=cmd.xstride,
                          ooff_next=cmd.ostride),
            "step": dict(l_left=cur.l_left - 1, xoff=cur.xoff_next, ooff=cur.ooff_next,
                         xoff_next=cur.xoff_next + cur.xstride,
                         ooff_next=cur.ooff_next + cur.ostride)}
        cases = [{**{k: st[k] for k in CASE_KEPT[name]}, **const.get(name, {}),
                  **changed.get(name, {})} for name in CASES]
        assert all(len(values) == len(st) for values in cases)  # every field, once
        for i, values in enumerate(cases):
            m.d.comb += [out.case[i][k].eq(v) for k, v in values.items()]
        sel = [self.ctl.go, cmd.begin, step, cmd.at_end]
        m.d.comb += out.sel.eq(Cat(*sel))
        # the registers' next values from the cases' expressions and conditions themselves
        # (not through ``out``: constants stay constants), field by field, each its own
        # multiplexer
        for k, field in cur.shape():
            m.d.comb += out.next[k].eq(by_case(
                m, sel, [values[k] for values in cases], field.shape, f"n_{k}"))
        with m.If(cmd.advance):
            m.d.sync += cur.eq(out.next)
        # a start leaves the loop while nothing executes (``busy & ~prime`` low: exclusive
        # with a start), written as the choice after it, as the reset logic it always was
        with m.If(self.ctl.busy & ~self.ctl.prime):
            pass
        with m.Elif(self.ctl.start):
            m.d.sync += cur.in_loop.eq(0)
        return m
