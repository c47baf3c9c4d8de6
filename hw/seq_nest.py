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

from amaranth.hdl import Const, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import isa
from sparq.spec import params as spec_params

from .seq_decode import BODY_BITS, COUNT_BITS
from .seq_loop import by_case
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
        cmd = self.cmd
        lay = _level_layout(self._p["prog_depth"])
        r = _Registers(
            depth=Signal(range(LEVELS + 1), name="nest_depth"),
            lv=[Signal(lay, name=f"level{k}") for k in range(LEVELS)],
            strd={k: [Signal(isa.field_width("stride", "STRD"), name=f"{k}stride{lvl}")
                      for lvl in range(LEVELS)] for k in ("w", "ch")},
            at={k: [Signal(offset_bits(k), name=f"at_{k}{lvl}") for lvl in range(LEVELS)]
                for k in KINDS},
            nx={k: [Signal(offset_bits(k), name=f"nx_{k}{lvl}") for lvl in range(LEVELS)]
                for k in KINDS},
            cur={k: Signal(offset_bits(k), name=f"cur_{k}") for k in KINDS})
        m.d.comb += cmd.in_loop.eq(r.depth != 0)
        top = self._top(m, r.depth, r.lv)
        # each case's view and register writes, made from the registers (and the current
        # instruction's fields) alone; which case holds is chosen last
        views = [_reset_view(), self._begin(m, r, top), self._end(m, r, top), _other_view(r, top)]
        sel = [self.ctl.go, cmd.begin, cmd.at_end]
        for name, _ in nest_view_layout(self._p["prog_depth"]):
            field = getattr(self.view.next, name)
            if name == "off":
                for k in KINDS:
                    m.d.comb += field[k].eq(by_case(m, sel, [v["off"][k] for v in views],
                                                    len(field[k]), f"view_off_{k}"))
            else:
                m.d.comb += field.eq(by_case(m, sel, [v[name] for v in views],
                                             len(field), f"view_{name}"))
        with m.If(cmd.strd):
            for k, regs in r.strd.items():
                for lvl, reg in enumerate(regs):
                    with m.If((cmd.kind == isa.STRIDE_KINDS.index(k)) & (cmd.level == lvl)):
                        m.d.sync += reg.eq(cmd.stride)
        # a start: no level open, strides 0 (while nothing executes: exclusive with the above)
        with m.If(self.ctl.busy & ~self.ctl.prime):
            pass
        with m.Elif(self.ctl.start):
            m.d.sync += [r.depth.eq(0), *[r.cur[k].eq(0) for k in KINDS],
                         *[x.eq(0) for regs in r.strd.values() for x in regs]]
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
        end, back, target = (_pick(m, is_top, [getattr(x, f) for x in lv], f"top_{f}")
                             for f in ("end", "back", "target"))
        return dict(is_top=is_top, member=member, end=end, back=back, target=target)

    def _begin(self, m, r, top):
        """A LOOP commits: level ``depth`` opens (its first iteration). Writes it when the
        LOOP completes; returns the view after it."""
        cmd = self.cmd
        pc_shape = range(self._p["prog_depth"])
        end, start = Signal(pc_shape, name="begin_end"), Signal(pc_shape, name="begin_start")
        shared, more = Signal(name="begin_shared"), Signal(name="begin_more")
        m.d.comb += [end.eq(cmd.pc + cmd.body), start.eq(cmd.pc + 1),
                     shared.eq((r.depth != 0) & (end == top["end"])), more.eq(cmd.count > 1)]
        back, target = more | (shared & top["back"]), Mux(more, start, top["target"])
        stride = {"x": cmd.xstride, "o": cmd.ostride}
        with m.If(cmd.advance & cmd.begin):
            m.d.sync += r.depth.eq(r.depth + 1)
            for d in range(LEVELS):
                new = r.lv[d]
                with m.If(r.depth == d):
                    m.d.sync += [new.start.eq(start), new.end.eq(end),
                                 new.left.eq(cmd.count - 1), new.idx.eq(0),
                                 new.shared.eq(shared), new.back.eq(back),
                                 new.target.eq(target), new.xs.eq(cmd.xstride),
                                 new.os.eq(cmd.ostride)]
                    for k in KINDS:
                        step = stride[k] if k in stride else r.strd[k][d]
                        m.d.sync += [r.at[k][d].eq(r.cur[k]), r.nx[k][d].eq(r.cur[k] + step)]
        return dict(in_loop=1, depth=r.depth + 1, l_end=end, back=back, l_start=target,
                    off=r.cur, i0=Mux(r.depth >= 1, r.lv[0].idx, 0),
                    i1=Mux(r.depth >= 2, r.lv[1].idx, 0))

    def _end(self, m, r, top):
        """The current instruction ends the innermost body: the innermost level of the group
        with iterations left steps (``steps``), or the group exits (``pops[k]``: to depth
        k). Writes it when the instruction completes; returns the view after it."""
        member, lv = top["member"], r.lv
        steps = [Signal(name=f"steps{k}") for k in range(LEVELS)]
        pops = [Signal(name=f"pops{k}") for k in range(LEVELS)]
        taken = Const(0)
        for k in reversed(range(LEVELS)):
            m.d.comb += steps[k].eq(member[k] & (lv[k].left != 0) & ~taken)
            taken = taken | steps[k]
        for k in range(LEVELS):
            m.d.comb += pops[k].eq(~taken & member[k] & (~member[k - 1] if k else 1))
        stride = {"x": [x.xs for x in lv], "o": [x.os for x in lv], **r.strd}
        alts = []  # (condition, view) of each outcome
        for k in range(LEVELS):
            more = lv[k].left > 1
            back = more | ((lv[k].shared & lv[k - 1].back) if k else 0)
            target = Mux(more, lv[k].start, lv[k - 1].target if k else 0)
            with m.If(self.cmd.advance & ~self.cmd.begin & self.cmd.at_end & steps[k]):
                m.d.sync += [r.depth.eq(k + 1), lv[k].left.eq(lv[k].left - 1),
                             lv[k].idx.eq(lv[k].idx + 1), lv[k].back.eq(back),
                             lv[k].target.eq(target),
                             *[r.at[kd][k].eq(r.nx[kd][k]) for kd in KINDS],
                             *[r.nx[kd][k].eq(r.nx[kd][k] + stride[kd][k]) for kd in KINDS],
                             *[r.cur[kd].eq(r.nx[kd][k]) for kd in KINDS]]
            idx = [lv[i].idx + (1 if i == k else 0) for i in range(2)]
            alts.append((steps[k], dict(
                in_loop=1, depth=k + 1, l_end=lv[k].end, back=back, l_start=target,
                off={kd: r.nx[kd][k] for kd in KINDS}, i0=idx[0],
                i1=idx[1] if k >= 1 else 0)))
            with m.If(self.cmd.advance & ~self.cmd.begin & self.cmd.at_end & pops[k]):
                m.d.sync += [r.depth.eq(k),
                             *[r.cur[kd].eq(r.at[kd][k - 1] if k else 0) for kd in KINDS]]
            out = lv[k - 1] if k else None
            alts.append((pops[k], dict(
                in_loop=int(k > 0), depth=k, l_end=out.end if k else 0,
                back=out.back if k else 0, l_start=out.target if k else 0,
                off={kd: r.at[kd][k - 1] if k else 0 for kd in KINDS},
                i0=lv[0].idx if k >= 1 else 0, i1=lv[1].idx if k >= 2 else 0)))
        return _one_hot_view(m, alts, "end")


class _Registers:
    """The loop nest's registers: ``depth`` (levels open), per level ``lv`` (``_level_layout``),
    the STRD strides ``strd[kind][level]``, per kind and level ``at`` (the total with the
    level at its index and those inside it at 0) and ``nx`` (the same after its next step),
    and per kind ``cur`` (the total now)."""

    def __init__(self, **regs):
        self.__dict__.update(regs)


def _reset_view():
    """The view when a program starts: no level open, every offset 0."""
    return dict(in_loop=0, depth=0, l_end=0, back=0, l_start=0, off=dict.fromkeys(KINDS, 0),
                i0=0, i1=0)


def _other_view(r, top):
    """The view when the loops stay as they are."""
    return dict(in_loop=r.depth != 0, depth=r.depth, l_end=top["end"], back=top["back"],
                l_start=top["target"], off=r.cur, i0=Mux(r.depth >= 1, r.lv[0].idx, 0),
                i1=Mux(r.depth >= 2, r.lv[1].idx, 0))


def _one_hot_view(m, alts, name):
    """The view of the one alternative whose condition holds (``alts``: (condition, view)
    pairs, exactly one holding)."""
    conds = [c for c, _ in alts]
    view = {}
    for key in alts[0][1]:
        if key == "off":
            view["off"] = {k: _pick(m, conds, [v["off"][k] for _, v in alts],
                                    f"{name}_off_{k}", width=offset_bits(k)) for k in KINDS}
        else:
            width = max(len(Value.cast(v[key])) for _, v in alts)
            view[key] = _pick(m, conds, [v[key] for _, v in alts], f"{name}_{key}",
                              width=width)
    return view


def _pick(m, sel, values, name, width=None):
    """The value whose one-hot ``sel`` bit is set (0 when none is): an AND-OR multiplexer."""
    out = Signal(width, name=name) if width else Signal.like(values[0], name=name)
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
