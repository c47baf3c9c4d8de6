# amaranth: UnusedElaboratable=no
"""The lane banks (docs/plans/conv_rtl.md, step 3) under amaranth.sim.

- The engine alone (``SparseDotProduct(banks=True)``), random beats of scalar and bank
  vectors, random zero points per vector, random idle input and a stalled output: the
  scalar results and cycles are golden.sparse_dot's, a bank vector's ``bank_add`` steps are
  as many as its front-end cycles, each beat's steps give each lane its product once
  (``golden.sparse_dot.lane_sums``), and a scalar vector has none.
- The engine and the AccumulatorFile joined as in the core, random DOTs into the four
  accumulators and the two banks, interleaved with CLRs, LDBs and bank preloads near the
  int32 limits: after every DOT the accumulators and the banks equal a NumPy model of
  ``golden.sequencer`` (exact lanes; a fault exactly where it raises, with the DOT's pc);
  ``idle`` and ``pending`` every cycle (a bank's DOT pending until the cycle its result
  lands, as a scalar one); every result at the front end's cycle model plus the latency.
- The int32 fault of a bank lane, directed: a lane crossing int32 within a DOT and coming
  back does not fault; ending at INT32_MAX / INT32_MIN does not; one past does.
- ``banks=True`` leaves the scalar engine's results and cycles as they were.

The model's bank semantics are checked against ``golden.sequencer`` itself
(``test_lane_sums_are_golden_sequencer_banks``). Seeds are fixed and printed.
"""

from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.sim import Simulator

from sparq.golden.requant import INT32_MAX, INT32_MIN
from sparq.golden.sequencer import MachineConfig, Params, execute, new_machine
from sparq.golden.sparse_dot import lane_sums, sparse_dot
from sparq.hw.accumulators import AccumulatorFile
from sparq.hw.sparse_dot import SparseDotProduct, beat_layout
from sparq.sim.sparse_stim import beat_payloads, beats, concat
from sparq.spec.isa import N_ACC, N_BANKS
from tests.amaranth_streams import _set_payload
from tests.conftest import SEED
from tests.test_block_latency import measure_engine

ACCS = N_ACC + N_BANKS


def _id(p):
    return "-".join(f"{k}{v}" for k, v in p.items()).replace(" ", "")


def _wrap32(v):
    return (int(v) + (1 << 31)) % (1 << 32) - (1 << 31)


def _dot_beats(rng, lanes, n, zp):
    """``n`` beats of one DOT at a random density, zero point ``zp``."""
    wd, xd = [(1.0, 1.0), (0.5, 0.5), (0.2, 0.8), (0.0, 1.0), (1.0, 0.0), (0.1, 0.1)][
        int(rng.integers(0, 6))]
    b = beats(rng, n, lanes=lanes, w_density=wd, x_density=xd, x_zero_point=zp)
    b["last"] = np.arange(n) == n - 1
    return b


def _zero_point(rng):
    return int(rng.choice([-128, 0, 127, int(rng.integers(-128, 128))]))


# ---------------------------------------------------------------- the engine alone

ENGINES = [dict(lanes=16, slots=4), dict(lanes=16, slots=4, skip=False),
           dict(lanes=8, slots=3), dict(lanes=8, slots=3, skip=False),
           dict(lanes=4, slots=1), dict(lanes=16, slots=7),
           dict(lanes=8, slots=4, bins={8: 1, 4: 1, 2: 2}),
           dict(lanes=8, slots=9, bins={8: 1, 4: 8}), dict(lanes=8, slots=3, output="memory")]


def _engine_stimulus(rng, lanes, vectors):
    """Vectors of 1 to 4 beats, each scalar (bank -1) or into bank 0 or 1, each with its
    own zero point. Returns (beats, per-beat zero points, per-vector bank)."""
    parts, zps, bank = [], [], []
    for _ in range(vectors):
        zp = _zero_point(rng)
        part = _dot_beats(rng, lanes, int(rng.integers(1, 5)), zp)
        parts.append(part)
        zps += [zp] * len(part["last"])
        bank.append(int(rng.choice([-1, 0, 1])))
    return concat(*parts), np.array(zps), bank


def _run_engine(params, b, zps, vec_bank, rng, *, idle=0.3, stall=0.3):
    """Drive the beats (random idle input, random stalls on ``o``); returns the results
    (cycle of their transfer, value), the ``bank_add`` steps (cycle, bank, products) and the
    counters."""
    dut = SparseDotProduct(banks=True, **params)
    memory = params.get("output") == "memory"
    payloads = beat_payloads(b)
    beat_bank = np.repeat(vec_bank, np.diff(np.r_[-1, np.flatnonzero(b["last"])]))
    n_vec = len(vec_bank)
    rec = dict(outs=[], steps=[])

    async def bench(ctx):
        k, holding = 0, False
        for cycle in range(60 * len(payloads) + 200):
            ready = memory or rng.random() >= stall  # (the input's ready follows it)
            if not memory:
                ctx.set(dut.o.ready, ready)
            if k < len(payloads) and (holding or rng.random() >= idle):
                _set_payload(ctx, dut.i.payload, payloads[k])
                ctx.set(dut.i.payload.bank, int(beat_bank[k] >= 0))
                ctx.set(dut.i.payload.bank_sel, max(0, int(beat_bank[k])))
                ctx.set(dut.x_zero_point, int(zps[k]))
                ctx.set(dut.i.valid, 1)
                holding = True
            else:
                ctx.set(dut.i.valid, 0)
            if holding and ctx.get(dut.i.ready):
                k, holding = k + 1, False
            if memory:
                if ctx.get(dut.wr_en):
                    rec["outs"].append((cycle, ctx.get(dut.wr_data)))
            elif ready and ctx.get(dut.o.valid):
                rec["outs"].append((cycle, ctx.get(dut.o.payload)))
            if ctx.get(dut.bank_add.valid):
                rec["steps"].append((cycle, ctx.get(dut.bank_add.payload.bank),
                                     [ctx.get(dut.bank_add.payload.p[i])
                                      for i in range(params["lanes"])]))
            if len(rec["outs"]) == n_vec:
                break
            await ctx.tick()
        for _ in range(30):
            await ctx.tick()
        rec["counters"] = {c: ctx.get(getattr(dut, c)) for c in ("cycles", "pairs", "skipped")}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(rec["outs"]) == n_vec, f"{len(rec['outs'])} of {n_vec} results"
    return rec


def _check_steps(b, zps, vec_bank, want, rec):
    """Each vector's ``bank_add`` steps (those before its result's transfer, after the
    previous one's), per beat: each lane's product once, in one step at most."""
    ends = np.flatnonzero(b["last"])
    starts = np.r_[0, ends[:-1] + 1]
    prods = (b["x"] - zps[:, None]) * b["w"]
    steps, t_prev, counted = rec["steps"], -1, 0
    for v, (t, _) in enumerate(rec["outs"]):
        mine = [s for s in steps if t_prev <= s[0] < t]
        t_prev = t
        counted += len(mine)
        if vec_bank[v] < 0:
            assert not mine, f"scalar vector {v} gave bank steps"
            continue
        assert len(mine) == want.vector_cycles[v], (v, len(mine), want.vector_cycles[v])
        assert {s[1] for s in mine} == {vec_bank[v]}
        k = 0
        for beat in range(starts[v], ends[v] + 1):
            got = np.array([s[2] for s in mine[k:k + want.beat_cycles[beat]]], np.int64)
            k += want.beat_cycles[beat]
            assert got.sum(axis=0).tolist() == prods[beat].tolist(), (v, beat)
            assert ((got != 0).sum(axis=0) <= 1).all(), (v, beat)
    assert counted == len(steps)


@pytest.mark.parametrize("params", ENGINES, ids=_id)
def test_engine_bank_steps(params):
    seed = SEED + 300 + len(_id(params))
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    lanes = params["lanes"]
    b, zps, vec_bank = _engine_stimulus(rng, lanes, 50)
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zps, **params)
    rec = _run_engine(params, b, zps, vec_bank, rng)
    assert [v for _, v in rec["outs"]] == want.results.tolist()
    stats = want.stats
    assert rec["counters"] == {k: stats[k] for k in ("cycles", "pairs", "skipped")}
    _check_steps(b, zps, vec_bank, want, rec)
    sums = lane_sums(b["w"], b["x"], b["last"], x_zero_point=zps)
    assert (sums.sum(axis=1) == want.results).all()
    assert sum(v >= 0 for v in vec_bank) > 10 and len(rec["steps"]) > 20


@pytest.mark.parametrize("params", [dict(lanes=16, slots=4), dict(lanes=16, slots=4, skip=False),
                                    dict(lanes=8, slots=4, bins={8: 2, 4: 1, 2: 1}),
                                    dict(lanes=16, slots=8)], ids=_id)
def test_scalar_engine_unchanged_with_banks(params):
    """The same random run (input transfers, counters each cycle, results and their
    cycles) with and without ``banks``, and the same latency."""
    seed = SEED + 310
    print(f"seed {seed}")
    recs = []
    for banks in (False, True):
        rng = np.random.default_rng(seed)
        zp = int(rng.integers(-128, 128))
        b = concat(*[beats(rng, 12, lanes=params["lanes"], w_density=wd, x_density=xd,
                           x_zero_point=zp) for wd, xd in ((1.0, 1.0), (0.4, 0.6), (0.0, 1.0))])
        p = dict(params, banks=True) if banks else params
        recs.append(measure_engine(p, b, zp, rng))
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zp, **params)
    assert [v for _, v in recs[0][1]["outs"]] == want.results.tolist()
    assert recs[0] == recs[1]


def test_bank_options_are_off_by_default():
    e = SparseDotProduct(lanes=16, slots=4)
    assert "bank_add" not in e.signature.members and "banks" not in e.params
    assert set(beat_layout(16).members) == {"w", "x", "lvl", "last"}
    assert SparseDotProduct(lanes=16, slots=4, banks=True).params["banks"] is True
    f = AccumulatorFile(prog_depth=64, tags=4)
    assert "bank_add" not in f.signature.members and f.params == dict(prog_depth=64, tags=4)
    with pytest.raises(ValueError, match="banks must be True or False, not 2"):
        SparseDotProduct(lanes=16, slots=4, banks=2)
    with pytest.raises(ValueError, match=r"banks must be an integer in \[0, 2\], not 3"):
        AccumulatorFile(banks=3)


# ------------------------------------------------ the engine and the AccumulatorFile


class _EngineWithBanks(Elaboratable):
    """The engine and an AccumulatorFile joined as in the core. ``i``: beats with their
    DOT's zero point, accumulator number (0..5: 4 and 5 the banks) and pc, as the feeder
    hands them over, and the tag with each DOT's last beat. (The tags have the file's
    layout, a 3-bit ``acc``, until the feeder's is widened.)"""

    def __init__(self, params, prog_depth=64):
        lanes = params["lanes"]
        self.eng = SparseDotProduct(banks=True, **params)
        self.accs = AccumulatorFile(prog_depth=prog_depth, tags=self.eng.latency + 3,
                                    banks=N_BANKS, lanes=lanes)
        self.i = stream.Signature(data.StructLayout({
            "beat": beat_layout(lanes), "zp": signed(8), "acc": range(ACCS),
            "pc": range(prog_depth)})).flip().create()

    def elaborate(self, platform):
        m = Module()
        m.submodules.eng = e = self.eng
        m.submodules.accs = a = self.accs
        wiring.connect(m, e.o, a.result)
        wiring.connect(m, e.bank_add, a.bank_add)
        u, ei = self.i.payload, e.i.payload
        m.d.comb += [ei.w.eq(u.beat.w), ei.x.eq(u.beat.x), ei.lvl.eq(u.beat.lvl),
                     ei.last.eq(u.beat.last), ei.bank.eq(u.acc >= N_ACC),
                     ei.bank_sel.eq(u.acc - N_ACC), e.x_zero_point.eq(u.zp),
                     e.i.valid.eq(self.i.valid), self.i.ready.eq(e.i.ready),
                     a.tag.valid.eq(self.i.valid & e.i.ready & u.beat.last),
                     a.tag.payload.acc.eq(u.acc), a.tag.payload.pc.eq(u.pc)]
        return m


def _near_limits(rng, lanes):
    """Bank lanes near INT32_MAX or INT32_MIN (a DOT may take them out), some small."""
    near = rng.integers(0, 30_000, lanes)
    v = np.where(rng.random(lanes) < 0.5, INT32_MAX - near, INT32_MIN + near)
    return np.where(rng.random(lanes) < 0.3, rng.integers(-1000, 1000, lanes), v)


def random_ops(rng, lanes, n):
    """DOTs (half into the banks), CLRs, LDBs (some near the int32 limits) and preloads
    of a bank (near the limits: a test's backdoor, as no instruction loads a bank)."""
    ops = []
    for _ in range(n):
        r = rng.random()
        if r < 0.12:
            ops.append(("clr", int(rng.integers(0, ACCS))))
        elif r < 0.2:
            v = int(rng.choice([INT32_MAX - int(rng.integers(0, 30_000)),
                                INT32_MIN + int(rng.integers(0, 30_000)),
                                int(rng.integers(-1000, 1000))]))
            ops.append(("ldb", int(rng.integers(0, N_ACC)), v))
        elif r < 0.3:
            ops.append(("preload", int(rng.integers(0, N_BANKS)), _near_limits(rng, lanes)))
        else:
            acc = int(rng.integers(N_ACC, ACCS)) if rng.random() < 0.5 else \
                int(rng.integers(0, N_ACC))
            zp = _zero_point(rng)
            n_beats = int(rng.choice([1, 2, 3, 4, int(rng.integers(1, 16))]))
            ops.append(("dot", acc, int(rng.integers(0, 64)), _dot_beats(rng, lanes, n_beats,
                                                                         zp), zp))
    return ops


class _Model:
    """The accumulators and banks as ``golden.sequencer`` has them (exact lanes; a DOT
    whose accumulator or a lane of whose bank leaves int32 faults), the pending DOTs per
    accumulator, and the checks of the file's ports."""

    def __init__(self, top, lanes):
        self.top, self.lanes = top, lanes
        self.acc = [0] * N_ACC
        self.bank = [[0] * lanes for _ in range(N_BANKS)]
        self.pend = [0] * ACCS
        self.counts = dict(dots=0, bank_dots=0, faults=0, bank_faults=0, clrs=0, idle_waits=0)

    def check_ports(self, ctx, sel):
        a = self.top.accs
        assert ctx.get(a.idle) == (self.pend[sel] == 0), (sel, self.pend)
        assert ctx.get(a.pending) == any(self.pend)
        if sel < N_ACC:
            assert ctx.get(a.value) == self.acc[sel]

    def bank_lanes(self, ctx, b):
        a = self.top.accs
        ctx.set(a.bank_rd_sel, b)
        out = []
        for i in range(self.lanes):
            ctx.set(a.bank_rd_lane, i)
            out.append(ctx.get(a.bank_rd_value))
        assert ctx.get(a.bank_rd_first) == out[0]  # (lane 0's own port)
        return out

    def result(self, ctx, dot):
        """The result of ``dot`` arrives now: its checks; returns the update at the clock."""
        a, e = self.top.accs, self.top.eng
        sums = lane_sums(dot.b["w"], dot.b["x"], dot.b["last"], x_zero_point=dot.zp)[0]
        assert ctx.get(e.o.payload) == int(sums.sum())
        self.counts["dots"] += 1
        if dot.acc < N_ACC:
            total = self.acc[dot.acc] + int(sums.sum())
            fault = not INT32_MIN <= total <= INT32_MAX
            after = _wrap32(total)
        else:
            b = dot.acc - N_ACC
            after = [v + int(s) for v, s in zip(self.bank[b], sums, strict=True)]
            fault = not all(INT32_MIN <= v <= INT32_MAX for v in after)
            # the bank holds the DOT's sum now (its steps are in; the next DOT's are not)
            assert self.bank_lanes(ctx, b) == [_wrap32(v) for v in after], dot.pc
            self.counts["bank_dots"] += 1
            self.counts["bank_faults"] += fault
        self.counts["faults"] += fault
        assert ctx.get(a.fault) == fault, (dot.acc, dot.pc)
        assert not fault or ctx.get(a.fault_pc) == dot.pc

        def update():
            self.pend[dot.acc] -= 1
            if dot.acc < N_ACC:
                self.acc[dot.acc] = after
            else:
                self.bank[dot.acc - N_ACC] = after
        return update


def run_banks(params, ops, rng, *, idle=0.3, max_cycles=40_000):
    """Run ``ops`` (``random_ops``) on the engine and the file; every check is inline.
    Returns the model's counts."""
    top = _EngineWithBanks(params)
    lanes, a, e = params["lanes"], top.accs, top.eng
    model = _Model(top, lanes)
    rec = dict(transfers=[], costs=[], outs=[])

    async def bench(ctx):
        inflight, beatq, k, holding = deque(), deque(), 0, False
        for cycle in range(max_cycles):
            if k == len(ops) and not inflight:
                break
            updates, sel = [], int(rng.integers(0, ACCS))
            ctx.set(a.issued, 0)
            ctx.set(a.write, 0)
            if k < len(ops):
                sel, done, upd = _control(ctx, top, model, ops[k], inflight, beatq, rng)
                k += done
                updates += upd
            ctx.set(a.sel, sel)
            model.check_ports(ctx, sel)
            if beatq and (holding or rng.random() >= idle):
                _set_payload(ctx, top.i.payload, beatq[0])
                ctx.set(top.i.valid, 1)
                holding = True
            else:
                ctx.set(top.i.valid, 0)
            if holding and ctx.get(top.i.ready):
                rec["transfers"].append(cycle)
                beatq.popleft()
                holding = False
            if ctx.get(e.o.valid):
                dot = inflight.popleft()
                updates.append(model.result(ctx, dot))
                rec["outs"].append((cycle, dot))
            else:
                assert not ctx.get(a.fault)
            await ctx.tick()
            for u in updates:
                u()
        assert k == len(ops) and not inflight, "the run did not finish"
        for b in range(N_BANKS):
            assert model.bank_lanes(ctx, b) == [_wrap32(v) for v in model.bank[b]]

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    _check_result_cycles(params, e.latency, ops, rec)
    return model.counts


def _control(ctx, top, model, op, inflight, beatq, rng):
    """This cycle's uop, as the core executes it: a DOT is issued (while the tag FIFO has
    room); CLR and LDB wait for ``idle``; a preload of a bank waits for it too. Returns
    (sel, whether the op is done, the model's updates at the clock)."""
    a = top.accs
    kind, acc = op[0], op[1]
    if kind == "dot":
        if len(inflight) >= a.params["tags"] - 1:
            return acc, False, []
        _, acc, pc, b, zp = op
        ctx.set(a.issued, 1)
        for p in beat_payloads(b):
            beatq.append(dict(beat=p, zp=zp, acc=acc, pc=pc))
        inflight.append(SimpleNamespace(acc=acc, pc=pc, b=b, zp=zp))
        return acc, True, [lambda: model.pend.__setitem__(acc, model.pend[acc] + 1)]
    if kind == "preload":
        if model.pend[N_ACC + acc]:
            return N_ACC + acc, False, []
        for i, v in enumerate(op[2]):
            ctx.set(a.bank_lanes[acc][i], int(v))
        ctx.set(a.bank_empty[acc], 0)
        model.bank[acc] = [int(v) for v in op[2]]
        return N_ACC + acc, True, []
    if model.pend[acc]:  # CLR, LDB: wait
        model.counts["idle_waits"] += 1
        return acc, False, []
    value = op[2] if kind == "ldb" else 0
    ctx.set(a.write, 1)
    ctx.set(a.write_value, value)
    model.counts["clrs"] += kind == "clr"

    def write():
        if acc < N_ACC:
            model.acc[acc] = value
        else:
            model.bank[acc - N_ACC] = [0] * model.lanes
    return acc, True, [write]


def _check_result_cycles(params, latency, ops, rec):
    """Every DOT's result (scalar or bank) lands ``latency`` cycles after the front end
    issues its last step, by the front end's recurrence over the beats' transfers and
    golden.sparse_dot's cycles per beat."""
    dots = [op for op in ops if op[0] == "dot"]
    b = concat(*[op[3] for op in dots])
    zps = np.concatenate([[op[4]] * len(op[3]["last"]) for op in dots])
    want = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zps, **params)
    f_model, fe_free = [], 0
    for h, cost, last in zip(rec["transfers"], want.beat_cycles, b["last"], strict=True):
        s = max(h + 1, fe_free)
        fe_free = s + int(cost)
        if last:
            f_model.append(fe_free)
    assert [c - f for (c, _), f in zip(rec["outs"], f_model, strict=True)] == \
        [latency] * len(dots)


@pytest.mark.parametrize("params", [dict(lanes=16, slots=4), dict(lanes=8, slots=3, skip=False),
                                    dict(lanes=8, slots=4, bins={8: 1, 4: 1, 2: 2}),
                                    dict(lanes=8, slots=5)], ids=_id)
def test_banks_and_accumulators_against_a_model(params):
    seed = SEED + 320 + len(_id(params))
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    ops = random_ops(rng, params["lanes"], 250)
    counts = run_banks(params, ops, rng)
    print(counts)
    assert counts["bank_dots"] > 60 and counts["dots"] > 120 and counts["clrs"] > 15
    assert counts["bank_faults"] > 5 and counts["faults"] > counts["bank_faults"]
    assert counts["bank_dots"] - counts["bank_faults"] > 30 and counts["idle_waits"] > 50


def _directed(lanes, zp, w_rows, d_rows):
    """A DOT's beats with lane 0's ``x - zp`` and ``w`` given per beat, other lanes 0."""
    w = np.zeros((len(w_rows), lanes), np.int64)
    x = np.full((len(w_rows), lanes), zp, np.int64)
    w[:, 0], x[:, 0] = w_rows, np.array(d_rows) + zp
    return dict(w=w, x=x, lvl=np.full(w.shape, 3), last=np.arange(len(w_rows)) ==
                len(w_rows) - 1)


def test_bank_lane_int32_fault_at_the_dot_end_only():
    """Lane 0 of bank 0 from INT32_MAX - 1000: a DOT going +32385 then -32385 (out of
    int32 in between) does not fault; a DOT to exactly INT32_MAX does not; one more does
    (with its pc). The same below INT32_MIN on bank 1; CLR and ``clear`` empty the banks."""
    params, zp = dict(lanes=4, slots=2), -128
    lanes = params["lanes"]
    up = _directed(lanes, zp, [127, -127], [255, 255])  # +32385, -32385
    down = _directed(lanes, zp, [-127, 127], [255, 255])
    one_plus = _directed(lanes, zp, [1], [1])
    one_minus = _directed(lanes, zp, [-1], [1])
    start = np.zeros(lanes, np.int64)
    ops = [("preload", 0, start + INT32_MAX - 1000), ("dot", 4, 1, up, zp),
           ("preload", 0, start + INT32_MAX - 1), ("dot", 4, 2, one_plus, zp),
           ("dot", 4, 3, one_plus, zp), ("clr", 4),
           ("preload", 1, start + INT32_MIN + 1000), ("dot", 5, 4, down, zp),
           ("preload", 1, start + INT32_MIN + 1), ("dot", 5, 5, one_minus, zp),
           ("dot", 5, 6, one_minus, zp), ("dot", 0, 7, up, zp)]
    rng = np.random.default_rng(SEED + 330)
    counts = run_banks(params, ops, rng)
    assert counts["faults"] == counts["bank_faults"] == 2 and counts["dots"] == 7
    _check_clear(params)


def _check_clear(params):
    top = _EngineWithBanks(params)
    a = top.accs

    async def bench(ctx):
        lanes = params["lanes"]
        for b in range(N_BANKS):
            for i, r in enumerate(a.bank_lanes[b]):
                ctx.set(r, 1000 * b + i + 1)
            ctx.set(a.bank_empty[b], 0)
        await ctx.tick()

        def read(b):
            ctx.set(a.bank_rd_sel, b)
            out = []
            for i in range(lanes):
                ctx.set(a.bank_rd_lane, i)
                out.append(ctx.get(a.bank_rd_value))
            return out
        assert read(1) == [1001 + i for i in range(lanes)]
        ctx.set(a.clear, 1)
        await ctx.tick()
        ctx.set(a.clear, 0)
        assert read(0) == read(1) == [0] * lanes

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_lane_sums_are_golden_sequencer_banks():
    """``golden.sparse_dot.lane_sums`` (the model above) is what ``golden.sequencer``'s DOT
    adds to a bank, and a bank's int32 check is its raise."""
    seed = SEED + 340
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    lanes, depth = 8, 8 * 64
    cfg = MachineConfig(lanes=lanes, x_depth=depth, w_depth=depth, channels=8, conv=True)
    x = rng.integers(-128, 128, depth)
    w = rng.integers(-127, 128, depth)
    w[rng.random(depth) < 0.4] = 0
    z = np.zeros(8, np.int64)
    m = new_machine(cfg, Params(w=w, bias=z, multiplier=z, shift=z, out_zp=z, act_min=z,
                                act_max=z), x)
    want = np.zeros((N_BANKS, lanes), np.int64)
    for _ in range(40):
        beats_, acc = int(rng.integers(1, 16)), int(rng.integers(N_ACC, ACCS))
        xa, wa = (int(rng.integers(0, 64 - beats_)) * lanes for _ in range(2))
        m.x_zp = _zero_point(rng)
        execute(m, SimpleNamespace(op="DOT", acc=acc, xaddr=xa, waddr=wa, beats=beats_,
                                   xi=0, wi=0, win=0))
        want[acc - N_ACC] += lane_sums(w[wa:wa + beats_ * lanes].reshape(beats_, lanes),
                                       x[xa:xa + beats_ * lanes].reshape(beats_, lanes),
                                       np.arange(beats_) == beats_ - 1,
                                       x_zero_point=m.x_zp)[0]
        assert (m.banks == want).all()
    # a lane at INT32_MAX and a DOT with a positive product on it: golden raises
    wa = next(a for a in range(0, depth, lanes)
              if lane_sums(w[None, a:a + lanes], x[None, :lanes], x_zero_point=m.x_zp).max() > 0)
    m.banks[0] = INT32_MAX
    with pytest.raises(ArithmeticError, match="bank 4 leaves int32"):
        execute(m, SimpleNamespace(op="DOT", acc=4, xaddr=0, waddr=wa, beats=1, xi=0, wi=0,
                                   win=0))
    execute(m, SimpleNamespace(op="CLR", acc=5))
    assert not m.banks[1].any()
