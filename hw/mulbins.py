"""MultiplierBins: the multiplier slots of the dot-product engine (US10474430).

``MultiplierBins(bins={8: a, 4: b, 2: c})`` provides ``a`` multipliers of 8-bit weights,
``b`` of 4-bit and ``c`` of 2-bit (each times a 9-bit activation difference) and the
dispatcher that fills them: every cycle the beat's pending non-zero pairs go, widest first,
each to a free multiplier of the narrowest bin at least as wide as its precision level, else
of a wider free bin; the rest wait. A beat therefore takes
``max(1, max_t ceil(n_t / m_t))`` cycles (``golden.mulbins.bin_cycles``; ``n_t`` pairs need
at least ``t`` bits, ``m_t`` multipliers have them). Uniform 8-bit bins (``{8: M}``) are the
baseline: ``max(1, ceil(nnz / M))``, ``golden.sparse_dot``'s cycle model. A narrow bin with
one multiplier per lane beside the widest bin (``{8: a, 4: lanes}``) is lane-local: lane
i's narrow pair goes to multiplier i, so that bin needs no dispatcher (``_local``).

It is an elaboration-time part of ``hw.sparse_dot.SparseDotProduct`` (its ``bins=``
option), not a component of its own: the dispatcher works on the engine's registered beat,
and the slots' multipliers and adder tree are the engine's. ``widths`` gives the engine the
weight width of each slot; ``dispatch`` builds the issue logic.
"""

from amaranth.hdl import Cat, Const, Mux, Signal

from sparq.spec import params as spec_params

from .arith import popcount


def prefix_counts(bits, m=None):
    """``[popcount(bits[:i]) for i in range(len(bits))]`` by a log-depth (Hillis-Steele) scan.

    With a module ``m`` every level is a named signal, so that a scan whose results are used
    more than once is built once."""
    n = len(bits)
    cnt = [Const(0, 1)] + [bits[i] for i in range(n - 1)]
    d = 1
    while d < n:
        cnt = [cnt[i] + cnt[i - d] if i >= d else cnt[i] for i in range(n)]
        if m is not None:
            sigs = [Signal(range(n + 1), name=f"scan{d}_{i}") for i in range(n)]
            m.d.comb += [sg.eq(v) for sg, v in zip(sigs, cnt, strict=True)]
            cnt = sigs
        d *= 2
    return cnt


class MultiplierBins:
    """Multiplier bins ``{weight width: count}`` over precision levels ``level_widths``."""

    def __init__(self, bins, level_widths=(2, 4, 8)):
        self.level_widths = tuple(level_widths)
        self.bins = spec_params.multiplier_bins(bins, self.level_widths)

    @property
    def slots(self):
        return sum(self.bins.values())

    @property
    def widths(self):
        """The weight width of each slot, widest first."""
        return [w for w, count in self.bins.items() for _ in range(count)]

    @property
    def uniform(self):
        """Only full-width multipliers: every non-zero pair is alike."""
        return all(c == 0 for w, c in self.bins.items() if w != max(self.level_widths))

    def dispatch(self, m, *, lanes, inp, load, advance, done, drive, done_next=None):
        """Issue logic in module ``m``. ``inp``: the engine's registered beat (``beat.lvl``,
        ``nz``, ``misfit`` masks); ``load``: a new beat is taken; ``advance``: a step is
        issued; ``done`` (driven here): this step is the beat's last; ``drive(j, hits)``
        connects slot ``j`` to the lane whose hit bit is set; ``done_next`` (driven here when
        ``done_registered``): ``done``'s value in the next cycle. Returns the beat's non-zero
        count (valid from the cycle after ``load``)."""
        if self.uniform:
            return self._ranked(m, lanes=lanes, inp=inp, load=load, advance=advance,
                                done=done, drive=drive, done_next=done_next)
        width = self.local_width(lanes)
        if width:
            return self._local(m, width, lanes=lanes, inp=inp, load=load, advance=advance,
                               done=done, drive=drive, done_next=done_next)
        return self._classes(m, lanes=lanes, inp=inp, load=load, advance=advance, done=done,
                             drive=drive)

    def done_registered(self, lanes):
        """Whether ``done`` is a flip-flop (uniform slots, or a lane-local bin: ranked onto
        one width), whose next value ``dispatch`` drives on ``done_next``."""
        return bool(self.uniform or self.local_width(lanes))

    def local_width(self, lanes):
        """The width of a lane-local bin (one multiplier per lane beside the widest bin), or
        None. Such a bin needs no dispatcher: lane i's pair goes to multiplier i."""
        top = max(self.level_widths)
        narrow = [w for w, c in self.bins.items() if w != top and c]
        if len(narrow) == 1 and self.bins[narrow[0]] == lanes:
            return narrow[0]
        return None

    def _local(self, m, width, *, lanes, inp, load, advance, done, drive, done_next=None):
        """The widest bin plus a lane-local bin of ``width`` bits: the pairs such a multiplier
        holds (levels up to b bits, not misfits) are multiplied in the beat's first step on
        their lanes' own multipliers; the others are ranked onto the widest bin's multipliers
        as in ``_ranked``. ``max(1, ceil(n_wide / a))`` steps, which is
        ``golden.mulbins.bin_cycles`` for these bins (the narrow pairs never wait)."""
        n, top = lanes, max(self.level_widths)
        a = self.bins[top]
        level = self.level_widths.index(width) + 1
        lvl, nz_in, bad = inp["beat"].lvl, inp["nz"], inp["misfit"]
        wide_in = Signal(n)
        m.d.comb += wide_in.eq(Cat(*[nz_in[i] & ((lvl[i] > level) | bad[i]) for i in range(n)]))
        narrow = Signal(n)
        with m.If(load):
            m.d.sync += narrow.eq(nz_in & ~wide_in)
        nwide, base = self._rank_onto(m, n, a, wide_in, load, advance, done, drive, done_next)
        for i in range(n):  # lane i's own multiplier, in the first step only
            drive(a + i, [narrow[i] & (base == 0) if k == i else Const(0, 1)
                          for k in range(n)])
        return nwide + popcount(narrow)

    def _ranked(self, m, *, lanes, inp, load, advance, done, drive, done_next=None):
        """Uniform slots: lane i is issued in step ``rank_i // s`` to slot ``rank_i % s``
        (its rank among the beat's non-zero lanes): ``max(1, ceil(nnz / s))`` steps."""
        return self._rank_onto(m, lanes, self.slots, inp["nz"], load, advance, done, drive,
                               done_next)[0]

    @staticmethod
    def _rank_onto(m, n, s, mask, load, advance, done, drive, done_next=None):
        """The lanes of ``mask`` onto slots ``0..s-1``: lane i in step ``rank_i // s`` to slot
        ``rank_i % s``. Returns (the mask's count, the step's first rank ``base``); drives
        ``done_next`` (if given) with the next value of ``done``."""
        nz = Signal(n)
        ranks = [Signal(range(n + 1), name=f"rank{i}") for i in range(n)]
        nnz = Signal(range(n + 1))
        base = Signal(range(n + s + 1))
        cnt = prefix_counts(mask)
        # ``done`` is ``base + s >= nnz``, registered: its next value is computed from the
        # next base and count, so the compare is off the engine's input handshake
        done_r, done_d = Signal(init=1), Signal(name="done_d")
        count = Signal(range(n + 1))
        m.d.comb += [count.eq(popcount(mask)),
                     done_d.eq(Mux(load, count <= s, Mux(advance, base + 2 * s >= nnz, done_r)))]
        m.d.sync += done_r.eq(done_d)
        with m.If(load):
            m.d.sync += [nz.eq(mask), nnz.eq(count), base.eq(0)]
            m.d.sync += [r.eq(c) for r, c in zip(ranks, cnt, strict=True)]
        with m.Elif(advance):
            m.d.sync += base.eq(base + s)
        m.d.comb += done.eq(done_r)
        if done_next is not None:
            m.d.comb += done_next.eq(done_d)
        for j in range(s):
            drive(j, [nz[i] & (ranks[i] == base + j) for i in range(n)])
        return nnz, base

    def _classes(self, m, *, lanes, inp, load, advance, done, drive):
        """Multiplier bins: each step gives the widest pending pairs the widest multipliers
        first, a pair taking the narrowest free multiplier at least as wide as its level:
        ``max(1, max_t ceil(n_t / m_t))`` cycles per beat (golden.mulbins.bin_cycles).
        Returns the beat's non-zero count (every non-zero lane is in exactly one class)."""
        n = lanes
        lw = self.level_widths
        bins = self.bins
        cap = {c: bins[lw[c - 1]] for c in (3, 2, 1)}  # multipliers per class width
        lvl = inp["beat"].lvl
        nz_in = inp["nz"]
        # a lane's class is its declared level; a weight that does not fit its level (a
        # misfit, flagged) takes a full-width multiplier so its product stays exact
        bad = inp["misfit"]
        masks = {c: Signal(n, name=f"mask{c}") for c in (3, 2, 1)}
        m.d.comb += [
            masks[3].eq(Cat(*[nz_in[i] & ((lvl[i] == 3) | bad[i]) for i in range(n)])),
            masks[2].eq(Cat(*[nz_in[i] & (lvl[i] == 2) & ~bad[i] for i in range(n)])),
            masks[1].eq(Cat(*[nz_in[i] & (lvl[i] == 1) & ~bad[i] for i in range(n)]))]
        cls = [Signal(2, name=f"class{i}") for i in range(n)]
        rank = [Signal(range(n + 1), name=f"rank{i}") for i in range(n)]
        cnt = {c: Signal(range(n + 1), name=f"n{c}") for c in (3, 2, 1)}
        base = {c: Signal(range(n + 1), name=f"base{c}") for c in (3, 2, 1)}
        scans = {c: prefix_counts(masks[c], m) for c in (3, 2, 1)}
        with m.If(load):
            for c in (3, 2, 1):
                m.d.sync += [cnt[c].eq(popcount(masks[c])), base[c].eq(0)]
            for i in range(n):
                m.d.sync += [
                    cls[i].eq(Mux(masks[3][i], 3, Mux(masks[2][i], 2, Mux(masks[1][i], 1, 0)))),
                    rank[i].eq(Mux(masks[3][i], scans[3][i],
                                   Mux(masks[2][i], scans[2][i], scans[1][i])))]

        def sig(name, value):  # one named signal per intermediate: computed once, shared
            v = Signal(range(n + 1), name=name)
            m.d.comb += v.eq(value)
            return v

        def vmin(name, a, b):
            return sig(name, Mux(a < b, a, b))

        r = {c: sig(f"left{c}", cnt[c] - base[c]) for c in (3, 2, 1)}
        i3 = vmin("i3", r[3], cap[3])
        f8 = sig("f8", cap[3] - i3)
        u24 = vmin("u24", r[2], cap[2])
        u28 = vmin("u28", r[2] - u24, f8)
        f4, f8b = sig("f4", cap[2] - u24), sig("f8b", f8 - u28)
        u12 = vmin("u12", r[1], cap[1])
        rest = sig("rest", r[1] - u12)
        u14 = vmin("u14", rest, f4)
        u18 = vmin("u18", rest - u14, f8b)
        take = {3: i3, 2: u24 + u28, 1: u12 + u14 + u18}
        m.d.comb += done.eq((r[3] == take[3]) & (r[2] == take[2]) & (r[1] == take[1]))
        with m.If(advance & ~load):
            for c in (3, 2, 1):
                m.d.sync += base[c].eq(base[c] + take[c])

        def wants(c, sel, target):  # lanes of class c with rank == target, when sel
            t = Signal(range(2 * n + 1), name=f"target_c{c}")
            v = Signal(name=f"sel_c{c}")
            m.d.comb += [t.eq(target), v.eq(sel)]
            return [v & (cls[i] == c) & (rank[i] == t) for i in range(n)]

        slot = 0
        for k in range(cap[3]):  # 8-bit bin: class 3, then class 2, then class 1 overflow
            h3 = wants(3, k < i3, base[3] + k)
            h2 = wants(2, (k >= i3) & (k < i3 + u28), base[2] + u24 + k - i3)
            h1 = wants(1, (k >= i3 + u28) & (k < i3 + u28 + u18),
                       base[1] + u12 + u14 + k - i3 - u28)
            drive(slot, [a | b | c for a, b, c in zip(h3, h2, h1, strict=True)])
            slot += 1
        for k in range(cap[2]):  # 4-bit bin: class 2, then class 1 overflow
            h2 = wants(2, k < u24, base[2] + k)
            h1 = wants(1, (k >= u24) & (k < u24 + u14), base[1] + u12 + k - u24)
            drive(slot, [a | b for a, b in zip(h2, h1, strict=True)])
            slot += 1
        for k in range(cap[1]):  # 2-bit bin: class 1
            drive(slot, wants(1, k < u12, base[1] + k))
            slot += 1
        return cnt[3] + cnt[2] + cnt[1]
