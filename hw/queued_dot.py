"""The carry-over dot-product engine: lane groups with pair queues (issue 25).

Cycle model and bit-exact reference: ``golden.queued_dot.queued_cycles`` (every beat's take
cycle and every result's cycle) and ``golden.sparse_dot.sparse_dot`` (the values).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params

from .arith import adder_tree, one_hot_or, popcount
from .sparse_dot import PRODUCT_BITS, beat_layout

# a multiplier's partial sum of a vector: wide enough that it cannot wrap before the
# vector's sum leaves int32 by far (2**35 / 2**15: a million products a multiplier), so
# ``overflow`` is checked once, on the vector's sum
PARTIAL_BITS = 36


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


class QueuedDotProduct(wiring.Component):
    """Dot products of vectors streamed as beats of ``lanes`` pairs, the multipliers kept
    busy across beats.

    ``result = sum (x[i] - x_zero_point) * w[i]`` over the beats of a vector (the beat with
    ``last`` ends it), exact in int32; a vector's sum outside int32 sets the sticky
    ``overflow`` flag (the result is then its low 32 bits). The zero point is sampled
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

    Vectors in flight carry numbers modulo ``tags`` (each multiplier keeps a partial sum
    per number, in distributed RAM): a vector holds its number from its first beat's take
    to its result's leave, and a beat that starts a vector waits while all ``tags`` are
    held. A vector is done in the cycle its last pair is multiplied (or its last beat taken,
    if no pair is left); its result is valid on ``o`` ``latency`` cycles later at the
    earliest (6: the issue register's, the operands', the products', the partial sums',
    the partial sums read back and the output's registers), in order, one a cycle. While
    ``o`` is stalled the whole engine stalls (no cycle counts).

    Every cycle of this is ``golden.queued_dot.queued_cycles(nz, last, lanes=, slots=,
    depth=, lookaside=, tags=, latency=self.latency)``: its ``take`` is the cycle a beat
    leaves the input registers (``INPUT_REGISTERS`` cycles after its ``i`` transfer at
    the earliest: pass those as ``arrive``), its ``leave`` the cycle a result is first
    valid on ``o``.

    ================== ===== ======================================================
    ``i``              In    stream of ``sparse_dot.beat_layout(lanes)`` (``lvl`` unused)
    ``x_zero_point``   In    the zero point, sampled with each beat
    ``o``              Out   stream of int32 results, in order
    ``overflow``       Out   sticky: a vector's sum left int32
    ================== ===== ======================================================

    ``push=True`` (a consumer that takes every result, as the core's accumulators do):
    ``o.ready`` is not looked at and nothing stalls (the stall's enable, which reaches
    every register, is gone from the paths).

    ``depth`` and ``tags`` are powers of two (the queues and the numbers wrap), ``depth`` at
    least 4; other parameters as ``spec.params.queued_dot``.
    """

    def __init__(self, *, lanes=16, slots=4, depth=8, lookaside=2, tags=8, push=False):
        self._p = spec_params.queued_dot(lanes=lanes, slots=slots, depth=depth,
                                         lookaside=lookaside, tags=tags, latency=self.latency)
        _pow2("depth", depth)
        if depth < 4:  # (the mask cache reads the entries up to 3 after the head)
            raise ValueError(f"depth must be at least 4 in the RTL, not {depth!r}")
        _pow2("tags", tags)
        self._push = spec_params.flag("push", push)
        super().__init__({
            "i": In(stream.Signature(beat_layout(lanes))),
            "x_zero_point": In(signed(8)),
            "o": Out(stream.Signature(signed(32))),
            "overflow": Out(1),
        })
        self.took = Signal(name="take")  # the front end takes the held beat (testbenches)

    latency = 6
    # a beat transferred on ``i`` in cycle ``c`` is offered to the front end (the model's
    # ``arrive``) from cycle ``c + INPUT_REGISTERS``
    INPUT_REGISTERS = 2

    @property
    def params(self):
        """The block's parameters: the model's (``golden.queued_dot.queued_cycles``) and,
        when set, ``push``."""
        extra = {"push": True} if self._push else {}
        return {**self.model_params, **extra}

    @property
    def model_params(self):
        """The keyword parameters of its cycle model, ``golden.queued_dot.queued_cycles``."""
        return {k: v for k, v in self._p.items() if k not in ("front", "borrow")}

    def elaborate(self, platform):
        m = Module()
        p = self._p
        en = Signal()
        m.d.comb += en.eq(1 if self._push else ~self.o.valid | self.o.ready)
        beat = self._input_register(m, en)
        vec = self._vectors(m, en, beat)
        queues = [_Queue(m, en, p["depth"], p["lanes"] // p["slots"], p["tags"], f"q{j}")
                  for j in range(p["slots"])]
        self._fill(m, beat, vec, queues)
        operands = self._issue(m, en, queues)
        self._done(m, en, beat, vec, queues)
        self._multiply_and_accumulate(m, en, vec, operands)
        return m

    def _input_register(self, m, en):
        """Two registers before the front end: a beat enters the first (with its
        zero-point-corrected activations, its effectual mask and its count of pairs per
        group, computed from the ports) and moves to the second, where it waits until it is
        taken, when that is free or being freed. So the front end compares registered counts
        with registered room, and no port reaches the take: a beat transferred on ``i`` in
        cycle ``c`` is offered to the front end from ``c + INPUT_REGISTERS`` at the
        earliest."""
        n, s = self._p["lanes"], self._p["slots"]
        g = n // s
        b = self.i.payload
        take = self.took

        def stage(name):
            return dict(valid=Signal(name=f"{name}_valid"), last=Signal(name=f"{name}_last"),
                        w=[Signal(signed(8), name=f"{name}_w{i}") for i in range(n)],
                        x=[Signal(signed(9), name=f"{name}_xd{i}") for i in range(n)],
                        nz=Signal(n, name=f"{name}_nz"),
                        counts=[Signal(range(g + 1), name=f"{name}_count{j}")
                                for j in range(s)])

        def load(dst, src):
            m.d.sync += [dst["valid"].eq(src["valid"]), dst["last"].eq(src["last"]),
                         dst["nz"].eq(src["nz"])]
            m.d.sync += [d.eq(v) for d, v in zip(dst["w"], src["w"], strict=True)]
            m.d.sync += [d.eq(v) for d, v in zip(dst["x"], src["x"], strict=True)]
            m.d.sync += [d.eq(v) for d, v in zip(dst["counts"], src["counts"], strict=True)]

        nz_in = Signal(n, name="nz_in")
        m.d.comb += nz_in.eq(Cat(*[(b.w[i] != 0) & (b.x[i] != self.x_zero_point)
                                   for i in range(n)]))
        port = dict(valid=self.i.valid, last=b.last, nz=nz_in,
                    w=[b.w[i] for i in range(n)],
                    x=[(b.x[i] - self.x_zero_point)[:9].as_signed() for i in range(n)],
                    counts=[popcount(nz_in[j * g:(j + 1) * g]) for j in range(s)])
        pre, held = stage("pre"), stage("held")
        advance = Signal(name="advance")  # the held register takes the first's beat
        m.d.comb += [advance.eq(en & (~held["valid"] | take)),
                     self.i.ready.eq(en & (~pre["valid"] | advance))]
        with m.If(self.i.ready):
            load(pre, port)
        with m.If(advance):
            load(held, pre)
        counts_next = [Signal(range(g + 1), name=f"held_count{j}_next") for j in range(s)]
        m.d.comb += [counts_next[j].eq(Mux(advance, pre["counts"][j], held["counts"][j]))
                     for j in range(s)]
        return dict(held=held["valid"], take=take, last=held["last"], w=held["w"],
                    x=held["x"], nz=held["nz"], counts=held["counts"],
                    counts_next=counts_next)

    def _vectors(self, m, en, beat):
        """The vector numbers: ``vin`` the number of the vector the held beat belongs to
        (``open``: a beat of it was taken), ``used`` the numbers in use (started, result not
        yet left on ``o``); a beat that starts a vector is taken only while one is free.
        ``room`` is ``_fill``'s register."""
        tags = self._p["tags"]
        vin = Signal(range(tags), name="vin")
        opened = Signal(name="open")
        used = Signal(range(tags + 1), name="tags_used")
        starts = Signal(name="starts")
        room = Signal(init=1, name="room")  # (_fill's register: every queue has room)
        m.d.comb += [starts.eq(~opened),
                     beat["take"].eq(en & beat["held"] & room & (~starts | (used < tags)))]
        start = beat["take"] & starts
        leave = self.o.valid if self._push else self.o.valid & self.o.ready
        m.d.sync += used.eq(used + start - leave)
        with m.If(beat["take"]):
            m.d.sync += opened.eq(~beat["last"])
            with m.If(beat["last"]):
                m.d.sync += vin.eq(vin + 1)
        return dict(vin=vin, open=opened, start=start, room=room)

    def _fill(self, m, beat, vec, queues):
        """The held beat's effectual pairs enter the queues (in lane order, at each queue's
        tail) when it is taken; ``room``: every queue has room for them."""
        n, s = self._p["lanes"], self._p["slots"]
        g = n // s
        # registered: the next cycle's counts against the next cycle's room
        m.d.sync += vec["room"].eq(Cat(*[beat["counts_next"][j] <= q.space_next
                                         for j, q in enumerate(queues)]).all())
        for j, q in enumerate(queues):
            lanes = range(j * g, (j + 1) * g)
            q.write(beat["take"], beat["nz"][j * g:(j + 1) * g], [beat["w"][i] for i in lanes],
                    [beat["x"][i] for i in lanes], vec["vin"], beat["counts"][j])

    def _issue(self, m, en, queues):
        """Each multiplier's pair this cycle: its queue's head, else the second pair of the
        first of the next ``lookaside`` queues that holds two not yet lent (in multiplier
        order). Sets each queue's pops. The choice is registered with the queues' words (the
        issue register); returns per multiplier its operands picked from those the cycle
        after: (valid, w, x, tag)."""
        s, r = self._p["slots"], self._p["lookaside"]
        lent = [Const(0, 1)] * s
        out = []
        for k in range(s):
            own = queues[k].occ != 0
            chosen = own
            hits, sources = [own], [queues[k].first]
            for step in range(1, r + 1):
                j = (k + step) % s
                hit = Signal(name=f"m{k}_borrows_q{j}")
                m.d.comb += hit.eq(~chosen & (queues[j].occ >= 2) & ~lent[j])
                lent[j] = lent[j] | hit
                chosen = chosen | hit
                hits.append(hit)
                sources.append(queues[j].second)
            valid = Signal(name=f"m{k}_valid")  # (registered: the issue register)
            hits_r = Signal(len(hits), name=f"m{k}_source")
            with m.If(en):
                m.d.sync += [valid.eq(chosen), hits_r.eq(Cat(*hits))]
            w, x, t = (one_hot_or(list(hits_r), [src[f] for src in sources]) for f in range(3))
            out.append((valid, w, x, t))
        for k, q in enumerate(queues):
            m.d.comb += q.pops.eq((q.occ != 0) + lent[k])
        return out

    def _done(self, m, en, beat, vec, queues):
        """The oldest vector not yet done (number ``d``; ``pending`` vectors started and not
        done) is found done the cycle after it is (from registers only): its last beat is
        taken and no queue's head pair carries its number (the queues hold pairs in vector
        order, so only a head can). One vector a cycle; ``fin`` carries it down the pipeline
        beside its last products (the model's done, one cycle later, for every vector: a
        vector found at ``c`` is found at ``c + 1``, the one after it no earlier)."""
        tags = self._p["tags"]
        d = Signal(range(tags), name="oldest")
        pending = Signal(range(tags + 1), name="pending")
        closed = (pending >= 2) | ((pending == 1) & ~vec["open"])
        remains = Cat(*[(q.occ != 0) & (q.head_tag == d) for q in queues]).any()
        done = Signal(name="done")
        m.d.comb += done.eq(en & closed & ~remains)
        m.d.sync += pending.eq(pending + vec["start"] - done)
        with m.If(done):
            m.d.sync += d.eq(d + 1)
        self._fin = (done, d)

    def _multiply_and_accumulate(self, m, en, vec, operands):
        """Operands registered, then products registered with their vectors' numbers; each
        multiplier adds its product into its own table of partial sums (distributed RAM,
        one row per vector number: read, add, write in the product's cycle). A row counts
        only when its *touched* bit (a flip-flop per multiplier and number, cleared when a
        vector takes the number, set when the multiplier writes the row) is set, else it is
        0: the RAM is never cleared. Four cycles after a vector is done (its last products
        were written the cycle before) the multipliers' rows are read and registered, their
        sum is registered on ``o`` the cycle after, and it is valid there 6 cycles after
        the vector was done (``latency``)."""
        tags = self._p["tags"]
        done, d = self._fin
        fin = [(done, d)]  # found one cycle after the vector is done; then 2, 3, 4 after
        for stage in range(2, 5):
            v, t = Signal(name=f"fin{stage}_valid"), Signal(range(tags), name=f"fin{stage}_tag")
            with m.If(en):
                m.d.sync += [v.eq(fin[-1][0]), t.eq(fin[-1][1])]
            fin.append((v, t))
        read_v, read_t = fin[3]  # the rows are read 4 cycles after
        partials = []
        for k, (valid, w, x, t) in enumerate(operands):
            av, aw, ax = Signal(name=f"a{k}_valid"), Signal(signed(8), name=f"a{k}_w"), \
                Signal(signed(9), name=f"a{k}_x")
            at = Signal(range(tags), name=f"a{k}_tag")
            pv, pt = Signal(name=f"p{k}_valid"), Signal(range(tags), name=f"p{k}_tag")
            pp = Signal(signed(PRODUCT_BITS), name=f"p{k}")
            with m.If(en):
                m.d.sync += [av.eq(valid), aw.eq(w), ax.eq(x), at.eq(t),
                             pv.eq(av), pt.eq(at), pp.eq(aw * ax)]
            table = Memory(shape=signed(PARTIAL_BITS), depth=max(tags, 2), init=[])
            m.submodules[f"partials{k}"] = table
            rmw, final, wr = table.read_port(domain="comb"), table.read_port(domain="comb"), \
                table.write_port()
            touched = [Signal(name=f"touched{k}_{u}") for u in range(tags)]
            for u in range(tags):
                with m.If(vec["start"] & (vec["vin"] == u)):
                    m.d.sync += touched[u].eq(0)
                with m.Elif(en & pv & (pt == u)):
                    m.d.sync += touched[u].eq(1)
            # the row's touched bit, read beside the product (a write of the same row by
            # the product before it sets it: bypassed), so the add does not wait for it
            pt_row = Signal(name=f"p{k}_row_touched")
            with m.If(en):
                m.d.sync += pt_row.eq(_pick(touched, at) | (pv & (pt == at)))
            total = Signal(signed(PARTIAL_BITS), name=f"partial{k}_next")
            m.d.comb += [rmw.addr.eq(pt), total.eq(Mux(pt_row, rmw.data, 0) + pp),
                         wr.addr.eq(pt), wr.en.eq(en & pv), wr.data.eq(total),
                         final.addr.eq(read_t)]
            got = Signal(signed(PARTIAL_BITS), name=f"partial{k}_final")
            with m.If(en):
                m.d.sync += got.eq(Mux(_pick(touched, read_t), final.data, 0))
            partials.append(got)
        sum_v = Signal(name="fin5_valid")  # the rows registered: their sum goes to ``o``
        whole = Signal(signed(PARTIAL_BITS + 2), name="whole")
        whole_top = Signal(PARTIAL_BITS - 29, name="whole_top")
        whole_v = Signal(name="whole_top_valid")
        m.d.comb += whole.eq(adder_tree(partials))
        with m.If(en):
            m.d.sync += [sum_v.eq(read_v), self.o.valid.eq(sum_v),
                         self.o.payload.eq(whole[:32])]
            with m.If(sum_v):
                m.d.sync += [whole_top.eq(whole[31:]), whole_v.eq(1)]
            with m.Else():
                m.d.sync += whole_v.eq(0)
        with m.If(whole_v & (whole_top != 0) & ~whole_top.all()):
            m.d.sync += self.overflow.eq(1)


def _lowest(v):
    """The lowest set bit of ``v``, one-hot (0 if none)."""
    return Cat(*[v[a] & ~v[:a].any() if a else v[0] for a in range(len(v))])


class _Queue:
    """One group's queue of effectual pairs, kept as a ring of *group beats*: an entry is a
    beat's ``g`` lanes of the group (weight, activation minus the zero point) in
    distributed RAM, written whole at the tail when the beat has pairs in the group, and in
    flip-flops its vector number and its *remaining* mask (the lanes not yet multiplied,
    cleared as they are). The queue's pairs, in order, are the remaining lanes of the
    entries from the head, lowest lane first; ``occ`` counts them (the model's occupancy), so
    ``depth`` entries always suffice. Two read ports (the head entry and the next) give the
    first pair (the head entry's lowest remaining lane) and the second (its next, or the next
    entry's lowest). ``pops`` (0, 1 or 2, driven by the issue logic) clear them."""

    def __init__(self, m, en, depth, g, tags, name):
        self.m, self.g, self.bits, self._en = m, g, (depth - 1).bit_length(), en
        self._name = name
        self.mem = Memory(shape=unsigned(17 * g), depth=depth, init=[])
        m.submodules[f"{name}_pairs"] = self.mem
        self.wr = self.mem.write_port()
        rd = [self.mem.read_port(domain="comb") for _ in range(2)]
        self.masks = [Signal(g, name=f"{name}_mask{e}") for e in range(depth)]
        self.t = [Signal(range(tags), name=f"{name}_t{e}") for e in range(depth)]
        self.head = Signal(range(depth), name=f"{name}_head")
        self.tail = Signal(range(depth), name=f"{name}_tail")
        self.occ = Signal(range(depth + 1), name=f"{name}_occ")
        # ``depth - occ`` in a register of its own: the room a beat's pairs are compared with
        self.space = Signal(range(depth + 1), init=depth, name=f"{name}_space")
        self.space_next = Signal(range(depth + 1), name=f"{name}_space_next")
        self.pops = Signal(2, name=f"{name}_pops")
        at = [self.head, (self.head + 1)[:self.bits]]
        m.d.comb += [rd[0].addr.eq(at[0]), rd[1].addr.eq(at[1])]
        # the head entry's and the next entry's remaining masks, cached in registers of
        # their own (``masks`` holds every entry's; ``write`` keeps both in step)
        mh, mn = Signal(g, name=f"{name}_head_mask"), Signal(g, name=f"{name}_next_mask")
        self._mh, self._mn = mh, mn
        t0, t1 = (_pick(self.t, a) for a in at[:2])
        h1 = Signal(g, name=f"{name}_h1")  # the first pair's lane (one-hot)
        rest = Signal(g, name=f"{name}_rest")  # the head entry's lanes after it
        h2 = Signal(g, name=f"{name}_h2")  # the second pair's lane, in the head entry
        n1 = Signal(g, name=f"{name}_n1")  # or the next entry's first lane
        m.d.comb += [h1.eq(_lowest(mh)), rest.eq(mh & ~h1), h2.eq(_lowest(rest)),
                     n1.eq(Mux(rest.any(), 0, _lowest(mn)))]
        # registered as they are chosen (the issue register): the two entries' words, the
        # first and second pairs' lanes and numbers; the pairs are picked out the cycle after
        words = [Signal(17 * g, name=f"{name}_word{p}") for p in range(2)]
        h1_r, sec_r = Signal(g, name=f"{name}_h1_r"), Signal(2 * g, name=f"{name}_second_r")
        tf, ts = Signal(range(tags), name=f"{name}_t_first"), \
            Signal(range(tags), name=f"{name}_t_second")
        with m.If(en):
            m.d.sync += [words[0].eq(rd[0].data), words[1].eq(rd[1].data), h1_r.eq(h1),
                         sec_r.eq(Cat(h2, n1)), tf.eq(t0), ts.eq(Mux(rest.any(), t0, t1))]
        lanes = [words[p][17 * a:17 * (a + 1)] for p in range(2) for a in range(g)]

        def pair(hits, words, tag):
            w = one_hot_or(hits, [v[:8] for v in words])[:8].as_signed()
            x = one_hot_or(hits, [v[8:] for v in words])[:9].as_signed()
            return (w, x, tag)

        self.first = pair(list(h1_r), lanes[:g], tf)
        self.second = pair(list(sec_r), lanes, ts)
        # after the pops: the head entry's lanes left, the next entry's, the head's advance
        pop1, pop2 = self.pops != 0, self.pops == 2
        used_next = pop2 & ~rest.any()
        self._mh_after = Signal(g, name=f"{name}_head_left")
        self._mn_after = Signal(g, name=f"{name}_next_left")
        m.d.comb += [self._mh_after.eq(mh & ~Mux(pop1, h1, 0) & ~Mux(pop2, h2, 0)),
                     self._mn_after.eq(mn & ~Mux(used_next, n1, 0))]
        self._used_next, self._at = used_next, at
        self.advance = Signal(2, name=f"{name}_advance")
        m.d.comb += self.advance.eq(Mux(pop1 & ~self._mh_after.any(),
                                        1 + (used_next & ~self._mn_after.any()), 0))
        self.head_tag = t0  # the vector number of the head pair (when there is one)

    def write(self, take, nz, ws, xs, tag, count):
        """When ``take`` and ``count`` (the group's pairs in the beat) is not 0: the beat's
        lanes enter as a new entry at the tail, its remaining mask ``nz``."""
        m, en = self.m, self._en
        put = take & (count != 0)
        m.d.comb += [self.wr.addr.eq(self.tail), self.wr.en.eq(Mux(put, -1, 0)),
                     self.wr.data.eq(Cat(*[Cat(w, x) for w, x in zip(ws, xs, strict=True)]))]
        # the tail and the head also one-hot (registers beside the binary pointers): an
        # entry's write enables are then one gate from ``take`` and the pops
        depth = len(self.masks)
        tail_oh = Signal(depth, init=1, name=f"{self._name}_tail_onehot")
        head_oh = Signal(depth, init=1, name=f"{self._name}_head_onehot")
        rot = [_rotated(head_oh, k) for k in range(3)]  # the entry k after the head
        for e in range(depth):
            with m.If(put & tail_oh[e]):
                m.d.sync += [self.masks[e].eq(nz), self.t[e].eq(tag)]
            with m.Elif(en & (self.pops != 0) & head_oh[e]):
                m.d.sync += self.masks[e].eq(self._mh_after)
            with m.Elif(en & self._used_next & rot[1][e]):
                m.d.sync += self.masks[e].eq(self._mn_after)
        with m.If(put):
            m.d.sync += tail_oh.eq(Cat(tail_oh[-1], tail_oh[:-1]))
        self._cache(put, nz, rot)
        with m.If(en):
            m.d.sync += head_oh.eq(Mux(self.advance == 2, rot[2],
                                       Mux(self.advance == 1, rot[1], head_oh)))
        m.d.comb += self.space_next.eq(Mux(en, self.space + self.pops - Mux(take, count, 0),
                                           self.space))
        with m.If(en):
            m.d.sync += [self.head.eq(self.head + self.advance),
                         self.occ.eq(self.occ - self.pops + Mux(take, count, 0)),
                         self.space.eq(self.space_next)]
        with m.If(put):
            m.d.sync += self.tail.eq(self.tail + 1)

    def _cache(self, put, nz, rot):
        """The next head and next-entry masks: the masks of the entries ``advance`` places
        on, which are the pops' results (an entry the pops touched and that stays), ``nz``
        (the entry is written now) or ``masks`` (an entry the pops did not touch)."""
        m, en = self.m, self._en
        # the masks of the entries 2 and 3 after the head (untouched by the pops)
        ahead = {k: one_hot_or(list(_rotated(rot[0], k)), self.masks) for k in (2, 3)}
        written = [put & (self.tail == ((self.head + k)[:self.bits] if k else self.head))
                   for k in range(4)]
        next_left = Mux(self._used_next, self._mn_after, self._mn)  # the next entry's, after
        for cache, offset in ((self._mh, 0), (self._mn, 1)):
            cands = []  # by advance: the mask of the entry that becomes this cache's
            for a in range(3):
                k = a + offset
                old = (self._mh_after if k == 0 else next_left if k == 1 else ahead[k])
                cands.append(Mux(written[k], nz, old))
            with m.If(en):
                m.d.sync += cache.eq(Mux(self.advance == 2, cands[2],
                                         Mux(self.advance == 1, cands[1], cands[0])))


def _rotated(onehot, k):
    """A one-hot value rotated ``k`` places up (the position ``k`` after)."""
    n = len(onehot)
    return Cat(onehot[n - k:], onehot[:n - k])
