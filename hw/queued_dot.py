"""The carry-over dot-product engine: lane groups with pair queues (issue 25).

Cycle model and bit-exact reference: ``golden.queued_dot.queued_cycles`` (every beat's take
cycle and every result's cycle) and ``golden.sparse_dot.sparse_dot`` (the values).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params

from .arith import adder_tree, fits_signed, popcount
from .sparse_dot import PRODUCT_BITS, beat_layout


def _pow2(name, value):
    if value & (value - 1):
        raise ValueError(f"{name} must be a power of two in the RTL, not {value!r}")


def _pick(entries, index):
    """``entries[index]`` (signals of one width; a power-of-two count) as a word select: a
    continuous multiplexer (an ``Array`` index would be a case statement, which Icarus
    leaves X until an input changes)."""
    width = len(entries[0])
    if not width:  # (one vector number: no bits)
        return Const(0, 0)
    return Cat(*entries).word_select(index, width)


def _one_hot_or(hits, values):
    """The OR of the values whose hit bit is set (at most one is): an AND-OR multiplexer."""
    out = 0
    for h, v in zip(hits, values, strict=True):
        out = out | Mux(h, v, 0)
    return out


class QueuedDotProduct(wiring.Component):
    """Dot products of vectors streamed as beats of ``lanes`` pairs, the multipliers kept
    busy across beats.

    ``result = sum (x[i] - x_zero_point) * w[i]`` over the beats of a vector (the beat with
    ``last`` ends it), exact in int32; a vector's sum outside int32 sets the sticky
    ``overflow`` flag (its result is the sum's low 32 bits). The zero point is sampled
    with each beat.

    The lanes are in ``slots`` groups of ``lanes // slots`` neighbouring lanes, one
    multiplier per group, and per group a queue of ``depth`` *effectual* pairs (both
    operands non-zero: ``w[i] != 0`` and ``x[i] != x_zero_point``; no other pair is ever
    multiplied). A beat waits in an input register until every group's queue has room for
    its pairs (its occupancy at the start of the cycle plus the beat's pairs of the group
    at most ``depth``); then it is *taken*: its pairs enter the queues, in lane order. Each
    cycle multiplier ``k`` multiplies the head of its own queue, or, when that is empty,
    the second pair of the first of queues ``k + 1 .. k + lookaside`` (modulo ``slots``)
    that holds two and whose second pair no multiplier before ``k`` took this cycle.

    Vectors in flight carry numbers modulo ``tags``, one int32 accumulator each: a vector
    holds its number from its first beat's take to its result's leave, and a beat that
    starts a vector waits while all ``tags`` are held. A vector is done in the cycle its
    last pair is multiplied (or its last beat taken, if no pair is left); its result is
    valid on ``o`` ``latency`` (3: the operands', the product's and the output's registers)
    cycles later at the earliest, in order, one a cycle. While ``o`` is stalled the whole
    engine stalls (no cycle counts).

    Every cycle of this is ``golden.queued_dot.queued_cycles(nz, last, lanes=, slots=,
    depth=, lookaside=, tags=, latency=self.latency)``: its ``take`` is the cycle a beat
    leaves the input register (the cycle after its ``i`` transfer at the earliest: pass
    those as ``arrive``), its ``leave`` the cycle a result is first valid on ``o``.

    ================== ===== ======================================================
    ``i``              In    stream of ``sparse_dot.beat_layout(lanes)`` (``lvl`` unused)
    ``x_zero_point``   In    the zero point, sampled with each beat
    ``o``              Out   stream of int32 results, in order
    ``overflow``       Out   sticky: a vector's sum left int32
    ================== ===== ======================================================

    ``depth`` and ``tags`` are powers of two (the queues and the numbers wrap); other
    parameters as ``spec.params.queued_dot``.
    """

    def __init__(self, *, lanes=16, slots=4, depth=8, lookaside=2, tags=8):
        self._p = spec_params.queued_dot(lanes=lanes, slots=slots, depth=depth,
                                         lookaside=lookaside, tags=tags, latency=self.latency)
        _pow2("depth", depth)
        _pow2("tags", tags)
        super().__init__({
            "i": In(stream.Signature(beat_layout(lanes))),
            "x_zero_point": In(signed(8)),
            "o": Out(stream.Signature(signed(32))),
            "overflow": Out(1),
        })
        self.took = Signal(name="take")  # the front end takes the held beat (testbenches)

    latency = 3

    @property
    def params(self):
        """The model's keyword parameters (``golden.queued_dot.queued_cycles``)."""
        return {k: v for k, v in self._p.items() if k != "front"}

    def elaborate(self, platform):
        m = Module()
        p = self._p
        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)
        beat = self._input_register(m, en)
        vec = self._vectors(m, en, beat)
        queues = [_Queue(m, en, p["depth"], p["tags"], f"q{j}") for j in range(p["slots"])]
        self._fill(m, beat, vec, queues)
        operands = self._issue(m, queues)
        self._done(m, en, beat, vec, queues)
        self._multiply_and_accumulate(m, en, vec, operands)
        return m

    def _input_register(self, m, en):
        """The beat waits here until it is taken: its zero-point-corrected activations,
        weights, effectual mask (computed with the beat: weights and activations compared
        before the register) and its count of pairs per group."""
        n, s = self._p["lanes"], self._p["slots"]
        g = n // s
        b = self.i.payload
        held, take = Signal(), self.took
        last = Signal()
        w = [Signal(signed(8), name=f"in_w{i}") for i in range(n)]
        x = [Signal(signed(8), name=f"in_x{i}") for i in range(n)]
        zp = Signal(signed(8))
        nz = Signal(n)
        m.d.comb += self.i.ready.eq(en & (~held | take))
        with m.If(self.i.ready):
            m.d.sync += [held.eq(self.i.valid), last.eq(b.last), zp.eq(self.x_zero_point),
                         nz.eq(Cat(*[(b.w[i] != 0) & (b.x[i] != self.x_zero_point)
                                     for i in range(n)]))]
            m.d.sync += [w[i].eq(b.w[i]) for i in range(n)]
            m.d.sync += [x[i].eq(b.x[i]) for i in range(n)]
        xd = [Signal(signed(9), name=f"in_xd{i}") for i in range(n)]
        m.d.comb += [xd[i].eq(x[i] - zp) for i in range(n)]
        counts = [Signal(range(g + 1), name=f"in_count{j}") for j in range(s)]
        m.d.comb += [counts[j].eq(popcount(nz[j * g:(j + 1) * g])) for j in range(s)]
        return dict(held=held, take=take, last=last, w=w, x=xd, nz=nz, counts=counts)

    def _vectors(self, m, en, beat):
        """The vector numbers: ``vin`` the number of the vector the held beat belongs to
        (``open``: a beat of it was taken), ``held`` the numbers in use (started, result not
        yet left on ``o``); a beat that starts a vector is taken only while one is free."""
        tags = self._p["tags"]
        vin = Signal(range(tags), name="vin")
        opened = Signal(name="open")
        used = Signal(range(tags + 1), name="tags_used")
        starts = Signal(name="starts")
        room = Signal(name="room")  # driven by _fill: every queue has room for the beat
        m.d.comb += [starts.eq(~opened),
                     beat["take"].eq(en & beat["held"] & room & (~starts | (used < tags)))]
        start = beat["take"] & starts
        leave = self.o.valid & self.o.ready
        m.d.sync += used.eq(used + start - leave)
        with m.If(beat["take"]):
            m.d.sync += opened.eq(~beat["last"])
            with m.If(beat["last"]):
                m.d.sync += vin.eq(vin + 1)
        return dict(vin=vin, open=opened, start=start, room=room)

    def _fill(self, m, beat, vec, queues):
        """The held beat's effectual pairs enter the queues (in lane order, at each queue's
        tail) when it is taken; ``room``: every queue has room for them."""
        n, s, depth = self._p["lanes"], self._p["slots"], self._p["depth"]
        g = n // s
        m.d.comb += vec["room"].eq(Cat(*[q.occ + beat["counts"][j] <= depth
                                         for j, q in enumerate(queues)]).all())
        for j, q in enumerate(queues):
            lanes = range(j * g, (j + 1) * g)
            nz = [beat["nz"][i] for i in lanes]
            # lane a of the group goes to the tail plus the count of effectual lanes before it
            pos = [(q.tail + (popcount(Cat(*nz[:a])) if a else 0))[:q.bits] for a in range(g)]
            q.write(beat["take"], [nz[a] for a in range(g)], pos,
                    [beat["w"][i] for i in lanes], [beat["x"][i] for i in lanes],
                    vec["vin"], beat["counts"][j])

    def _issue(self, m, queues):
        """Each multiplier's operands this cycle: its queue's head, else the second pair of
        the first of the next ``lookaside`` queues that holds two not yet lent (in
        multiplier order). Sets each queue's pops. Returns per multiplier (valid, w, x, tag)."""
        s, r = self._p["slots"], self._p["lookaside"]
        lent = [Const(0, 1)] * s
        out = []
        for k in range(s):
            own = queues[k].occ != 0
            chosen = own
            hits, sources = [own], [queues[k].entry(0)]
            for step in range(1, r + 1):
                j = (k + step) % s
                hit = Signal(name=f"m{k}_borrows_q{j}")
                m.d.comb += hit.eq(~chosen & (queues[j].occ >= 2) & ~lent[j])
                lent[j] = lent[j] | hit
                chosen = chosen | hit
                hits.append(hit)
                sources.append(queues[j].entry(1))
            valid = Signal(name=f"m{k}_valid")
            m.d.comb += valid.eq(chosen)
            w, x, t = (_one_hot_or(hits, [src[f] for src in sources]) for f in range(3))
            out.append((valid, w, x, t))
        for k, q in enumerate(queues):
            m.d.comb += q.pops.eq((q.occ != 0) + lent[k])
        return out

    def _done(self, m, en, beat, vec, queues):
        """The oldest vector not yet done (number ``d``; ``pending`` vectors started and not
        done) is done when its last beat is taken and, after this cycle's pops, no queue
        holds a pair of it (the queues hold pairs in vector order, so only the pair at each
        queue's new head can be one) and the beat taken now adds none. One vector a cycle;
        ``fin`` carries it down the pipeline beside its last products."""
        tags = self._p["tags"]
        d = Signal(range(tags), name="oldest")
        pending = Signal(range(tags + 1), name="pending")
        closed = (pending >= 2) | ((pending == 1) & ~vec["open"]) | (beat["take"] & beat["last"])
        takes_d = beat["take"] & ((pending == 0) | ((pending == 1) & vec["open"]))
        adds = takes_d & (Cat(*beat["counts"]) != 0)
        remains = Cat(*[(q.occ > q.pops) & (q.tag_after_pops == d) for q in queues]).any()
        done = Signal(name="done")
        m.d.comb += done.eq(en & closed & ~remains & ~adds)
        m.d.sync += pending.eq(pending + vec["start"] - done)
        with m.If(done):
            m.d.sync += d.eq(d + 1)
        self._fin = (done, d)

    def _multiply_and_accumulate(self, m, en, vec, operands):
        """Operands registered, products registered (with their vectors' numbers), then
        added into their vectors' accumulators; a vector's accumulator is cleared when it
        starts. The result of a done vector leaves from its accumulator's next value."""
        tags = self._p["tags"]
        a_regs, p_regs = [], []
        for k, (valid, w, x, t) in enumerate(operands):
            av, aw, ax = Signal(name=f"a{k}_valid"), Signal(signed(8), name=f"a{k}_w"), \
                Signal(signed(9), name=f"a{k}_x")
            at = Signal(range(tags), name=f"a{k}_tag")
            pv, pt = Signal(name=f"p{k}_valid"), Signal(range(tags), name=f"p{k}_tag")
            pp = Signal(signed(PRODUCT_BITS), name=f"p{k}")
            with m.If(en):
                m.d.sync += [av.eq(valid), aw.eq(w), ax.eq(x), at.eq(t),
                             pv.eq(av), pt.eq(at), pp.eq(aw * ax)]
            a_regs.append((av, at))
            p_regs.append((pv, pt, pp))
        done, d = self._fin
        f1v, f1t = Signal(name="fin1_valid"), Signal(range(tags), name="fin1_tag")
        f2v, f2t = Signal(name="fin2_valid"), Signal(range(tags), name="fin2_tag")
        with m.If(en):
            m.d.sync += [f1v.eq(done), f1t.eq(d), f2v.eq(f1v), f2t.eq(f1t)]
        nexts = []
        for u in range(tags):
            acc = Signal(signed(32), name=f"acc{u}")
            nxt = Signal(signed(34), name=f"acc{u}_next")
            add = adder_tree(Mux(pv & (pt == u), pp, 0) for pv, pt, pp in p_regs)
            m.d.comb += nxt.eq(acc + add)
            with m.If(en):
                with m.If(vec["start"] & (vec["vin"] == u)):
                    m.d.sync += acc.eq(0)
                with m.Else():
                    m.d.sync += acc.eq(nxt[:32])
                    with m.If(~fits_signed(nxt, 32)):
                        m.d.sync += self.overflow.eq(1)
            nexts.append(nxt[:32])
        with m.If(en):
            m.d.sync += [self.o.valid.eq(f2v), self.o.payload.eq(_pick(nexts, f2t))]


class _Queue:
    """One group's queue of effectual pairs: ``depth`` entries (weight, activation minus
    the zero point, vector number) in a ring, ``head`` and ``occ`` (occupancy) registered.
    ``pops`` (0, 1 or 2, driven by the issue logic) leave at the head each cycle; up to a
    group's lanes enter at the tail (``head + occ``, not moved by this cycle's pops)."""

    def __init__(self, m, en, depth, tags, name):
        self.m, self.depth, self.bits = m, depth, (depth - 1).bit_length()
        self.w = [Signal(signed(8), name=f"{name}_w{e}") for e in range(depth)]
        self.x = [Signal(signed(9), name=f"{name}_x{e}") for e in range(depth)]
        self.t = [Signal(range(tags), name=f"{name}_t{e}") for e in range(depth)]
        self.head = Signal(range(depth), name=f"{name}_head")
        self.occ = Signal(range(depth + 1), name=f"{name}_occ")
        self.pops = Signal(2, name=f"{name}_pops")
        self.tail = Signal(range(depth), name=f"{name}_tail")
        m.d.comb += self.tail.eq((self.head + self.occ)[:self.bits])
        self.tag_after_pops = Signal(range(tags), name=f"{name}_tag_after_pops")
        m.d.comb += self.tag_after_pops.eq(_pick(self.t, (self.head + self.pops)[:self.bits]))
        self._en, self._name = en, name

    def entry(self, offset):
        """(weight, activation, number) of the entry ``offset`` places after the head."""
        at = (self.head + offset)[:self.bits] if offset else self.head
        return (_pick(self.w, at).as_signed(), _pick(self.x, at).as_signed(), _pick(self.t, at))

    def write(self, take, hits, pos, ws, xs, tag, count):
        """When ``take``: lane ``a`` with ``hits[a]`` enters at ``pos[a]``; ``count`` of them."""
        m = self.m
        for e in range(self.depth):
            sel = [take & hits[a] & (pos[a] == e) for a in range(len(hits))]
            with m.If(Cat(*sel).any()):
                m.d.sync += [self.w[e].eq(_one_hot_or(sel, ws)), self.x[e].eq(_one_hot_or(sel, xs)),
                             self.t[e].eq(tag)]
        with m.If(self._en):
            m.d.sync += [self.head.eq(self.head + self.pops),
                         self.occ.eq(self.occ - self.pops + Mux(take, count, 0))]
