"""The sparsity-aware dot-product engine (US10482156 / US20190205358).

Bit-exact reference: ``golden.sparse_dot.sparse_dot`` (value and cycle model).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params
from sparq.spec.isa import N_BANKS

from .arith import fits_signed, one_hot_or, popcount, product
from .mulbins import MultiplierBins
from .pipeline import StallPipeline, carried

# a product (x - x_zero_point) * w: a 9-bit difference times an 8-bit weight
PRODUCT_BITS = 17


def beat_layout(lanes, *, banks=False, wnz=False):
    """One input beat: ``lanes`` weights, activations and precision levels, and ``last``.
    With ``banks`` also ``bank`` (the beat's products go, per lane, to lane bank
    ``bank_sel``, not to the dot product: the beat is a DOT's into accumulator
    ``N_ACC + bank_sel``). With ``wnz`` also ``wnz``: bit ``i`` is ``w[i] != 0`` (stored
    beside the weight in its memory: ``hw.delta_apply.WeightBanks(nz_bits=True)``)."""
    fields = {
        "w": data.ArrayLayout(signed(8), lanes),
        "x": data.ArrayLayout(signed(8), lanes),
        "lvl": data.ArrayLayout(unsigned(2), lanes),
        "last": unsigned(1),
    }
    if banks:
        fields.update(bank=unsigned(1), bank_sel=range(N_BANKS))
    if wnz:
        fields.update(wnz=unsigned(lanes))
    return data.StructLayout(fields)


def bank_add_layout(lanes):
    """One step of a bank beat: lane ``i``'s product in this step (0 if it has none), for
    lane bank ``bank``."""
    return data.StructLayout({"bank": range(N_BANKS),
                              "p": data.ArrayLayout(signed(PRODUCT_BITS), lanes)})


def adder_tree(pipe, values, keep, levels_per_stage=spec_params.DOT_TREE_LEVELS_PER_STAGE):
    """Sum ``values`` with a tree registered every ``levels_per_stage`` levels but the last
    (``spec.params.adder_tree_registers``, which the latency is computed from); ``keep``
    are the values travelling beside it. Returns (sum, keep) from the last stage."""
    registers = spec_params.adder_tree_registers(len(values), levels_per_stage)
    level = 0
    while len(values) > 1:
        values = [values[k] + values[k + 1] if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
        level += 1
        if level in registers:
            st = pipe.stage(**{f"t{k}": v for k, v in enumerate(values)}, **keep)
            values = [getattr(st, f"t{k}") for k in range(len(values))]
            keep = carried(st, keep)
    return values[0], keep


class SparseDotProduct(wiring.Component):
    """Dot products of vectors streamed as beats of ``lanes`` pairs, skipping zero operands.

    ``result = sum (x[i] - x_zero_point) * w[i]`` over the beats of a vector (the beat with
    ``last`` ends it), exact in int32; a partial sum outside int32 sets the sticky
    ``overflow`` flag. A pair with ``w[i] == 0`` or ``x[i] == x_zero_point`` is never
    multiplied: the non-zero pairs of a beat are ranked (a prefix count, one stage before the
    front end) and the front end issues ``slots`` of them per cycle to the multipliers, so a
    beat costs ``max(1, ceil(nnz/slots))`` cycles and a beat is accepted every cycle while
    ``nnz <= slots``. With ``skip=False`` (the dense baseline) lane ``k*slots + j`` goes to
    slot ``j`` in step ``k``: ``ceil(lanes/slots)`` cycles per beat.

    ``x_zero_point`` is sampled with each beat (in the cycle of its ``i`` transfer), so it may
    change from one beat to the next (the core's layers have their own).

    Each precision level is checked: a weight that does not fit its level (0 = zero, then
    signed ``level_widths``) sets the sticky ``level_error`` flag and adds to
    ``level_errors``; it is still multiplied at full width, so the result stays exact.
    ``check_levels=False`` (the core, whose feeder gives each weight the narrowest level that
    holds it, ``dot_feeder.level``, so none can misfit) builds no check: ``level_error``
    stays 0 (the weight's path from block RAM is shorter by the check).

    ``push=True`` (the core, whose ``AccumulatorFile`` takes every result): ``o.ready`` is
    not looked at, so nothing stalls, and ``i.ready`` is a flip-flop holding the value the
    handshake logic would compute (its next value made from the input register's and the
    front end's next state), so a producer's handshake starts at a register. (With
    multiplier bins of several widths, whose last step is not known a cycle ahead, it stays
    that logic.) No result or cycle changes.

    ``stored_nz=True`` (a core whose weight memory stores each weight's non-zero bit): the
    beat carries ``wnz`` (``beat_layout(wnz=True)``) and the weights' zero mask is taken from
    it, not computed from ``w``, so the input register's path from a block RAM's output is
    shorter by the compare. The contract: ``wnz[i] == (w[i] != 0)``; a lane whose bit is 0
    is skipped as a zero weight would be. No result or cycle changes when it holds.

    The result leaves on the ``o`` stream (``output="stream"``; the whole pipeline stalls
    while ``o`` is stalled) or through a memory write port ``wr_en``/``wr_addr``/``wr_data``
    with an address that counts up from 0 (``output="memory"``; never stalls).
    Counters: ``cycles`` (front end busy), ``pairs`` (lanes of accepted beats), ``skipped``
    (zero pairs not multiplied).

    Lane banks (``banks=True``; off by default, and then none of this logic is built): a
    beat with ``bank`` set is issued, costs and counts as any beat, and its vector's result
    still leaves on ``o`` (the sum of its products); besides, each of its steps leaves on
    ``bank_add`` the step's products per lane (lane ``i``: the product of the slot that
    multiplied lane ``i`` in this step, else 0; a lane is in at most one slot of a step,
    whatever the slot provider: ranked, dense or bins) with the beat's ``bank_sel``.
    ``bank_add.valid`` is high for one cycle per step of a bank beat, the cycle the step
    leaves the last pipeline stage (the cycle the adder tree's sum of the step is added to
    the result), so a bank vector's last step leaves the cycle before its result is valid on
    ``o``; ``bank_add.ready`` is not looked at (the consumer takes every step: the
    ``AccumulatorFile`` does). Bit-exact reference for the per-lane sums:
    ``golden.sparse_dot.lane_sums`` (``golden.sequencer``'s DOT into a bank).

    ================== ===== ======================================================
    ``i``              In    stream of ``beat_layout(lanes, banks=banks, wnz=stored_nz)``
    ``x_zero_point``   In    the zero point, sampled with each beat
    ``o``              Out   stream of int32 results (``output="stream"``)
    ``wr_*``           Out   the results' memory write port (``output="memory"``)
    ``bank_add``       Out   stream of ``bank_add_layout(lanes)`` (``banks=True``)
    counters, flags    Out   ``cycles``, ``pairs``, ``skipped``; ``level_error``,
                             ``level_errors``, ``overflow``
    ================== ===== ======================================================

    Bit-exact reference: ``golden.sparse_dot.sparse_dot`` with the same keyword parameters
    (``params``; ``banks`` is the RTL's only and is in it only when set);
    ``cycles`` equals its cycle model.
    """

    def __init__(self, *, lanes=8, slots=4, skip=True, output="stream", addr_width=8,
                 level_widths=(2, 4, 8), bins=None, banks=False, check_levels=True,
                 push=False, stored_nz=False):
        self._p = spec_params.sparse_dot(lanes=lanes, slots=slots, skip=skip, output=output,
                                         addr_width=addr_width, level_widths=level_widths,
                                         bins=bins)
        self._banks = spec_params.flag("banks", banks)
        self._check_levels = spec_params.flag("check_levels", check_levels)
        if push not in (False, True) or (push and output != "stream"):
            raise ValueError(f"push must be False, or True with output='stream', not {push!r} "
                             f"(output={output!r})")
        self._push = push
        self._stored_nz = spec_params.flag("stored_nz", stored_nz)
        ports = {
            "i": In(stream.Signature(beat_layout(lanes, banks=banks, wnz=stored_nz))),
            "x_zero_point": In(signed(8)),
            "cycles": Out(32), "pairs": Out(32), "skipped": Out(32),
            "level_error": Out(1), "level_errors": Out(32), "overflow": Out(1),
        }
        if output == "stream":
            ports["o"] = Out(stream.Signature(signed(32)))
        else:
            ports.update(wr_en=Out(1), wr_addr=Out(addr_width), wr_data=Out(signed(32)))
        if banks:
            ports["bank_add"] = Out(stream.Signature(bank_add_layout(lanes)))
        super().__init__(ports)
        # the slot provider: multiplier bins, uniform 8-bit ones unless bins are given
        self._provider = MultiplierBins(self._p["bins"] or {8: slots}, level_widths) \
            if skip else None

    @property
    def params(self):
        return dict(self._p, banks=True) if self._banks else dict(self._p)

    @property
    def latency(self):
        """Cycles from the cycle the front end issues the last step of a vector's last beat
        (the beat's ``i`` transfer + 1 + its front-end cycles, when the front end was free)
        to the cycle the result is valid on ``o`` (or ``wr_en``), while ``o`` is not
        stalled: ``spec.params.sparse_dot_latency`` (which defines it), the registers of
        this pipeline (checked when it is built)."""
        return spec_params.sparse_dot_latency(**self._p)

    def elaborate(self, platform):
        m = Module()
        p = self._p
        s = p["slots"]
        en = Signal()
        if p["output"] == "stream" and not self._push:
            m.d.comb += en.eq(~self.o.valid | self.o.ready)
        else:
            m.d.comb += en.eq(1)

        beat = self._input_stage(m, en)
        step = self._front_end(m, en, beat)
        self._handshake(m, beat, step)
        pipe = StallPipeline(m, en)
        widths = self._slot_widths()
        lanes_step = step["lanes"]  # with banks: what a bank step carries; else nothing
        s1 = pipe.stage(v=step["v"], first=step["first"], last=step["last"],
                        **{f"w{j}": step["w"][j][:widths[j]].as_signed() for j in range(s)},
                        **{f"x{j}": step["x"][j] for j in range(s)}, **lanes_step)
        flags = ("v", "first", "last", *lanes_step)
        s2 = pipe.stage(**{f"p{j}": product(getattr(s1, f"w{j}"), getattr(s1, f"x{j}"))
                           for j in range(s)}, **carried(s1, flags))
        products = [getattr(s2, f"p{j}") for j in range(s)]
        keep = carried(s2, flags)
        if self._banks:  # the products travel beside the tree, to the lanes
            keep.update({f"p{j}": v for j, v in enumerate(products)})
        total, keep = adder_tree(pipe, products, keep)
        self._accumulate(m, en, total, keep)  # one register more: the output's
        if self._banks:
            self._bank_add(m, en, keep, step["fixed_slots"])
        assert pipe.latency + 1 == self.latency, (pipe.latency, self.latency)
        return m

    def _slot_widths(self):
        """The weight width of each multiplier slot: 8 bits, or the bins' widest first."""
        if not self._p["skip"]:
            return [8] * self._p["slots"]
        return self._provider.widths

    def _input_stage(self, m, en):
        """A register stage before the front end: the beat and its zero mask (and the level
        check beside it). Returns the registered values and the handshake to the front end."""
        p = self._p
        n = p["lanes"]
        b = self.i.payload
        take = Signal()  # driven by the front end: it takes the held beat this cycle
        held = Signal()
        ready = Signal()  # the input register takes a beat (``i.ready``: ``_handshake``)
        # (the beat's ``wnz`` is kept as ``w_nz`` below; its copy in ``reg`` is unread, and
        # synthesis drops it)
        reg = Signal(beat_layout(n, banks=self._banks, wnz=self._stored_nz))
        zp_r = Signal(signed(8))  # the beat's zero point, sampled with it
        # the zero masks, the weights' and the activations' registered apart (the words come
        # late from block RAM) and joined after
        w_nz, x_nz, nz = Signal(n), Signal(n), Signal(n)
        m.d.comb += [ready.eq(en & (~held | take)), nz.eq(w_nz & x_nz)]
        misfit = self._level_check(m, self.i.valid & ready, b) if self._check_levels \
            else Const(0, n)
        misfit_beat = Signal(n)  # kept with the beat: such a lane takes a full-width multiplier
        with m.If(ready):
            m.d.sync += [held.eq(self.i.valid), reg.eq(b), zp_r.eq(self.x_zero_point),
                         w_nz.eq(b.wnz if self._stored_nz
                                 else Cat(*[b.w[i] != 0 for i in range(n)])),
                         x_nz.eq(Cat(*[b.x[i] != self.x_zero_point for i in range(n)])),
                         misfit_beat.eq(misfit)]
        return dict(valid=held, take=take, ready=ready, beat=reg, zp=zp_r, nz=nz,
                    misfit=misfit_beat)

    def _handshake(self, m, inp, step):
        """``i.ready``: the input register's ``ready``; with ``push`` and a front end that
        knows its next ``done`` (``step["done_next"]``), a flip-flop of the same value:
        ``~held' | ~have' | done'`` from the next state (``held' = ready ? i.valid : held``,
        ``have' = take ? held : have``), ``en`` being 1."""
        done_next = step["done_next"]
        if not (self._push and done_next is not None):
            m.d.comb += self.i.ready.eq(inp["ready"])
            return
        held, have = inp["valid"], step["have"]
        held_next, have_next = Signal(name="held_next"), Signal(name="have_next")
        ready_r = Signal(init=1, name="ready_r")  # held, have 0 at reset: ready
        m.d.comb += [held_next.eq(Mux(inp["ready"], self.i.valid, held)),
                     have_next.eq(Mux(inp["take"], held, have)), self.i.ready.eq(ready_r)]
        m.d.sync += ready_r.eq(~held_next | ~have_next | done_next)

    def _level_check(self, m, accept, b):
        widths = self._p["level_widths"]

        misfit = Cat(*[((b.lvl[i] == 0) & (b.w[i] != 0))
                       | Cat(*[(b.lvl[i] == k + 1) & ~fits_signed(b.w[i], bw)
                               for k, bw in enumerate(widths)]).any()
                       for i in range(self._p["lanes"])])
        # registered first, counted a cycle later: keeps the count off the input's path
        misfit_r = Signal.like(misfit)
        m.d.sync += misfit_r.eq(Mux(accept, misfit, 0))
        with m.If(misfit_r.any()):
            m.d.sync += [self.level_error.eq(1),
                         self.level_errors.eq(self.level_errors + popcount(misfit_r))]
        return misfit

    def _front_end(self, m, en, inp):
        """Holds one beat and issues ``slots`` pairs per cycle. Returns the step's values."""
        p = self._p
        n, s = p["lanes"], p["slots"]
        have = Signal()
        w = Signal(data.ArrayLayout(signed(8), n))
        x = Signal(data.ArrayLayout(signed(9), n))  # x - x_zero_point
        last = Signal()
        first = Signal(init=1)
        ow = [Signal(signed(8), name=f"slot{j}_w") for j in range(s)]
        ox = [Signal(signed(9), name=f"slot{j}_x") for j in range(s)]
        done = Signal()
        load = Signal()
        beat = inp["beat"]

        hits_of = {}  # slot -> its lanes' hit bits this step (the skipping front end)

        def drive(j, hits):
            self._drive_slot(m, j, hits, ow, ox, w, x)
            hits_of[j] = hits

        done_next = Signal(name="done_next")  # ``done`` in the next cycle (if known)
        if p["skip"]:
            nnz = self._provider.dispatch(m, lanes=n, inp=inp, load=load,
                                          advance=have & en, done=done, drive=drive,
                                          done_next=done_next)
            if not self._provider.done_registered(n):
                done_next = None
            skipped = n - nnz  # counted the cycle after the load, from the registers
            k = None
        else:
            steps = -(-n // s)
            k = Signal(range(steps))
            k_next = Signal(range(steps), name="k_next")
            m.d.comb += [k_next.eq(Mux(load, 0, Mux(have & en, k + 1, k))),
                         done.eq(k == steps - 1), done_next.eq(k_next == steps - 1)]
            m.d.sync += k.eq(k_next)
            # slot j takes lane k*s + j. word_select makes continuous logic, which Icarus
            # evaluates from time 0; an Array index becomes a case in always @*, which it
            # does not evaluate until an input changes (X until then).
            for j in range(s):
                lanes_j = [i * s + j for i in range(steps)]
                m.d.comb += [
                    ow[j].eq(Cat(*[w[i] if i < n else Const(0, signed(8)) for i in lanes_j])
                             .word_select(k, 8).as_signed()),
                    ox[j].eq(Cat(*[x[i] if i < n else Const(0, signed(9)) for i in lanes_j])
                             .word_select(k, 9).as_signed())]
            skipped = 0

        m.d.comb += [inp["take"].eq(en & (~have | done)), load.eq(inp["take"] & inp["valid"])]
        with m.If(inp["take"]):
            m.d.sync += have.eq(inp["valid"])
        loaded = Signal()
        m.d.sync += loaded.eq(load)
        with m.If(load):
            m.d.sync += [w.eq(beat.w), last.eq(beat.last),
                         x.eq(Cat(*[(beat.x[i] - inp["zp"])[:9] for i in range(n)]))]
        with m.If(loaded):
            m.d.sync += [self.pairs.eq(self.pairs + n), self.skipped.eq(self.skipped + skipped)]
        issue = have & en
        with m.If(issue):
            m.d.sync += [self.cycles.eq(self.cycles + 1), first.eq(done & last)]
        step = dict(v=issue, first=first, last=done & last, w=ow, x=ox, lanes={},
                    fixed_slots=None, have=have, done_next=done_next)
        if self._banks:
            self._bank_step(m, load, beat, hits_of, k, step)
        return step

    def _bank_step(self, m, load, beat, hits_of, k, step):
        """What a step carries down the pipeline for a bank: ``bank`` (the beat is a bank
        beat), ``bsel`` (its bank) and, per lane ``i``, ``on{i}`` (the lane is multiplied
        in this step) and ``slot{i}`` (by which slot). The skipping front end reads them off
        the slots' hit bits (a lane has at most one); the dense one's are fixed: lane
        ``i`` in step ``i // slots`` on slot ``i % slots`` (``fixed_slots``)."""
        n, s = self._p["lanes"], self._p["slots"]
        bank, bsel = Signal(name="beat_bank"), Signal(range(N_BANKS), name="beat_bank_sel")
        with m.If(load):
            m.d.sync += [bank.eq(beat.bank), bsel.eq(beat.bank_sel)]
        lanes = dict(bank=bank, bsel=bsel)
        if k is not None:  # the dense baseline
            lanes.update({f"on{i}": k == i // s for i in range(n)})
            step["fixed_slots"] = [i % s for i in range(n)]
        else:
            for i in range(n):
                hits = [hits_of[j][i] for j in range(s)]
                on = Signal(name=f"lane{i}_on")
                m.d.comb += on.eq(Cat(*hits).any())
                lanes[f"on{i}"] = on
                if s > 1:
                    slot = Signal(range(s), name=f"lane{i}_slot")
                    m.d.comb += slot.eq(one_hot_or(hits, [Const(j, range(s)) for j in range(s)]))
                    lanes[f"slot{i}"] = slot
            if s == 1:
                step["fixed_slots"] = [0] * n
        step["lanes"] = lanes

    def _bank_add(self, m, en, keep, fixed_slots):
        """``bank_add``: a bank step's products per lane, as it leaves the last stage."""
        n, s = self._p["lanes"], self._p["slots"]
        products = [keep[f"p{j}"] for j in range(s)]
        out = self.bank_add
        m.d.comb += [out.valid.eq(en & keep["v"] & keep["bank"]),
                     out.payload.bank.eq(keep["bsel"])]
        for i in range(n):
            if fixed_slots is not None:
                p = products[fixed_slots[i]]
            else:  # a one-hot AND-OR over the slots
                p = one_hot_or([keep[f"slot{i}"] == j for j in range(s)], products)
            m.d.comb += out.payload.p[i].eq(Mux(keep[f"on{i}"], p, 0))

    def _drive_slot(self, m, j, hits, ow, ox, w, x):
        """Slot ``j`` takes the weight and activation of the lane whose hit bit is set."""
        n = self._p["lanes"]
        m.d.comb += [ow[j].eq(one_hot_or(hits, [w[i] for i in range(n)])),
                     ox[j].eq(one_hot_or(hits, [x[i] for i in range(n)]))]

    def _accumulate(self, m, en, total, keep):
        """acc <- (first ? 0 : acc) + total; at ``last`` the result leaves."""
        acc = Signal(signed(32))
        nxt = Signal(signed(34))
        m.d.comb += nxt.eq(Mux(keep["first"], 0, acc) + total)
        with m.If(en & keep["v"]):
            m.d.sync += acc.eq(nxt[:32])
            with m.If(~fits_signed(nxt, 32)):
                m.d.sync += self.overflow.eq(1)
        emit = keep["v"] & keep["last"]
        if self._p["output"] == "stream":
            with m.If(en):
                m.d.sync += [self.o.valid.eq(emit), self.o.payload.eq(nxt[:32])]
        else:
            m.d.sync += [self.wr_en.eq(emit), self.wr_data.eq(nxt[:32])]
            with m.If(self.wr_en):
                m.d.sync += self.wr_addr.eq(self.wr_addr + 1)

