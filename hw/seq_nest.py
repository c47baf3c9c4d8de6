"""The convolution machine's loop unit: ``LOOP_LEVELS`` nested loops and their offsets.

A convolution machine (``spec.params.machine(conv=True)``) nests loops ``LOOP_LEVELS`` deep
and indexes four kinds of operand (``KINDS``): activations (``x``) and outputs (``o``), whose
strides each LOOP sets for its level, and weights (``w``) and channels (``ch``), whose strides
STRD sets per level while the level is closed (``golden.sequencer``). The offset of a kind
is ``sum_l i_l * stride_l``; it is kept as a running total, so that no adder of three terms
sits before an address: per level ``at`` (the total with that level at its index and the
levels inside it at 0) and ``cur`` (the total now). A level that steps adds its stride to
its ``at``, which becomes ``cur``; levels that exit leave ``cur`` at the ``at`` of the level
around them; a level that opens starts with ``at = cur``.

Ends may be shared: when the instruction that completes is the last of the innermost body
(or a predicated-off LOOP whose skipped body ends there), every open level whose body ends
at the same address is in the *group*; the innermost of them with iterations left steps
(those inside it exit), or, with none left, the whole group exits. Each level keeps the
summary the fetch stage needs of the group its end closes, counting only the levels from it
outwards: ``back`` (some level of the group has iterations left, so reaching the end jumps
back) and ``target`` (where to: the start of the innermost such level), kept up to date
when the level opens or steps. The fetch stage sees the state after the current instruction
through ``NestView`` (the innermost level's end, ``back`` and ``target``, and the offsets).
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import isa
from sparq.spec import params as spec_params

from .seq_decode import BODY_BITS, COUNT_BITS
from .seq_run import Control

LEVELS = isa.LOOP_LEVELS
KINDS = ("x", "o", "w", "ch")
# each kind's stride field: LOOP's for x and o, STRD's for w and ch
STRIDE_FIELDS = {"x": ("xstride", "LOOP"), "o": ("ostride", "LOOP"), "w": ("stride", "STRD"),
                 "ch": ("stride", "STRD")}


def offset_bits(kind):
    """The width of a kind's offset: a sum of ``LEVELS`` products of an index (below
    ``1 << COUNT_BITS``) and a stride, which never wraps."""
    return isa.field_width(*STRIDE_FIELDS[kind]) + COUNT_BITS + (LEVELS - 1).bit_length()


def nest_view_layout(prog_depth):
    """What the fetch stage takes of a loop state: ``in_loop``, ``depth`` (levels open), the
    innermost body's last address (``l_end``), whether reaching it jumps back (``back``) and
    where (``l_start``), the offsets (``off``) and the indices of levels 0 and 1 (``i0``,
    ``i1``; 0 where the level is not open)."""
    return data.StructLayout({
        "in_loop": 1, "depth": range(LEVELS + 1), "l_end": range(prog_depth), "back": 1,
        "l_start": range(prog_depth),
        "off": data.StructLayout({k: offset_bits(k) for k in KINDS}),
        "i0": COUNT_BITS, "i1": COUNT_BITS})


def _level_layout(prog_depth):
    """One level's registers: its body (``start``, ``end``), iterations left after the
    current one (``left``), index, whether its end is the enclosing level's (``shared``),
    the group summary (``back``, ``target``), and the strides LOOP set (``xs``, ``os``)."""
    return data.StructLayout({
        "start": range(prog_depth), "end": range(prog_depth), "left": COUNT_BITS,
        "idx": COUNT_BITS, "shared": 1, "back": 1, "target": range(prog_depth),
        "xs": isa.field_width("xstride", "LOOP"), "os": isa.field_width("ostride", "LOOP")})


class NestCommand(wiring.Signature):
    """From the execute stage (``Out``): ``begin`` (a LOOP commits this cycle) with its ``pc``
    and fields; ``at_end`` (the current instruction ends the innermost body: its address, or
    a predicated-off LOOP's skipped body's last, is the body's last); ``advance`` (the current
    instruction completes); ``strd`` (a STRD commits) with its ``level``, ``kind`` and
    ``stride``. To it (``In``): ``in_loop``."""

    def __init__(self, prog_depth):
        w = isa.field_width
        super().__init__({
            "begin": Out(1), "pc": Out(range(prog_depth)), "body": Out(BODY_BITS),
            "count": Out(COUNT_BITS), "xstride": Out(w("xstride", "LOOP")),
            "ostride": Out(w("ostride", "LOOP")), "at_end": Out(1), "advance": Out(1),
            "strd": Out(1), "level": Out(w("level", "STRD")), "kind": Out(w("kind", "STRD")),
            "stride": Out(w("stride", "STRD")), "in_loop": In(1)})


class LoopNest(wiring.Component):
    """The nested loop registers and the state after the current instruction (the
    machine's ``prog_depth``; ``conv=True``).

    ===== ===== ==========================================================================
    ctl   In    ``seq_run.Control``: ``go`` (the program starts: the next state is the reset
                one), ``start`` (the registers reset: no level open, strides 0)
    cmd   In    ``NestCommand``: the current instruction
    view  Out   ``NestView`` (comb): ``view.next``, the state after the current instruction
    ===== ===== ==========================================================================

    Bit-exact reference: ``golden.sequencer`` (``_run``'s loop stack, ``offsets``). The
    legality of what it is told (a LOOP at the deepest level, a body past the enclosing one,
    a STRD of an open level) is the fetch stage's to check: an illegal instruction never
    commits.
    """

    def __init__(self, **machine):
        self._p = spec_params.machine(**machine)
        depth = self._p["prog_depth"]
        super().__init__({"ctl": In(Control()), "cmd": In(NestCommand(depth)),
                          "view": Out(NestView(depth))})

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        depth_n = self._p["prog_depth"]
        cmd = self.cmd
        lay = _level_layout(depth_n)
        depth = Signal(range(LEVELS + 1), name="nest_depth")
        lv = [Signal(lay, name=f"level{k}") for k in range(LEVELS)]
        strd = {k: [Signal(isa.field_width("stride", "STRD"), name=f"{k}stride{lvl}")
                    for lvl in range(LEVELS)] for k in ("w", "ch")}
        at = {k: [Signal(offset_bits(k), name=f"at_{k}{lvl}") for lvl in range(LEVELS)]
              for k in KINDS}
        cur = {k: Signal(offset_bits(k), name=f"cur_{k}") for k in KINDS}
        m.d.comb += cmd.in_loop.eq(depth != 0)
        top = self._top(m, depth, lv)

        # the next value of every register (``n_*``), from the one case that holds
        n_depth = Signal.like(depth, name="n_depth")
        n_lv = [Signal(lay, name=f"n_level{k}") for k in range(LEVELS)]
        n_at = {k: [Signal.like(s, name=f"n_{s.name}") for s in at[k]] for k in KINDS}
        n_cur = {k: Signal.like(cur[k], name=f"n_cur_{k}") for k in KINDS}
        m.d.comb += [n_depth.eq(depth), *[n.eq(r) for n, r in zip(n_lv, lv, strict=True)],
                     *[n_at[k][lvl].eq(at[k][lvl]) for k in KINDS for lvl in range(LEVELS)],
                     *[n_cur[k].eq(cur[k]) for k in KINDS]]
        stride = {"x": [r.xs for r in lv], "o": [r.os for r in lv], **strd}
        with m.If(self.ctl.go):
            m.d.comb += [n_depth.eq(0), *[n_cur[k].eq(0) for k in KINDS]]
        with m.Elif(cmd.begin):
            self._begin(m, (depth, lv, cur, top), (n_depth, n_lv, n_at))
        with m.Elif(cmd.at_end):
            self._end(m, (depth, lv, at, stride, top), (n_depth, n_lv, n_at, n_cur))

        with m.If(cmd.advance):
            m.d.sync += [depth.eq(n_depth), *[r.eq(n) for r, n in zip(lv, n_lv, strict=True)],
                         *[at[k][lvl].eq(n_at[k][lvl]) for k in KINDS
                           for lvl in range(LEVELS)],
                         *[cur[k].eq(n_cur[k]) for k in KINDS]]
        with m.If(cmd.strd):
            for k, regs in strd.items():
                for lvl, reg in enumerate(regs):
                    with m.If((cmd.kind == isa.STRIDE_KINDS.index(k)) & (cmd.level == lvl)):
                        m.d.sync += reg.eq(cmd.stride)
        # a start: no level open, strides 0 (while nothing executes: exclusive with the above)
        with m.If(self.ctl.busy & ~self.ctl.prime):
            pass
        with m.Elif(self.ctl.start):
            m.d.sync += [depth.eq(0), *[cur[k].eq(0) for k in KINDS],
                         *[r.eq(0) for regs in strd.values() for r in regs]]
        self._view(m, n_depth, n_lv, n_cur)
        return m

    @staticmethod
    def _top(m, depth, lv):
        """The innermost open level's end, ``back`` and ``target`` (``is_top[k]``: level k
        is the innermost), and ``member[k]``: level k is in the group its end closes."""
        is_top = [depth == k + 1 for k in range(LEVELS)]
        member = [Signal(name=f"member{k}") for k in range(LEVELS)]
        m.d.comb += member[LEVELS - 1].eq(is_top[LEVELS - 1])
        for k in reversed(range(LEVELS - 1)):
            m.d.comb += member[k].eq(is_top[k] | (member[k + 1] & lv[k + 1].shared))
        end, back, target = (_pick(m, is_top, [getattr(r, f) for r in lv], f"top_{f}")
                             for f in ("end", "back", "target"))
        return dict(is_top=is_top, member=member, end=end, back=back, target=target)

    def _begin(self, m, regs, nxt):
        """A LOOP commits: level ``depth`` opens (its first iteration)."""
        cmd = self.cmd
        depth, lv, cur, top = regs
        n_depth, n_lv, n_at = nxt
        end = Signal(range(self._p["prog_depth"]), name="begin_end")
        m.d.comb += end.eq(cmd.pc + cmd.body)
        for d in range(LEVELS):
            with m.If(depth == d):
                shared = (end == top["end"]) if d else Const(0)
                more = cmd.count > 1
                m.d.comb += [
                    n_depth.eq(d + 1),
                    n_lv[d].start.eq(cmd.pc + 1), n_lv[d].end.eq(end),
                    n_lv[d].left.eq(cmd.count - 1), n_lv[d].idx.eq(0),
                    n_lv[d].shared.eq(shared), n_lv[d].xs.eq(cmd.xstride),
                    n_lv[d].os.eq(cmd.ostride),
                    n_lv[d].back.eq(more | (shared & top["back"])),
                    n_lv[d].target.eq(Mux(more, cmd.pc + 1, top["target"])),
                    *[n_at[k][d].eq(cur[k]) for k in KINDS]]

    @staticmethod
    def _end(m, regs, nxt):
        """The current instruction ends the innermost body: the innermost level of the group
        with iterations left steps, or the group exits."""
        depth, lv, at, stride, top = regs
        n_depth, n_lv, n_at, n_cur = nxt
        member = top["member"]
        steps = [Signal(name=f"steps{k}") for k in range(LEVELS)]
        taken = Const(0)
        for k in reversed(range(LEVELS)):
            m.d.comb += steps[k].eq(member[k] & (lv[k].left != 0) & ~taken)
            taken = taken | steps[k]
        for k in range(LEVELS):
            with m.If(steps[k]):
                more = lv[k].left > 1
                outer_back = (lv[k].shared & lv[k - 1].back) if k else Const(0)
                outer_target = lv[k - 1].target if k else Const(0)
                m.d.comb += [
                    n_depth.eq(k + 1), n_lv[k].left.eq(lv[k].left - 1),
                    n_lv[k].idx.eq(lv[k].idx + 1),
                    n_lv[k].back.eq(more | outer_back),
                    n_lv[k].target.eq(Mux(more, lv[k].start, outer_target))]
                for kind in KINDS:
                    total = at[kind][k] + stride[kind][k]
                    m.d.comb += [n_at[kind][k].eq(total), n_cur[kind].eq(total)]
        # none steps: the group exits; the level around its outermost member is the top
        with m.If(~taken):
            for k in range(LEVELS):
                outside = ~member[k - 1] if k else Const(1)
                with m.If(member[k] & outside):
                    m.d.comb += n_depth.eq(k)
                    m.d.comb += [n_cur[kind].eq(at[kind][k - 1] if k else 0) for kind in KINDS]

    def _view(self, m, n_depth, n_lv, n_cur):
        """``next``: the state after the current instruction as the fetch stage takes it."""
        nx = self.view.next
        is_top = [n_depth == k + 1 for k in range(LEVELS)]
        m.d.comb += [nx.in_loop.eq(n_depth != 0), nx.depth.eq(n_depth),
                     nx.l_end.eq(_pick(m, is_top, [r.end for r in n_lv], "view_end")),
                     nx.back.eq(_pick(m, is_top, [r.back for r in n_lv], "view_back")),
                     nx.l_start.eq(_pick(m, is_top, [r.target for r in n_lv], "view_start")),
                     *[nx.off[k].eq(n_cur[k]) for k in KINDS],
                     nx.i0.eq(Mux(n_depth >= 1, n_lv[0].idx, 0)),
                     nx.i1.eq(Mux(n_depth >= 2, n_lv[1].idx, 0))]


def _pick(m, sel, values, name):
    """The value whose one-hot ``sel`` bit is set (0 when none is): an AND-OR multiplexer."""
    out = Signal.like(values[0], name=name)
    m.d.comb += out.eq(_or([Mux(s, v, 0) for s, v in zip(sel, values, strict=True)]))
    return out


def _or(values):
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


class NestView(wiring.Signature):
    """From the loop nest (``Out``): ``next``, the state after the current instruction
    (``nest_view_layout``), as the fetch stage takes it."""

    def __init__(self, prog_depth):
        super().__init__({"next": Out(nest_view_layout(prog_depth))})
