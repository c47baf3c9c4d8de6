# amaranth: UnusedElaboratable=no
"""RequantWriteback with the convolution extensions (``conv=True``): scalar REQs and REQWs
(a lane bank's lanes, each with its channel's bias and parameters, in either rounding)
against ``golden.sequencer.execute``, cycle for cycle against the timing contract
(``golden.core._Timing.req``; docs/plans/conv_rtl.md step 4), under amaranth.sim with random
valid on ``i``, random bank contents changed whenever a bank is not being read out, and a
synchronous or asynchronous parameter memory."""

from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.hdl import Cat, Const, Elaboratable, Module, Signal, signed
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from sparq.golden.isa import IllegalInstruction, Instr
from sparq.golden.requant import INT32_MAX, INT32_MIN, requantize, requantize_q31
from sparq.golden.sequencer import MachineConfig, Params, execute, new_machine
from sparq.hw.writeback import RequantWriteback, param_word_layout, stored_param
from sparq.spec.isa import N_ACC, N_BANKS
from tests.conftest import SEED

PARAM_KEYS = ("bias", "multiplier", "shift", "output_zero_point", "act_min", "act_max")


class _Harness(Elaboratable):
    """The writeback with a parameter memory (``channels`` words, read synchronously or not)
    on its ``p_addr``/``p_data`` port and two lane banks (signals the testbench sets) on its
    bank read port."""

    def __init__(self, dut, words):
        self.dut, self.words = dut, words
        lanes = dut.params["lanes"]
        self.banks = [[Signal(signed(32), name=f"bank{b}_lane{i}") for i in range(lanes)]
                      for b in range(N_BANKS)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.submodules.pmem = pmem = Memory(shape=param_word_layout(), depth=len(self.words),
                                          init=self.words)
        sync = dut.params["param_ram"] == "sync"
        rd = pmem.read_port() if sync else pmem.read_port(domain="comb")
        flat = Cat(*(v for bank in self.banks for v in bank))
        m.d.comb += [rd.addr.eq(dut.p_addr), dut.p_data.eq(stored_param(rd.data)),
                     dut.bank_rd_value.eq(flat.word_select(
                         Cat(dut.bank_rd_lane, dut.bank_rd_sel), 32).as_signed()),
                     dut.bank_rd_first.eq(flat.word_select(
                         Cat(Const(0, len(dut.bank_rd_lane)), dut.bank_rd_sel), 32).as_signed())]
        return m


def _values(rng, n, extreme=0.08):
    """int32 values: mostly moderate (magnitudes below 2**k, k uniform in [0, 20]), some
    full-range, a share ``extreme`` at the extremes."""
    kind = rng.random(n)
    v = _small(rng, n, 20)
    v = np.where(kind < 0.2, rng.integers(INT32_MIN, INT32_MAX + 1, n), v)
    ext = rng.choice([INT32_MIN, INT32_MAX, INT32_MIN + 7, INT32_MAX - 7], n)
    return np.where(kind > 1 - extreme, ext, v).astype(np.int64)


def _small(rng, n, bits):
    """Values of magnitude below ``2**k``, ``k`` uniform in [0, bits] (log-uniform-ish)."""
    return rng.integers(-(1 << 62), 1 << 62, n) >> (62 - rng.integers(0, bits + 1, n))


def _channel_params(rng, channels, lanes):
    """Per-channel parameters: mostly valid ones; a few channels with a shift of -32 or 31,
    a few with act_min above act_max (refused in either rounding) and some with a negative
    multiplier (refused in single rounding only), fewer where a REQW covers more channels."""
    mult = rng.integers(1 << 30, 1 << 31, channels)
    mult = np.where(rng.random(channels) < 0.3, np.abs(_small(rng, channels, 31)), mult)
    mult = np.where(rng.random(channels) < 0.05, rng.choice([0, INT32_MAX], channels), mult)
    # (shifts just below 0: where double and single rounding differ most often)
    kind = rng.random(channels)
    shift = np.where(kind < 0.3, rng.integers(-3, 0, channels),
                     np.where(kind < 0.7, rng.integers(-15, 3, channels),
                              rng.integers(-31, 31, channels)))
    lo, hi = np.sort(rng.integers(-128, 128, (2, channels)), axis=0)
    wide = rng.random(channels) < 0.7
    lo, hi = np.where(wide, -128, lo), np.where(wide, 127, hi - (lo == hi))
    n = max(1, round(0.02 * channels / lanes))  # channels of each bad kind
    bad = rng.choice(channels, 3 * n, replace=False)
    shift[bad[:n]] = rng.choice([-32, 31], n)
    lo[bad[n:2 * n]], hi[bad[n:2 * n]] = hi[bad[n:2 * n]], lo[bad[n:2 * n]]
    mult[bad[2 * n:]] = rng.integers(INT32_MIN, 0, n)
    bias = np.where(rng.random(channels) < 0.7, _small(rng, channels, 16),
                    _values(rng, channels, extreme=0.03))
    return dict(bias=bias, multiplier=mult, shift=shift,
                output_zero_point=rng.integers(-128, 128, channels), act_min=lo, act_max=hi)


def _requests(rng, n, cfg):
    """``n`` REQs: scalar (accumulator 0..3) or REQW (bank 0 or 1), either rounding."""
    lanes, ops = cfg.lanes, []
    for _ in range(n):
        wide = bool(rng.random() < 0.6)
        ch = int(rng.integers(0, cfg.channels - (lanes - 1 if wide else 0)))
        if wide:
            addr = int(rng.integers(0, cfg.x_depth // lanes)) * lanes
        else:
            addr = int(rng.integers(0, cfg.x_depth))
        ops.append(dict(acc=int(_values(rng, 1)[0]), bank=int(wide),
                        bank_no=int(rng.integers(0, N_BANKS)), round=int(rng.integers(0, 2)),
                        ch=ch, addr=addr, pc=int(rng.integers(0, cfg.prog_depth))))
    return ops


class _Golden:
    """``golden.sequencer.execute`` of each REQ on a machine with the test's parameters, and
    which lanes the hardware flags (``requant.bad_params``, a sum outside int32)."""

    def __init__(self, cfg, prm):
        params = Params(w=np.zeros(cfg.lanes, np.int64), bias=prm["bias"],
                        multiplier=prm["multiplier"], shift=prm["shift"],
                        out_zp=prm["output_zero_point"], act_min=prm["act_min"],
                        act_max=prm["act_max"])
        self.m, self.prm = new_machine(cfg, params, []), prm
        self.sensitive = 0  # lanes written whose value the other rounding would change

    def lane_fault(self, c, rnd, value):
        """Why the lane is flagged: ``"params"``, ``"overflow"`` (its sum), or ``""``."""
        try:
            requantize(np.zeros(1, np.int64), mode="tflite" if rnd else "single",
                       **{k: int(self.prm[k][c]) for k in PARAM_KEYS[1:]})
        except ValueError:
            return "params"
        return "overflow" if value is not None and not INT32_MIN <= value <= INT32_MAX else ""

    def req(self, op, bank):
        """The values written (None where golden raises) and each lane's fault."""
        m, n = self.m, len(bank) if op["bank"] else 1
        m.x_round, m.pc, m.acc[0] = op["round"], op["pc"], op["acc"]
        m.banks[op["bank_no"]] = bank
        acc = N_ACC + op["bank_no"] if op["bank"] else 0
        sums = [int(bank[i]) + int(self.prm["bias"][op["ch"] + i]) for i in range(n)]
        faults = [self.lane_fault(op["ch"] + i, op["round"], sums[i] if op["bank"] else None)
                  for i in range(n)]
        try:
            execute(m, Instr("REQ", args=dict(acc=acc, ci=0, ch=op["ch"], oi=0,
                                              oaddr=op["addr"])))
        except IllegalInstruction:  # (a bad stimulus, not a fault: a ValueError too)
            raise
        except (ValueError, ArithmeticError):
            assert any(faults), (op, "golden raises, no lane is flagged")
            return None, faults
        assert not any(faults), (op, faults, "a lane is flagged, golden does not raise")
        got = [int(v) for v in m.x[op["addr"]:op["addr"] + n]]
        self._count_sensitive(op, sums if op["bank"] else [op["acc"]], got)
        return got, faults

    def _count_sensitive(self, op, accs, got):
        c = slice(op["ch"], op["ch"] + len(accs))
        prm = [self.prm[k][c] for k in PARAM_KEYS[1:]]
        ok = prm[0] >= 0  # (a negative multiplier has double rounding only)
        other = requantize_q31(np.array(accs, np.int64), *prm, double_round=not op["round"])
        self.sensitive += int(np.sum(ok & (other != np.array(got))))


@dataclass
class _Expect:
    """What the writeback must do, cycle by cycle, from the REQs taken so far."""
    lanes: int
    latency: int
    writes: dict = field(default_factory=dict)  # cycle -> (addr, value or None, last)
    faults: dict = field(default_factory=dict)  # cycle -> pc
    reads: list = field(default_factory=list)  # (first, last cycle, bank) of each REQW

    def take(self, t, op, values, faults):
        n = len(faults)
        for i in range(n):
            self.writes[t + i + self.latency] = (op["addr"] + i,
                                                  None if values is None else values[i],
                                                  i == n - 1)
            if faults[i]:
                self.faults[t + i + 2] = op["pc"]  # (registered twice: two cycles after)
        if op["bank"]:
            self.reads.append((t, t + self.lanes - 1, op["bank_no"]))

    def busy(self, t):
        """The banks read out in cycle ``t`` (as a bit mask)."""
        return sum(1 << b for a, z, b in self.reads if a <= t <= z)

    def ready(self, t):
        return not any(a < t <= z for a, z, _ in self.reads)

    def pending(self, t):
        return any(w - self.latency < t <= w for w in self.writes)


CONFIGS = {
    "kws": dict(lanes=16, x_depth=16384, channels=1024, prog_depth=512, param_ram="sync",
                short=True),
    "l4_async": dict(lanes=4, x_depth=256, channels=40, prog_depth=64, param_ram="async",
                     short=False),
    "l8_sync": dict(lanes=8, x_depth=512, channels=64, prog_depth=128, param_ram="sync",
                    short=False),
    "l1_sync": dict(lanes=1, x_depth=64, channels=16, prog_depth=32, param_ram="sync",
                    short=True),
}


def _outputs(ctx, dut):
    names = ("wr_en", "wr_addr", "wr_value", "wr_last", "pending", "fault", "fault_pc",
             "bank_busy", "bank_busy_next")
    return {k: ctx.get(getattr(dut, k)) for k in names}


def _check_cycle(t, out, exp, counts):
    """The writeback's outputs in cycle ``t`` against the expectation."""
    assert out["pending"] == exp.pending(t), (t, "pending", out)
    w = exp.writes.pop(t, None)
    assert out["wr_en"] == (w is not None), (t, "wr_en", out, w)
    if w is not None:
        addr, value, last = w
        assert (out["wr_addr"], out["wr_last"]) == (addr, last), (t, out, w)
        assert value is None or out["wr_value"] == value, (t, out, w)
        counts["checked"] += value is not None
    pc = exp.faults.pop(t, None)
    assert out["fault"] == (pc is not None), (t, "fault", out, pc)
    assert pc is None or out["fault_pc"] == pc, (t, "fault_pc", out, pc)
    assert out["bank_busy"] == exp.busy(t), (t, "bank_busy", out)
    assert out["bank_busy_next"] == exp.busy(t + 1), (t, "bank_busy_next", out)


def _run(name, seed, n_ops=600):
    kw = CONFIGS[name]
    rng = np.random.default_rng(seed)
    print(f"{name}: seed {seed}")
    cfg = MachineConfig(**{k: kw[k] for k in ("lanes", "x_depth", "channels", "prog_depth")},
                        conv=True)
    prm = _channel_params(rng, cfg.channels, cfg.lanes)
    words = [{k: int(prm[k][c]) for k in PARAM_KEYS} for c in range(cfg.channels)]
    dut = RequantWriteback(conv=True, **kw)
    top = _Harness(dut, words)
    golden, exp = _Golden(cfg, prm), _Expect(cfg.lanes, dut.latency)
    ops = _requests(rng, n_ops, cfg)
    counts = dict(scalar=0, wide=0, params=0, overflow=0, checked=0, bank_writes=0,
                  stalled=0)

    async def bench(ctx):
        bank = np.zeros((N_BANKS, cfg.lanes), np.int64)
        k, shown, t = 0, 0, 0
        while k < len(ops) or exp.writes:
            for b in range(N_BANKS):  # a bank changes only while not being read out
                if not (exp.busy(t) >> b) & 1 and rng.random() < 0.3:
                    lanes = rng.random(cfg.lanes) < 0.5
                    new = _values(rng, cfg.lanes, extreme=min(0.08, 0.1 / cfg.lanes))
                    bank[b] = np.where(lanes, new, bank[b])
                    for i in np.flatnonzero(lanes):
                        ctx.set(top.banks[b][i], int(bank[b][i]))
                    counts["bank_writes"] += 1
            valid, showing = _drive(ctx, dut, rng, ops, k, shown, kw["param_ram"])
            ready = ctx.get(dut.i.ready)
            assert ready == exp.ready(t), (t, "i.ready")
            if valid and ready:
                op = ops[k]
                values, faults = golden.req(op, bank[op["bank_no"]].copy())
                exp.take(t, op, values, faults)
                counts["wide" if op["bank"] else "scalar"] += 1
                for kind in {f for f in faults if f}:
                    counts[kind] += 1
                k, shown = k + 1, 0
            else:
                shown += showing
                counts["stalled"] += bool(valid)
            _check_cycle(t, _outputs(ctx, dut), exp, counts)
            await ctx.tick()
            t += 1
            assert t < 40 * n_ops * cfg.lanes, "the writeback stopped"
        assert not exp.faults

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    counts["rounding_sensitive"] = golden.sensitive
    print(counts)
    return counts


def _drive(ctx, dut, rng, ops, k, shown, param_ram):
    """Offer REQ ``k`` (shown ``shown`` cycles already, not taken): with a synchronous
    parameter memory only from its second cycle (the core shows a uop a cycle first); at
    random cycles (the core's other waits); between REQs, another uop's random payload
    with valid low. Returns valid and whether REQ ``k`` is shown."""
    p = dut.i.payload
    if k >= len(ops) or (shown == 0 and rng.random() < 0.3):
        other = dict(ops[int(rng.integers(0, len(ops)))], pc=0)
        for name, v in other.items():
            ctx.set(getattr(p, name), v)
        ctx.set(dut.i.valid, 0)
        return False, False
    for name, v in ops[k].items():
        ctx.set(getattr(p, name), v)
    valid = (shown >= 1 or param_ram == "async") and rng.random() < 0.75
    ctx.set(dut.i.valid, valid)
    return valid, True


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_writeback_banks_against_golden(name):
    lanes = CONFIGS[name]["lanes"]
    counts = _run(name, SEED + 400 + sorted(CONFIGS).index(name))
    assert counts["scalar"] > 150 and counts["wide"] > 250
    assert counts["params"] >= 5 and counts["overflow"] >= 3
    results = counts["scalar"] + lanes * counts["wide"]
    assert counts["checked"] > 0.6 * results
    assert counts["stalled"] > (20 if lanes > 1 else -1)
    assert counts["rounding_sensitive"] >= 3  # (lanes whose rounding shows in the result)


@pytest.mark.parametrize("bad,name", [
    (dict(conv=True, param_ram="bram"), "param_ram"), (dict(conv=True, lanes=12), "lanes"),
    (dict(conv=True, lanes=16, x_depth=8), "x_depth"), (dict(conv=1), "conv"),
    (dict(conv=True, channels=2048), "channels"), (dict(x_depth=1 << 15), "x_depth")])
def test_writeback_rejects_bad_params(bad, name):
    with pytest.raises(ValueError, match=name):
        RequantWriteback(**bad)
