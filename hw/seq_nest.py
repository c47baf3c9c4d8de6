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
when the level opens or steps.

The fetch stage sees the state after the current instruction through ``NestView``. Which
level is then the innermost depends on the case that holds (a start, a LOOP that begins, the
end of the innermost body, anything else), and whether a LOOP begins on the current
instruction's predicate, known late; the next program address hangs on a comparison with
that level's end. So the view shows *candidates* (``cand``): one per level (it is the
innermost after the current instruction, no LOOP beginning) and one for a LOOP that begins,
each with its end and its group summary as they will be, made from registers alone, and a
one-hot ``sel``. The fetch stage compares its addresses with every candidate's end at once
and the case, through ``sel``, chooses among the verdicts last (``seq_fetch``). The offsets
and indices (``next``) do not depend on a LOOP beginning (it leaves them as they are). What
the candidates need of a chain of levels (the innermost level, the group, iterations left,
the outcome of an end) is kept in registers beside the levels, each made for every event
and the event chosen last (``LoopNest._flags``).
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
    """What the fetch stage takes of a loop state beside the candidates: ``depth`` (levels
    open), the offsets (``off``) and the indices of levels 0 and 1 (``i0``, ``i1``; 0 where
    the level is not open)."""
    return data.StructLayout({
        "depth": range(LEVELS + 1),
        "off": data.StructLayout({k: offset_bits(k) for k in KINDS}),
        "i0": COUNT_BITS, "i1": COUNT_BITS})


def candidate_layout(prog_depth):
    """A candidate for the innermost level after the current instruction (``NestView``):
    ``sel`` (it is the one, if its case holds: ``NestView.plain`` for a level's, while the
    LOOP's that begins is its case; at most one is then set, none when no level will be
    open), that level's body's last address (``end``), whether reaching it jumps back
    (``back``) and where (``target``; ``target1``, the address after it, made from
    registers), the level whose body starts there (``tlev``) or, for the LOOP that begins,
    that it is its own (``tnew``: its first word is then the decode stage's), and ``full``
    (the nest is then ``LEVELS`` deep)."""
    return data.StructLayout({"sel": 1, "end": range(prog_depth), "back": 1,
                              "target": range(prog_depth), "target1": range(prog_depth + 1),
                              "tlev": range(LEVELS), "tnew": 1, "full": 1})


def _level_layout(prog_depth):
    """One level's registers: its body (``start``, ``end``), iterations left after the
    current one (``left``), index, whether its end is the enclosing level's (``shared``),
    the group summary (``back``, ``target`` and the level whose start it is, ``tlev``), the
    strides LOOP set (``xs``, ``os``), and flags kept beside them so that no comparison or
    chain of them sits before the candidates: ``top`` (it is the innermost open level),
    ``member`` (it is in the group the innermost level's end closes), ``nz`` (``left !=
    0``) and ``more`` (``left > 1``)."""
    return data.StructLayout({
        "start": range(prog_depth), "end": range(prog_depth), "left": COUNT_BITS,
        "idx": COUNT_BITS, "shared": 1, "back": 1, "target": range(prog_depth),
        "tlev": range(LEVELS),
        "xs": isa.field_width("xstride", "LOOP"), "os": isa.field_width("ostride", "LOOP"),
        "top": 1, "member": 1, "nz": 1, "more": 1})


class NestCommand(wiring.Signature):
    """From the execute stage (``Out``): ``begin`` (a LOOP commits this cycle) with its ``pc``
    and fields; ``at_end`` (the current instruction ends the innermost body: its address, or
    a predicated-off LOOP's skipped body's last, is the body's last); ``advance`` (the current
    instruction completes); ``strd`` (a STRD commits) with its ``level``, ``kind`` and
    ``stride``. For the state the fetch stage sees, registers taken with the instruction:
    ``loop_on`` (it is a LOOP predicated on: it begins a level, unless it is illegal or the
    datapath aborts, when nothing after it is fetched; clear while idle), ``more`` (a LOOP's
    count is above 1), and a LOOP's body's last address (``last``) and whether it is the
    innermost level's end (``shared``), both found by the fetch stage when it fetched the
    LOOP. To it (``In``): ``in_loop``."""

    def __init__(self, prog_depth):
        w = isa.field_width
        super().__init__({
            "begin": Out(1), "pc": Out(range(prog_depth)), "body": Out(BODY_BITS),
            "count": Out(COUNT_BITS), "xstride": Out(w("xstride", "LOOP")),
            "ostride": Out(w("ostride", "LOOP")), "at_end": Out(1), "advance": Out(1),
            "strd": Out(1), "level": Out(w("level", "STRD")), "kind": Out(w("kind", "STRD")),
            "stride": Out(w("stride", "STRD")), "loop_on": Out(1), "more": Out(1),
            "last": Out(range(prog_depth)), "shared": Out(1), "in_loop": In(1)})


class LoopNest(wiring.Component):
    """The nested loop registers and the state after the current instruction (the
    machine's ``prog_depth``; ``conv=True``).

    ===== ===== ==========================================================================
    ctl   In    ``seq_run.Control``: ``busy`` (while idle the registers reset: no level
                open, strides 0)
    cmd   In    ``NestCommand``: the current instruction
    view  Out   ``NestView`` (comb): the state after the current instruction, ``view.next``
                and the candidates for its innermost level, ``view.cand``
    ===== ===== ==========================================================================

    The registers reset in every idle cycle, not only at a start: a start's first
    instruction (``ctl.go``) then finds them reset, and with the command's case registers
    clear (``loop_on``, and ``at_end`` does not matter with no level open) the view is the
    reset state without ``go`` in its logic (a start with ``go`` in its own cycle comes
    after an idle cycle: ``seq_run.RunControl``'s ``stale``).

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
            cur={k: Signal(offset_bits(k), name=f"cur_{k}") for k in KINDS},
            steps=[Signal(name=f"steps{k}") for k in range(LEVELS)],
            pops=[Signal(name=f"pops{k}") for k in range(LEVELS)])
        m.d.comb += cmd.in_loop.eq(r.depth != 0)
        self._flags(m, r)
        top = self._top(m, r.lv)
        # each case's view and register writes, made from the registers (and the current
        # instruction's fields) alone; which case holds is chosen last
        begin, end = self._begin(m, r, top), self._end(m, r, top)
        self._candidates(m, r, top, begin, end)
        self._view(m, r, end["view"])
        with m.If(cmd.strd):
            for k, regs in r.strd.items():
                for lvl, reg in enumerate(regs):
                    with m.If((cmd.kind == isa.STRIDE_KINDS.index(k)) & (cmd.level == lvl)):
                        m.d.sync += reg.eq(cmd.stride)
        # idle: no level open, strides 0 (nothing executes: exclusive with the above)
        with m.If(~self.ctl.busy):
            m.d.sync += [r.depth.eq(0), *[r.cur[k].eq(0) for k in KINDS],
                         *[x.eq(0) for regs in r.strd.values() for x in regs]]
        return m

    @staticmethod
    def _top(m, lv):
        """The innermost open level's ``back``, ``target`` (and ``target1``) and ``tlev``
        (``is_top[k]``: level k is the innermost, a register: ``_level_layout``)."""
        is_top = [x.top for x in lv]
        back, target, tlev = (_pick(m, is_top, [getattr(x, f) for x in lv], f"top_{f}")
                              for f in ("back", "target", "tlev"))
        target1 = _pick(m, is_top, [x.target + 1 for x in lv], "top_target1",
                        width=len(lv[0].target) + 1)
        return dict(is_top=is_top, back=back, target=target, target1=target1, tlev=tlev)

    def _flags(self, m, r):
        """The flags kept beside the level registers (``_level_layout``: ``top``, ``member``,
        ``nz``, ``more``) and the outcome of an end they make (``r.steps``: level k steps;
        ``r.pops[k]``: the group exits to depth k), all registers. Each event's flags (a
        LOOP that begins, an end, idle) and their outcome are made from registers alone
        (``_flags_after``), and the event, which waits for the current instruction's
        completion, chooses among them last: the candidates and the offsets then read the
        outcome with no logic before it."""
        cmd, lv = self.cmd, r.lv
        keep = {f: [x[f] for x in lv] for f in _FLAGS}
        idle = {f: [Const(0)] * LEVELS if f in ("top", "member") else keep[f] for f in _FLAGS}
        after = [idle, *self._flags_after(m, r, keep), keep]
        sel = [~self.ctl.busy, cmd.advance & cmd.begin, cmd.advance & cmd.at_end]
        for f in _FLAGS:
            for k, x in enumerate(lv):
                m.d.sync += x[f].eq(by_case(m, sel, [a[f][k] for a in after], 1, f"{f}{k}_next"))
        outcomes = [_outcome(a["member"], a["nz"]) for a in after[:-1]]
        for n, reg in enumerate((r.steps, r.pops)):
            for k, x in enumerate(reg):
                m.d.sync += x.eq(by_case(m, sel, [o[n][k] for o in outcomes] + [x], 1,
                                         f"{('steps', 'pops')[n]}{k}_next"))

    def _flags_after(self, m, r, keep):
        """The flags after a LOOP that begins (at depth ``r.depth``: itself the innermost,
        its group its own and, if it shares its end, the innermost level's) and after an end
        (level k steps: the innermost, the levels inside it gone; the group exits to depth
        k: level k-1 the innermost, its group as far as the ends are shared), each chosen
        by registers (``r.depth``, ``r.steps``, ``r.pops``)."""
        cmd, lv = self.cmd, r.lv

        def at(d, f, value):  # the flags ``f`` with level d's set to ``value``
            return [value if j == d else keep[f][j] for j in range(LEVELS)]

        def top(d):
            return [Const(j == d) for j in range(LEVELS)]

        begins, ends = [], []
        for d in range(LEVELS):
            begins.append((r.depth == d, {
                "top": top(d), "nz": at(d, "nz", cmd.more), "more": at(d, "more", cmd.count > 2),
                "member": [(Const(1) if j == d else cmd.shared & lv[j].member) if j <= d
                           else Const(0) for j in range(LEVELS)]}))
            ends.append((r.steps[d], {
                "top": top(d), "nz": at(d, "nz", lv[d].more),
                "more": at(d, "more", lv[d].left > 2),
                "member": [lv[j].member if j <= d else Const(0) for j in range(LEVELS)]}))
            ends.append((r.pops[d], {
                "top": top(d - 1), "nz": keep["nz"], "more": keep["more"],
                "member": [_all(y.shared for y in lv[j + 1:d]) if j < d else Const(0)
                           for j in range(LEVELS)]}))
        return [{f: [_pick(m, [c for c, _ in alts], [v[f][k] for _, v in alts],
                           f"{name}_{f}{k}", width=1) for k in range(LEVELS)]
                 for f in _FLAGS} for name, alts in (("begin", begins), ("end", ends))]

    def _begin(self, m, r, top):
        """A LOOP commits: level ``depth`` opens (its first iteration). Writes it when the
        LOOP completes; returns its candidate (``candidate_layout`` but ``sel``). Its end
        and whether the innermost level's ends there (``cmd.last``, ``cmd.shared``) come
        registered from the fetch stage: no adder and no comparison before the candidate."""
        cmd = self.cmd
        start = Signal(range(self._p["prog_depth"]), name="begin_start")
        more = cmd.more
        m.d.comb += start.eq(cmd.pc + 1)
        back, target = more | (cmd.shared & top["back"]), Mux(more, start, top["target"])
        tlev = Mux(more, r.depth, top["tlev"])
        stride = {"x": cmd.xstride, "o": cmd.ostride}
        for d in range(LEVELS):
            m.d.comb += self.view.opens[d].eq(cmd.advance & cmd.begin & (r.depth == d))
        with m.If(cmd.advance & cmd.begin):
            m.d.sync += r.depth.eq(r.depth + 1)
            for d in range(LEVELS):
                new = r.lv[d]
                with m.If(r.depth == d):
                    m.d.sync += [new.start.eq(start), new.end.eq(cmd.last),
                                 new.left.eq(cmd.count - 1), new.idx.eq(0),
                                 new.shared.eq(cmd.shared), new.back.eq(back),
                                 new.target.eq(target), new.tlev.eq(tlev),
                                 new.xs.eq(cmd.xstride), new.os.eq(cmd.ostride)]
                    for k in KINDS:
                        step = stride[k] if k in stride else r.strd[k][d]
                        m.d.sync += [r.at[k][d].eq(r.cur[k]), r.nx[k][d].eq(r.cur[k] + step)]
        return dict(end=cmd.last, back=back, target=target,
                    target1=Mux(more, cmd.pc + 2, top["target1"]), tlev=tlev, tnew=more,
                    full=r.depth == LEVELS - 1)

    def _end(self, m, r, top):
        """The current instruction ends the innermost body: the innermost level of the group
        with iterations left steps (``r.steps``), or the group exits (``r.pops[k]``: to depth
        k). Writes it when the instruction completes; returns ``steps``, ``pops``, each
        level's summary after it steps (``summary``: ``back``, ``target``, ``target1``,
        ``tlev``) and the view after it (``view``: ``nest_view_layout``)."""
        lv, steps, pops = r.lv, r.steps, r.pops
        stride = {"x": [x.xs for x in lv], "o": [x.os for x in lv], **r.strd}
        alts, summary = [], []  # (condition, view) of each outcome; each level's summary
        for k in range(LEVELS):
            more = lv[k].more
            back = more | ((lv[k].shared & lv[k - 1].back) if k else 0)
            target = Mux(more, lv[k].start, lv[k - 1].target if k else 0)
            tlev = Mux(more, k, lv[k - 1].tlev if k else 0)
            target1 = Mux(more, lv[k].start + 1, lv[k - 1].target + 1 if k else 0)
            summary.append((back, target, target1, tlev))
            with m.If(self.cmd.advance & ~self.cmd.begin & self.cmd.at_end & steps[k]):
                m.d.sync += [r.depth.eq(k + 1), lv[k].left.eq(lv[k].left - 1),
                             lv[k].idx.eq(lv[k].idx + 1), lv[k].back.eq(back),
                             lv[k].target.eq(target), lv[k].tlev.eq(tlev),
                             *[r.at[kd][k].eq(r.nx[kd][k]) for kd in KINDS],
                             *[r.nx[kd][k].eq(r.nx[kd][k] + stride[kd][k]) for kd in KINDS],
                             *[r.cur[kd].eq(r.nx[kd][k]) for kd in KINDS]]
            idx = [lv[i].idx + (1 if i == k else 0) for i in range(2)]
            alts.append((steps[k], dict(depth=k + 1, off={kd: r.nx[kd][k] for kd in KINDS},
                                        i0=idx[0], i1=idx[1] if k >= 1 else 0)))
            with m.If(self.cmd.advance & ~self.cmd.begin & self.cmd.at_end & pops[k]):
                m.d.sync += [r.depth.eq(k),
                             *[r.cur[kd].eq(r.at[kd][k - 1] if k else 0) for kd in KINDS]]
            alts.append((pops[k], dict(
                depth=k, off={kd: r.at[kd][k - 1] if k else 0 for kd in KINDS},
                i0=lv[0].idx if k >= 1 else 0, i1=lv[1].idx if k >= 2 else 0)))
        return dict(steps=steps, pops=pops, summary=summary,
                    view=_one_hot_view(m, alts, "end"))

    def _candidates(self, m, r, top, begin, end):
        """``view.cand``: level k's is selected when level k is the innermost after the
        current instruction and no LOOP begins: it is the innermost now (no body ends), or
        its body ends and it steps, or the level inside it is the outermost to exit; its
        summary is then the step's (``end["summary"]``) when it steps, else its registers'.
        These hold when ``view.plain`` (neither a start nor a LOOP that begins), which the
        reader applies last. The last candidate is the LOOP that begins (``begin``), its
        ``sel`` its case; none holds at a start. The values are made from registers."""
        cmd, lv = self.cmd, r.lv
        m.d.comb += self.view.plain.eq(~cmd.loop_on)
        for k in range(LEVELS):
            c, (back, target, target1, tlev) = self.view.cand[k], end["summary"][k]
            stepping = Signal(name=f"cand_steps{k}")
            inner = Signal(name=f"cand_inner{k}")
            m.d.comb += [stepping.eq(cmd.at_end & end["steps"][k]),
                         inner.eq(Mux(cmd.at_end, end["steps"][k]
                                      | (end["pops"][k + 1] if k + 1 < LEVELS else 0),
                                      top["is_top"][k]))]
            m.d.comb += [c.sel.eq(inner), c.end.eq(lv[k].end),
                         c.back.eq(Mux(stepping, back, lv[k].back)),
                         c.target.eq(Mux(stepping, target, lv[k].target)),
                         c.target1.eq(Mux(stepping, target1, lv[k].target + 1)),
                         c.tlev.eq(Mux(stepping, tlev, lv[k].tlev)), c.tnew.eq(0),
                         c.full.eq(k == LEVELS - 1)]
        c = self.view.cand[LEVELS]
        m.d.comb += [c.sel.eq(cmd.loop_on),
                     *[c[f].eq(begin[f]) for f in ("end", "back", "target", "target1", "tlev",
                                                   "tnew", "full")]]

    def _view(self, m, r, end_view):
        """``view.next``, the case chosen last (``by_case``). A LOOP that begins leaves the
        offsets and the indices as they are, so they are chosen by ``at_end`` alone (a LOOP
        that begins cannot end a body: its own would pass it, which is illegal); ``depth``
        also by ``loop_on``. (At a start the registers are already reset and ``loop_on``
        clear: see ``LoopNest``.)"""
        cmd, nv = self.cmd, self.view.next
        views = [end_view, _other_view(r)]
        for k in KINDS:
            m.d.comb += nv.off[k].eq(by_case(m, [cmd.at_end], [v["off"][k] for v in views],
                                             len(nv.off[k]), f"view_off_{k}"))
        for f in ("i0", "i1"):
            m.d.comb += getattr(nv, f).eq(by_case(m, [cmd.at_end], [v[f] for v in views],
                                                  len(getattr(nv, f)), f"view_{f}"))
        m.d.comb += nv.depth.eq(by_case(m, [cmd.loop_on, cmd.at_end],
                                        [r.depth + 1, end_view["depth"], r.depth],
                                        len(nv.depth), "view_depth"))


class _Registers:
    """The loop nest's registers: ``depth`` (levels open), per level ``lv`` (``_level_layout``),
    the STRD strides ``strd[kind][level]``, per kind and level ``at`` (the total with the
    level at its index and those inside it at 0) and ``nx`` (the same after its next step),
    per kind ``cur`` (the total now), and the outcome of an end (``steps``, ``pops``:
    ``LoopNest._flags``)."""

    def __init__(self, **regs):
        self.__dict__.update(regs)


def _other_view(r):
    """The view when the loops stay as they are."""
    return dict(depth=r.depth, off=r.cur, i0=Mux(r.depth >= 1, r.lv[0].idx, 0),
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


_FLAGS = ("top", "member", "nz", "more")


def _outcome(member, nz):
    """The outcome of an end with the group ``member`` and ``nz`` (iterations left) per
    level: the innermost member with iterations left steps (``steps``), or with none, the
    group exits (``pops[k]``: to depth k, k its outermost member)."""
    steps, taken = [], Const(0)
    for k in reversed(range(LEVELS)):
        steps.insert(0, member[k] & nz[k] & ~taken)
        taken = taken | (member[k] & nz[k])
    pops = [~taken & member[k] & (~member[k - 1] if k else 1) for k in range(LEVELS)]
    return steps, pops


def _all(bits):
    """The AND of ``bits`` (1 when there are none)."""
    out = Const(1)
    for b in bits:
        out = out & b
    return out


def _or(values):
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


class NestView(wiring.Signature):
    """From the loop nest (``Out``): ``next``, the state after the current instruction
    (``nest_view_layout``), ``cand``, the candidates for its innermost level
    (``candidate_layout``: one per level, then the LOOP that begins), ``plain`` (the level
    candidates' case: neither a start nor a LOOP that begins), and ``opens`` (bit k: level
    k opens at this clock edge: a LOOP commits and completes at depth k)."""

    def __init__(self, prog_depth):
        super().__init__({"next": Out(nest_view_layout(prog_depth)),
                          "cand": Out(data.ArrayLayout(candidate_layout(prog_depth),
                                                       LEVELS + 1)),
                          "plain": Out(1), "opens": Out(LEVELS)})
