"""The Sequencer's fetch stage (``fetch_ports=1``) or fetch and decode stages (``fetch_ports=2``).

Either hands the next instruction on to the execute stage (``seq_execute.NextInsn``) with its
successor already chosen and being read, its predicate, its effective addresses and its
legality computed with the state as it will be after the current instruction (the loop
unit's ``cases``, the execute stage's forwarded predicates ``fwd``).

On a convolution machine the loop unit is ``seq_nest.LoopNest``, whose view offers a
*candidate* for each level that may be the innermost after the current instruction (and one
for a LOOP that begins); the stages compare their addresses with every candidate's end and
let the late case choose among the verdicts. With ``fetch_ports=2`` the decode stage also
keeps the first word of each open level's body, so that a jump back takes a word already in
a register and the ports always read the taken word's successor in sequence and its skip
target (``Fetch._nest_decode_stage``). Measured on the ECP5 (``sequencer_conv``): the fetch
stage alone stays near 62 MHz, bound by the block RAM's output (5.6 ns) feeding the next read
address through the LOOP's predicate; the decode stage reaches 82 MHz and more.
"""

import functools
import operator
import types

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params

from .encodings import Op, Src
from .seq_decode import (
    BODY_SPAN,
    EADDR_BITS,
    OFFSET_BITS,
    WORD,
    instruction_layout,
    predecoded_layout,
)
from .seq_execute import Forward, NextInsn
from .seq_loop import CASES, LoopCases, by_case, case_fields, case_state_layout
from .seq_nest import LEVELS, NestView
from .seq_run import Control


def _same(a, b):
    """``a == b`` as a NOR of an XOR (see ``Fetch._compare_ends``)."""
    return ~(a ^ b).any()


class Fetch(wiring.Component):
    """Fetch (and, with ``fetch_ports=2``, decode) for the machine's parameters.

    ===== ===== ===========================================================================
    ctl   In    ``seq_run.Control``
    loop  In    ``seq_loop.LoopCases``: the loop state after the current instruction (on a
                convolution machine ``seq_nest.NestView``)
    fwd   In    ``seq_execute.Forward``: the predicates after the current instruction
    next  Out   ``seq_execute.NextInsn``: the next instruction; ``next.take`` hands it on
    rd    In    a read port of the program memory (words of ``WORD`` bits with their
                ``predecoded_layout`` beside); ``rd_b`` a second one with ``fetch_ports=2``
    ===== ===== ===========================================================================

    *fetch* (``fetch_ports=1``): the read port shows the next instruction (``next.pc``). When
    it is taken, its successor is read: the next word, the loop's start at the loop's end, or
    past the body of a LOOP that the forwarded predicates turn off. ``next`` shows word 0
    while idle (when the port shows it: see ``seq_run.RunControl``).

    *decode* (``fetch_ports=2``): the next instruction's word waits in a register, so that the
    block RAM's slow output feeds nothing but registers; the two ports read both of its
    possible successors (the next word in sequence, and its skip target in case it is a LOOP
    that turns out to be off), and everything in ``next`` is computed from registers for
    each of the loop unit's cases, the case chosen last. A start first takes word 0
    (``ctl.fill``), a cycle before the execute stage takes it. (On a convolution machine:
    ``_nest_fetch_stage``, ``_nest_decode_stage``.)
    """

    def __init__(self, *, fetch_ports=1, **machine):
        self._p = dict(spec_params.machine(**machine),
                       fetch_ports=spec_params.check_fetch_ports(fetch_ports))
        depth, conv = self._p["prog_depth"], self._p["conv"]
        port = ReadPort.Signature(addr_width=(depth - 1).bit_length(),
                                  shape=WORD + predecoded_layout(**self._p).size)
        loop = NestView(depth) if conv else LoopCases(depth)
        super().__init__({"ctl": In(Control()), "loop": In(loop),
                          "fwd": In(Forward()), "next": Out(NextInsn(depth, conv=conv)),
                          **{k: In(port) for k in ("rd", "rd_b")[:fetch_ports]}})

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        depth = self._p["prog_depth"]
        checks = predecoded_layout(**self._p)
        # the next instruction's word (``word``, at ``fpc``): the read port's, or with
        # fetch_ports=2 the decode stage's
        fpc = Signal(range(depth + BODY_SPAN))
        word = Signal(WORD + checks.size)
        w = data.View(instruction_layout(), word[:WORD])
        w_checks = Signal(checks)
        m.d.comb += w_checks.eq(word[WORD:])
        nx = self.next
        if self._p["conv"]:
            stage = (self._nest_decode_stage if self._p["fetch_ports"] == 2
                     else self._nest_fetch_stage)
            next_on, w_at_end, shared = stage(m, (word, w, w_checks), fpc)
            self._nest_decoded(m, w, w_checks)
            m.d.comb += [nx.word.eq(word), nx.pc.eq(fpc), nx.at_end.eq(w_at_end),
                         nx.on.eq(next_on), nx.static.eq(w_checks.static),
                         nx.uop.eq(w_checks.uop), nx.setp.eq(w_checks.setp),
                         nx.last.eq(w_checks.last), nx.shared.eq(shared)]
            return m
        b_at_end = None  # (fetch_ports=2: the begin case's, registered)
        if self._p["fetch_ports"] == 2:
            next_on, b_at_end = self._decode_stage(m, (word, w, w_checks), fpc)
        else:
            next_on = self._fetch_stage(m, (word, w, w_checks), fpc)
        w_at_end = self._after(m, lambda st: st.in_loop & (fpc == st.l_end), 1, "w_at_end",
                               given=None if b_at_end is None else {"begin": b_at_end})

        def decoded(st):
            """The next instruction's effective addresses and legality in state ``st``: its
            loop offsets are the loop index times the strides (none outside a loop)."""
            xo = Mux(st.in_loop, st.xoff, 0)
            oo = Mux(st.in_loop, st.ooff, 0)
            uses_x = w.ai & (w.src != Src.W) & (w.src != Src.WNNZ)
            xa, oa, sa, bad = Signal(EADDR_BITS), Signal(EADDR_BITS), Signal(EADDR_BITS), Signal()
            m.d.comb += [xa.eq(w.xaddr + Mux(w.xi, xo, 0)),
                         oa.eq(w.oaddr + Mux(w.oi, oo, 0)),
                         sa.eq(w.addr + Mux(uses_x, xo, 0)),
                         bad.eq(w_checks.dyn | self._x_range_bad(m, w_checks, xo, oo))]
            return Cat(xa, oa, sa, bad)

        dec = self._after(m, decoded, 3 * EADDR_BITS + 1, "decoded")
        m.d.comb += [nx.word.eq(word), nx.pc.eq(fpc), nx.at_end.eq(w_at_end), nx.on.eq(next_on),
                     Cat(nx.xaddr, nx.oaddr, nx.saddr, nx.dyn).eq(dec),
                     nx.static.eq(w_checks.static), nx.uop.eq(w_checks.uop),
                     nx.setp.eq(w_checks.setp)]
        return m

    def _after(self, m, fn, shape, name, given=None):
        """``fn`` of the loop state after the current instruction: with fetch_ports=2
        computed for every case and the case chosen last (the decode stage's inputs are all
        registers then); ``given`` maps cases to their values made otherwise (``_a_next``)."""
        loop = self.loop
        if self._p["fetch_ports"] == 2:
            # (fn may assign; each case's constant fields folded: ``case_fields``)
            depth = self._p["prog_depth"]
            given = given or {}
            values = [given[case] if case in given
                      else fn(case_fields(loop.case[i], case, depth))
                      for i, case in enumerate(CASES)]
            return by_case(m, loop.sel, values, shape, name)
        out = Signal(shape, name=name)
        m.d.comb += out.eq(fn(loop.next))
        return out

    def _fetch_stage(self, m, next_word, fpc):
        """fetch_ports=1: the read port shows the next instruction (``word`` at ``fpc``). When
        it is taken its successor is read. Returns whether it executes (its predicate,
        forwarded)."""
        depth, busy, go = self._p["prog_depth"], self.ctl.busy, self.ctl.go
        rd, n, adv = self.rd, self.loop.next, self.next.take
        fpc_reg = Signal(range(depth + BODY_SPAN))
        word, w, w_checks = next_word  # (the word and its fields)
        m.d.comb += [word.eq(rd.data), fpc.eq(Mux(busy, fpc_reg, 0))]
        back = Signal()
        m.d.comb += back.eq(n.in_loop & (fpc == n.l_end) & (n.l_left != 0))
        w_on = self.fwd.preds.bit_select(w.pred, 1) ^ w.neg
        succ = Signal(range(depth + BODY_SPAN))
        m.d.comb += succ.eq(Mux(back, n.l_start,
                                Mux(w_checks.loop & ~w_on, w_checks.skip, fpc + 1)))
        m.d.comb += [rd.addr.eq(Mux(busy | go, succ, 0)), rd.en.eq(~busy | adv)]
        with m.If(adv):
            m.d.sync += fpc_reg.eq(succ)
        with m.Elif(~busy):
            m.d.sync += fpc_reg.eq(0)
        return w_on

    def _nest_fetch_stage(self, m, next_word, fpc):
        """``_fetch_stage`` on a convolution machine (``seq_nest``: loops nest, ends may be
        shared): the next instruction ends the innermost body when its address, or the last
        of a predicated-off LOOP's skipped body, is that body's last; it then jumps back to
        the group's target if some level of the group has iterations left.

        Timing: which level is the innermost after the current instruction depends on the
        case (a LOOP that begins, a body's end), and whether the next instruction is a LOOP
        turned off (``off_loop``) on the read port's word and the forwarded predicates. So
        both addresses are compared with every candidate's end at once (``_compare_ends``),
        the successor for each fate of the word is made from those verdicts, and
        ``off_loop`` chooses between the two last. The block RAM's output (5.6 ns on the
        ECP5, and synthesis sees it arrive at 0) still feeds the next read address: use
        ``fetch_ports=2`` where the clock matters. Returns whether it executes, whether it
        ends the body, and whether the innermost body ends where its skipped body would
        (``shared``: for a LOOP that begins)."""
        depth, busy, go = self._p["prog_depth"], self.ctl.busy, self.ctl.go
        rd, adv = self.rd, self.next.take
        fpc_reg = Signal(range(depth + BODY_SPAN))
        word, w, w_checks = next_word
        m.d.comb += [word.eq(rd.data), fpc.eq(Mux(busy, fpc_reg, 0))]
        w_on, off_loop = Signal(name="w_on"), Signal(name="off_loop")
        m.d.comb += [w_on.eq(self.fwd.preds.bit_select(w.pred, 1) ^ w.neg),
                     off_loop.eq(w_checks.loop & ~w_on)]
        ends = self._nest_ends(m, self._compare_ends(m, fpc, w_checks.last))
        succ_on, succ_off, succ = (Signal(range(depth + BODY_SPAN), name=f"succ{k}")
                                   for k in ("_on", "_off", ""))
        at_end = Signal(name="w_at_end")
        m.d.comb += [succ_on.eq(Mux(ends["jump_f"], ends["target"], fpc + 1)),
                     succ_off.eq(Mux(ends["jump_l"], ends["target"], w_checks.skip)),
                     succ.eq(Mux(off_loop, succ_off, succ_on)),
                     at_end.eq(Mux(off_loop, ends["at_l"], ends["at_f"]))]
        m.d.comb += [rd.addr.eq(Mux(busy | go, succ, 0)), rd.en.eq(~busy | adv)]
        with m.If(adv):
            m.d.sync += fpc_reg.eq(succ)
        with m.Elif(~busy):
            m.d.sync += fpc_reg.eq(0)
        return w_on, at_end, ends["at_l"]

    def _compare_ends(self, m, fpc, last):
        """The next instruction's address (``fpc``) and, as a LOOP turned off, its skipped
        body's last (``last``) against every candidate's end (``seq_nest.NestView.cand``):
        ``{"f": [...], "l": [...]}``, one verdict per candidate. (Each equality is written as
        a NOR of an XOR: as ``==``, yosys' ``alumacc`` merges ``last == end`` with
        ``_nest_decoded``'s ``last > end`` into one subtractor, and the equality then waits
        for its carry chain.)"""
        cand = [self.loop.cand[k] for k in range(LEVELS + 1)]
        eqs = {}
        for name, addr in (("f", fpc), ("l", last)):
            eqs[name] = [Signal(name=f"cand{k}_eq_{name}") for k in range(len(cand))]
            m.d.comb += [e.eq(_same(addr, c.end)) for e, c in zip(eqs[name], cand, strict=True)]
        return eqs

    def _nest_ends(self, m, eqs):
        """From the verdicts ``eqs`` (``_compare_ends``), for the candidate for the innermost
        level after the current instruction that holds: the next instruction ends its body
        at its address (``at_f``) or, as a LOOP turned off, at its skipped body's last
        (``at_l``), and the program then jumps back (``jump_f``, ``jump_l``) to ``target``
        (the first address of level ``tlev``'s body, or of the LOOP's that begins: ``tnew``).
        The one-hot ``sel``, late, meets the verdicts in the AND-OR after them, and
        ``target`` needs none of them."""
        cand = [self.loop.cand[k] for k in range(LEVELS + 1)]
        out = {}
        for name, eq in eqs.items():
            out[f"at_{name}"] = self._chosen(m, lambda k, c, eq=eq: eq[k], 1, f"at_{name}")
            out[f"jump_{name}"] = self._chosen(m, lambda k, c, eq=eq: c.back & eq[k], 1,
                                               f"jump_{name}")
        for f in ("target", "tlev", "tnew"):
            out[f] = self._chosen(m, lambda k, c, f=f: c[f], len(cand[0][f]), f"cand_{f}")
        return out

    def _chosen(self, m, fn, shape, name):
        """A signal ``name``: ``fn(k, c)`` of the candidate ``c`` (number ``k``) that holds
        (``seq_nest.NestView``; 0 when none does): the level candidates' AND-OR by their
        ``sel``, and the case (``plain``, or the LOOP that begins) chosen last."""
        cand = [self.loop.cand[k] for k in range(LEVELS + 1)]
        levels = functools.reduce(operator.or_, [Mux(c.sel, fn(k, c), 0)
                                                 for k, c in enumerate(cand[:LEVELS])])
        out = Signal(shape, name=name)
        m.d.comb += out.eq(Mux(self.loop.plain, levels,
                               Mux(cand[LEVELS].sel, fn(LEVELS, cand[LEVELS]), 0)))
        return out

    def _nest_decode_stage(self, m, next_word, fpc):
        """fetch_ports=2 on a convolution machine: the next instruction's word waits in the
        decode register (``word`` at ``dpc``), so that the block RAM's slow output feeds
        registers alone. The register next takes one of three words, all there already:
        port A's (``dpc + 1``), port B's (its skip target, in case it is a LOOP turned off)
        or, when it ends the innermost body and jumps back, the first word of the level it
        jumps to, kept since that level's LOOP began (``_start_words``). So the ports' next
        addresses need no loop state (the taken word's successor in sequence and its skip
        target), and the late decision (the forwarded predicate, and the candidates'
        verdicts, ``_nest_ends``, themselves registered: ``_next_eqs``) only chooses among
        registers, the block RAM's outputs and addresses made from registers, with the
        latest signal (``offf``: the word is a LOOP turned off) last. A start first takes
        word 0 (``ctl.fill``). Returns whether the instruction executes, whether it ends the
        body and ``shared``."""
        depth, busy, fill = self._p["prog_depth"], self.ctl.busy, self.ctl.fill
        rd, rd_b = self.rd, self.rd_b
        dpc = Signal(range(depth + BODY_SPAN), name="dpc")
        word, d, d_checks = next_word
        m.d.comb += fpc.eq(dpc)
        d_on, off = Signal(name="d_on"), Signal(name="d_off")
        m.d.comb += [d_on.eq(self._forwarded(m, d.pred) ^ d.neg), off.eq(d_checks.loop & ~d_on)]
        eqs = {n: [Signal(name=f"cand{k}_eq_{n}") for k in range(LEVELS + 1)] for n in "fl"}
        ends = self._nest_ends(m, eqs)
        # (a fill takes port A's word, word 0: it clears what chooses another)
        jf, jl, offf = Signal(name="d_jump_f"), Signal(name="d_jump_l"), Signal(name="d_offf")
        take_b, take_c = Signal(name="take_b"), Signal(name="take_c")
        m.d.comb += [jf.eq(~fill & ends["jump_f"]), jl.eq(ends["jump_l"]),
                     offf.eq(~fill & off),
                     take_c.eq(Mux(offf, jl, jf)), take_b.eq(offf & ~jl)]
        # the three words registered, and the choice (``sel``): the late decision drives
        # two bits, not a word-wide multiplexer; each with its skip target's successor
        words = [Signal.like(word, name=f"d{k}") for k in "abc"]
        skip1 = [Signal(range(depth + BODY_SPAN + 1), init=1, name=f"skip1_{k}") for k in "abc"]
        sel_b, sel_c = self._d_sel_regs = Signal(name="d_sel_b"), Signal(name="d_sel_c")
        m.d.comb += word.eq(self._d_sel(m, words, "d_word"))
        d_skip1 = self._d_sel(m, skip1, "d_skip1")
        start, start_field, target1 = self._start_words(m, word, d_checks, ends)
        ports = [data.View(predecoded_layout(**self._p), v[WORD:]) for v in (rd.data, rd_b.data)]
        skips = [c.skip for c in ports] + [start_field("skip")]
        a_next = Signal(range(depth + BODY_SPAN + 1), name="a_next")
        with m.If(self.ctl.fill_busy):
            m.d.comb += a_next.eq(1)
        with m.Elif(busy):  # (idle: word 0; a start while idle ORs in word 1 below)
            m.d.comb += a_next.eq(Mux(offf, Mux(jl, target1, d_skip1),
                                      Mux(jf, target1, dpc + 2)))
        load = Signal(name="d_load")
        m.d.comb += [load.eq(fill | self.next.take),
                     rd.addr.eq(a_next | (fill & ~busy)),
                     rd.en.eq(~busy | self.ctl.fill_busy | self.next.take),
                     rd_b.addr.eq(Mux(offf, Mux(jl, skips[2], skips[1]),
                                      Mux(jf, skips[2], skips[0]))),
                     rd_b.en.eq(load)]
        self._next_eqs(m, eqs, load, (take_b, take_c), d_checks, dict(
            f=(dpc + 1, d_checks.skip, ends["target"]),
            l=(*[c.last for c in ports], start_field("last"))))
        with m.If(load):
            m.d.sync += [words[0].eq(rd.data), words[1].eq(rd_b.data), words[2].eq(start),
                         *[s1.eq(s + 1) for s1, s in zip(skip1, skips, strict=True)],
                         sel_b.eq(take_b), sel_c.eq(take_c),
                         dpc.eq(Mux(fill, 0, Mux(take_c, ends["target"],
                                                 Mux(take_b, d_checks.skip, dpc + 1))))]
        return d_on, Mux(off, ends["at_l"], ends["at_f"]), ends["at_l"]

    def _next_eqs(self, m, eqs, load, sel, d_checks, options):
        """The verdicts of ``_compare_ends`` for the word the decode register takes, made
        before it takes it and registered: its address ``f`` (``options["f"]``: port A's,
        port B's and the start word's) against each end a candidate may have after the clock
        edge: a level's (its register, or the executing LOOP's if that LOOP opens it then:
        ``opens``) and the LOOP's that may begin next (the decode register's own, which the
        execute stage takes); the choice (``sel``: ``take_b``, ``take_c``) is made before
        the register. Its last ``l`` comes from the block RAM for ports A and B, whose output
        (about 6 ns) must meet nothing late: so each source's verdicts are registered apart,
        against each level's register, the executing LOOP's end and the decode register's
        own, and chosen after the registers (``_d_sel``, with ``opens`` registered too), as
        the words are. The ends change only when the decode register loads (a LOOP opens a
        level as it completes), so the verdicts hold until it loads again."""
        cand = [self.loop.cand[k] for k in range(LEVELS + 1)]
        ends = [c.end for c in cand] + [d_checks.last]  # (levels', the LOOP's, the next's)
        take_b, take_c = sel

        def verdicts(x):
            return [_same(x, e) for e in ends]

        def after_edge(v, opens):  # (per candidate, from the verdicts against ``ends``)
            return [Mux(opens[k], v[LEVELS], v[k]) for k in range(LEVELS)] + [v[LEVELS + 1]]

        f = [verdicts(x) for x in options["f"]]
        taken = [Mux(take_c, c, Mux(take_b, b, a)) for a, b, c in zip(*f, strict=True)]
        with m.If(load):
            m.d.sync += [e.eq(v) for e, v in zip(eqs["f"], after_edge(taken, self.loop.opens),
                                                  strict=True)]
        opened = [Signal(name=f"opened{k}") for k in range(LEVELS)]
        regs = [[Signal(name=f"eq_l_{s}{k}") for k in range(len(ends))] for s in "abc"]
        with m.If(load):
            m.d.sync += [*[o.eq(self.loop.opens[k]) for k, o in enumerate(opened)],
                         *[r.eq(v) for rs, x in zip(regs, options["l"], strict=True)
                           for r, v in zip(rs, verdicts(x), strict=True)]]
        chosen = [self._d_sel(m, [rs[k] for rs in regs], f"eq_l{k}") for k in range(len(ends))]
        m.d.comb += [e.eq(v) for e, v in zip(eqs["l"], after_edge(chosen, opened), strict=True)]

    def _d_sel(self, m, values, name):
        """Of three registers loaded with the decode register (port A's, port B's, the start
        word's), the one it took (``d_sel_b``, ``d_sel_c``, registered with it; made by
        ``_nest_decode_stage``)."""
        sel_b, sel_c = self._d_sel_regs
        out = Signal.like(values[0], name=name)
        m.d.comb += out.eq(Mux(sel_c, values[2], Mux(sel_b, values[1], values[0])))
        return out

    def _start_words(self, m, word, d_checks, ends):
        """The first word of each open level's body, taken from the decode register when the
        level's LOOP begins (the LOOP is on, so the word after it is there then), and of
        them the one a jump back goes to (``start``, for the decode register): the selected
        candidate's target level (``ends``' ``tlev``; ``tnew``: the LOOP that begins now,
        whose first word is the decode register's own). Its checks' fields (``start_field``:
        its skip target, its last) and the successor of the target address (``target1``) are
        made per candidate, from registers, and chosen by ``sel`` last: the choice reaches
        the ports' addresses through an AND-OR alone."""
        kept = [Signal.like(word, name=f"start_word{k}") for k in range(LEVELS)]
        for k, w in enumerate(kept):
            with m.If(self.loop.opens[k]):
                m.d.sync += w.eq(word)

        checks = predecoded_layout(**self._p)
        kept_checks = [data.View(checks, w[WORD:]) for w in kept]
        start = Signal.like(word, name="start_word")
        m.d.comb += start.eq(Mux(ends["tnew"], word, functools.reduce(
            operator.or_, [Mux(ends["tlev"] == k, w, 0) for k, w in enumerate(kept)])))

        def start_field(f):
            def of(k, c):
                return Mux(c.tnew, d_checks[f], functools.reduce(operator.or_, [
                    Mux(c.tlev == lvl, w[f], 0) for lvl, w in enumerate(kept_checks)]))
            return self._chosen(m, of, len(d_checks[f]), f"start_{f}")

        target1 = self._chosen(m, lambda k, c: c.target1, len(self.loop.cand[0].target1),
                               "target1")
        return start, start_field, target1

    def _nest_decoded(self, m, w, c):
        """The next instruction's effective addresses and legality on a convolution machine,
        with the offsets after the current instruction (``seq_nest``): ``dyn`` (executed:
        an activation, weight or channel address out of range, a STRD of an open level) and
        ``nest_bad`` (a LOOP nested too deep or past its enclosing body, executed or not;
        compared with every candidate's end, the candidate chosen after)."""
        p, n, nx = self._p, self.loop.next, self.next
        low = (p["lanes"] - 1).bit_length()
        off = n.off
        uses_x = w.ai & (w.src != Src.W) & (w.src != Src.WNNZ)
        m.d.comb += [nx.xaddr.eq(w.xaddr + Mux(w.xi, off.x, 0)),
                     nx.oaddr.eq(w.oaddr + Mux(w.oi, off.o, 0)),
                     nx.saddr.eq(w.addr + Mux(uses_x, off.x, 0)),
                     nx.i0.eq(n.i0), nx.i1.eq(n.i1)]
        wa = Signal(len(off.w) + 1, name="next_waddr")
        ch = Signal(len(off.ch) + 1, name="next_ch")
        m.d.comb += [wa.eq(w.waddr + Mux(w.wi, off.w, 0)), ch.eq(w.ch + Mux(w.ci, off.ch, 0)),
                     nx.waddr.eq(wa), nx.ch.eq(ch)]
        # the weight address's and channel's offsets against the room the word leaves them
        # (``predecoded_layout``): one comparison each after the offset
        w_bad = (((off.w[:low] != 0) if low else Const(0)) | (off.w > c.room))
        bad = Signal(name="next_dyn")
        m.d.comb += bad.eq(c.dyn | self._x_range_bad(m, c, off.x, off.o)
                           | ((c.rkind == 1) & w_bad) | ((c.rkind == 2) & (off.ch > c.room))
                           | ((w.op == Op.STRD) & (w.level < n.depth)))
        past = self._chosen(m, lambda k, cd: cd.full | (c.last > cd.end), 1, "nest_past")
        m.d.comb += [nx.dyn.eq(bad), nx.nest_bad.eq(c.loop & past)]

    def _forwarded(self, m, sel):
        """The predicate ``sel`` after the current instruction, computed as ``data if (we and
        addr == sel) else base[sel]``: the predicate write's value, which a SETP's comparison
        of the value just arrived makes late, drives only the last multiplexer instead of the
        write into the vector and the 8:1 selection after it."""
        fwd = self.fwd
        hit = Signal(name="p_fwd_hit")
        m.d.comb += hit.eq(fwd.we & (fwd.addr == sel))
        return Mux(hit, fwd.data, fwd.base.bit_select(sel, 1))

    def _decode_stage(self, m, next_word, fpc):
        """fetch_ports=2: the next instruction's word waits in a register (``word`` at
        ``fpc``); port A (``rd``) shows the word after it in sequence (at ``apc``), port B
        (``rd_b``) its skip target. When it is taken (``next.take``), the register takes port
        B's word if it holds a LOOP that the forwarded predicates turn off, else port A's, and
        the ports read that word's successors with the state as it will be after the
        register's instruction. A start first takes word 0 (``ctl.fill``). Returns whether
        the register's instruction executes (its predicate, forwarded)."""
        depth, busy, fill = self._p["prog_depth"], self.ctl.busy, self.ctl.fill
        rd, rd_b = self.rd, self.rd_b
        dpc, apc = Signal(range(depth + BODY_SPAN)), Signal(range(depth + BODY_SPAN))
        m.d.comb += fpc.eq(dpc)
        word, d, d_checks = next_word  # (the word and its fields)
        d_on, take_b = Signal(), Signal()
        m.d.comb += [d_on.eq(self._forwarded(m, d.pred) ^ d.neg),
                     take_b.eq(d_checks.loop & ~d_on & ~fill)]
        # both ports' words are registered, with the choice between them (``d_sel``): the late
        # choice then drives a bit, not a word-wide multiplexer
        da, db, d_sel = Signal.like(word), Signal.like(word), Signal()
        m.d.comb += word.eq(Mux(d_sel, db, da))
        ca, cb = (Signal(d_checks.shape()) for _ in range(2))
        m.d.comb += [ca.eq(rd.data[WORD:]), cb.eq(rd_b.data[WORD:])]
        load = Signal()
        m.d.comb += load.eq(fill | self.next.take)
        # what port A's next address needs of the register's word, made from each port's word
        # as it is loaded (beside it) and chosen with it: its skip target's successor, and
        # whether it is a loop of one instruction run more than once (``tight``)
        a_width = Shape.cast(range(depth + BODY_SPAN + 1)).width
        skip1 = [Signal(a_width, init=1, name=f"skip1_{k}") for k in "ab"]
        tights = [Signal(name=f"tight_{k}") for k in "ab"]
        for port, c, s1, t in ((rd, ca, skip1[0], tights[0]), (rd_b, cb, skip1[1], tights[1])):
            v = data.View(instruction_layout(), port.data[:WORD])
            with m.If(load):
                m.d.sync += [s1.eq(c.skip + 1), t.eq((v.body == 1) & (v.count > 1))]
        d_skip1, tight = Signal(a_width, name="d_skip1"), Signal(name="tight")
        m.d.comb += [d_skip1.eq(Mux(d_sel, skip1[1], skip1[0])),
                     tight.eq(Mux(d_sel, tights[1], tights[0]))]
        a_next, b_at_end = self._a_next(m, (d, d_checks, d_on, d_skip1, tight), dpc, apc)
        # (``(~busy & ~fill) | load``: a fill while idle is a start, the other a register)
        m.d.comb += [rd.addr.eq(a_next), rd.en.eq(~busy | self.ctl.fill_busy | self.next.take),
                     rd_b.addr.eq(Mux(take_b, cb.skip, ca.skip)), rd_b.en.eq(load)]
        with m.If(load):
            m.d.sync += [da.eq(rd.data), db.eq(rd_b.data), d_sel.eq(take_b),
                         dpc.eq(Mux(fill, 0, Mux(take_b, d_checks.skip, apc))), apc.eq(a_next)]
        return d_on, b_at_end

    def _a_next(self, m, decoded, dpc, apc):
        """Port A's next address (``decoded``: the register's fields, checks and predicate):
        the successor of the word the register takes (at ``apc``, or past the body of an off
        LOOP), with the state after the register's instruction: a LOOP that runs starts its
        loop (its body follows it: ``apc`` is the body's first word); one that does not
        leaves the state alone (a LOOP inside a loop is illegal, so a loop is not active);
        any other instruction may end a loop's body."""
        depth, busy, fill = self._p["prog_depth"], self.ctl.busy, self.ctl.fill
        d, d_checks, d_on, d_skip1, tight = decoded

        def back_fn(st, dpc, apc, left_is=None):
            # left_is: ``st.l_left`` > 1, != 0, == 0, if made otherwise
            gt1, ne0, eq0 = left_is or (st.l_left > 1, st.l_left != 0, st.l_left == 0)
            at_end = st.in_loop & (dpc == st.l_end)
            left = Mux(at_end, gt1, ne0)
            return st.in_loop & ~(at_end & eq0) & left & (apc == st.l_end)

        def seq_fn(st):
            return Mux(back_fn(st, dpc, apc), st.l_start, apc + 1)

        # (``tight``: a loop of one instruction, run more than once; ``d_skip1``: the skip
        # target's successor, both registered with the word: ``_decode_stage``)
        # The ``begin`` case (the register's LOOP, taken to the execute stage last clock,
        # commits): its loop end ``pc + body`` and what the stages compare with it are known
        # when the LOOP is taken. A LOOP that commits was taken on (``d_on``), not by a fill:
        # the register then took ``apc`` and port A ``Mux(tight, apc, apc + 1)`` (``a_on``),
        # and neither moves before the LOOP completes, in its first cycle. So the comparisons
        # are made then, from registers, and kept: ``b_at_end`` (the body's first word ends
        # it) and ``b_back`` (port A's successor is the loop's start again)
        pc_bits = Shape.cast(range(depth)).width
        b_cur = {k: Signal(Shape.cast(case_state_layout(depth)[k].shape), name=f"b_{k}")
                 for k in ("l_end", "l_left")}
        a_loop = Signal(range(depth + BODY_SPAN + 1), name="a_loop")
        m.d.comb += [b_cur["l_end"].eq(dpc[:pc_bits] + d.body),
                     b_cur["l_left"].eq(d.count - 1),
                     a_loop.eq(Mux(tight, apc, apc + 1))]
        b_st = types.SimpleNamespace(in_loop=Const(1), **b_cur)
        b_at_end, b_back = Signal(name="b_at_end"), Signal(name="b_back")
        with m.If(self.next.take):
            m.d.sync += [b_at_end.eq(b_st.l_end == apc), b_back.eq(back_fn(b_st, apc, a_loop))]
        begin = Signal(range(depth + BODY_SPAN + 1), name="a_seq_begin")
        st_begin = case_fields(self.loop.case[CASES.index("begin")], "begin", depth)
        m.d.comb += begin.eq(Mux(b_back, st_begin.l_start, apc + 1))
        # the ``step`` case's ``l_left`` is the register's less one: its comparisons made on
        # the register (the same for every value), with no subtraction before them
        left = case_fields(self.loop.case[CASES.index("other")], "other", depth).l_left
        st_step = case_fields(self.loop.case[CASES.index("step")], "step", depth)
        step = Signal(range(depth + BODY_SPAN + 1), name="a_seq_step")
        m.d.comb += step.eq(Mux(back_fn(st_step, dpc, apc, (left > 2, left != 1, left == 1)),
                                st_step.l_start, apc + 1))
        seq = self._after(m, seq_fn, range(depth + BODY_SPAN + 1), "a_seq",
                          given={"begin": begin, "step": step})
        # the same for either fate of a LOOP in the register, which may depend on a
        # comparison made this cycle: that choice comes last
        a_on, a_off = (Signal(range(depth + BODY_SPAN + 1), name=f"a_{k}") for k in ("on", "off"))
        # a fill: word 1. A fill while idle (a start) is ORed in last, into bit 0 (the
        # address is 0 while idle): the start, late, does not choose the address
        with m.If(self.ctl.fill_busy):
            m.d.comb += [a_on.eq(1), a_off.eq(1)]
        with m.Elif(~busy):  # idle: word 0 at the port
            m.d.comb += [a_on.eq(0), a_off.eq(0)]
        with m.Elif(d_checks.loop):
            m.d.comb += [a_on.eq(Mux(tight, apc, apc + 1)), a_off.eq(d_skip1)]
        with m.Else():
            m.d.comb += [a_on.eq(seq), a_off.eq(seq)]
        a_next = Signal(range(depth + BODY_SPAN + 1))
        m.d.comb += a_next.eq(Mux(d_on, a_on, a_off) | (fill & ~busy))
        return a_next, b_at_end

    def _x_range_bad(self, m, c, xo, oo):
        """The loop-offset activation address of checks ``c`` is out of range (or a block's
        is not aligned), with the offsets ``xo``, ``oo`` it will execute with."""
        p = self._p
        low = (p["lanes"] - 1).bit_length()
        offs = (Const(0, OFFSET_BITS), xo, oo)
        over = Signal(3)
        if p["conv"]:  # (one comparison with the room the word leaves the offset)
            m.d.comb += over.eq(Cat(c.xover, *[c.xover | (o > c.xroom) for o in offs[1:]]))
        else:
            m.d.comb += over.eq(Cat(*[c.xend > p["x_depth"] - o for o in offs]))
        bad = over.bit_select(c.okind, 1)
        if low:
            mis = Signal(3)
            m.d.comb += mis.eq(Cat(*[c.blow != (-o)[:low] for o in offs]))
            bad = bad | ((c.xkind == 2) & mis.bit_select(c.okind, 1))
        return (c.xkind != 0) & bad
