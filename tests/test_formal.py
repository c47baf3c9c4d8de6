"""Proofs (``make formal``; they also run in ``make test``).

z3 proves the arithmetic identities the Requantizer's datapath relies on, for every input,
and SymbiYosys (yowasp-sby, smtbmc with z3) proves the stream rule on its output port by
k-induction on the generated RTL, and that the Sequencer's predicated-off and illegal
instructions change no state.
"""


import pytest
import z3
from amaranth.hdl import Assert, Elaboratable, Module, ResetSignal, Signal

from sparq.hw.export import CONFIGS
from sparq.hw.requant import _SAT_BITS, Requantizer
from sparq.hw.seq_execute import Execute
from sparq.hw.sequencer import Sequencer
from tests.sby import run_sby

pytestmark = pytest.mark.formal


# z3's resource limit, not a wall-clock timeout: it counts the solver's own steps, so a
# proof's outcome does not hang on the machine's load (the proofs here take 0.2 M to 4.1 M
# steps with z3 5.4; the limit leaves a margin of about 50)
RLIMIT = 200_000_000


def prove(claim, *, rlimit=RLIMIT):
    s = z3.Solver()
    s.set("rlimit", rlimit)
    s.add(z3.Not(claim))
    result = s.check()
    assert result == z3.unsat, f"not proved ({result}): {s.model() if result == z3.sat else ''}"


def test_round_shift_identity():
    """(p + 2**(s-1)) >> s == (p >> s) + bit s-1 of p, for every 66-bit p and s in [1, 62]:
    the tail shifts by s-1 and adds the low bit instead of adding a rounding constant."""
    w = 66
    p, s = z3.BitVec("p", w), z3.BitVec("s", w)
    one = z3.BitVecVal(1, w)
    lhs = (p + (one << (s - 1))) >> s
    rhs = (p >> s) + (((p >> (s - 1))) & one)
    # p + 2**(s-1) must not overflow 66 bits: |p| <= 2**62 + 2**30 in the datapath
    bound = z3.BitVecVal(2**63, w)
    prove(z3.Implies(z3.And(s >= 1, s <= 62, p < bound, p > -bound), lhs == rhs))


def test_narrow_zero_point_add():
    """The Requantizer's tail equals clamp(f + half + zp) for every 64-bit f, zp, and lo <= hi
    in int8: it adds only f's low _SAT_BITS bits (sign-extended) to half and zp, and when f
    does not fit them it takes lo or hi by f's sign instead (``hw.requant``'s ``_tail``)."""
    w = 72
    f, half, zp, lo, hi = (z3.BitVec(n, w) for n in ("f", "half", "zp", "lo", "hi"))
    lim = 1 << (_SAT_BITS - 1)
    low = z3.SignExt(w - _SAT_BITS, z3.Extract(_SAT_BITS - 1, 0, f))
    fits = z3.And(f >= -lim, f <= lim - 1)

    def clamp(v):
        return z3.If(v < lo, lo, z3.If(v > hi, hi, v))

    tail = z3.If(fits, clamp(low + half + zp), z3.If(f < 0, lo, hi))
    pre = z3.And(f >= -(2**63), f < 2**63, z3.Or(half == 0, half == 1),
                 zp >= -128, zp <= 127, lo >= -128, hi <= 127, lo <= hi)
    prove(z3.Implies(pre, tail == clamp(f + half + zp)))


def test_partial_product_split():
    """a*b == (hh << 32 | ll) + ((hl + lh) << 16) for int32 a, b split into a signed high
    and an unsigned low half; ll fits 32 unsigned bits (so concatenation is addition) and
    the middle sum fits the 34-bit register."""
    ah, bh = z3.Ints("ah bh")
    al, bl = z3.Ints("al bl")
    dom = z3.And(ah >= -(2**15), ah < 2**15, bh >= -(2**15), bh < 2**15,
                 al >= 0, al < 2**16, bl >= 0, bl < 2**16)
    a, b = ah * 2**16 + al, bh * 2**16 + bl
    hh, hl, lh, ll = ah * bh, ah * bl, al * bh, al * bl
    mid = hl + lh
    prove(z3.Implies(dom, z3.And(a * b == hh * 2**32 + ll + mid * 2**16,
                                 ll >= 0, ll < 2**32, mid >= -(2**33), mid < 2**33)))


class _StreamRuleHarness(Elaboratable):
    """The Requantizer with the output stream rule as assertions: once o.valid is high
    without o.ready, the next cycle keeps o.valid high and o.payload unchanged."""

    def __init__(self, **params):
        self.dut = Requantizer(**params)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        held, prev = Signal(), Signal.like(dut.o.payload)
        # a reset in the stalled cycle legitimately empties the pipeline
        m.d.sync += [held.eq(dut.o.valid & ~dut.o.ready & ~ResetSignal()),
                     prev.eq(dut.o.payload)]
        with m.If(held):
            m.d.comb += [Assert(dut.o.valid), Assert(dut.o.payload == prev)]
        return m


@pytest.mark.parametrize("mode", ["tflite", "prepost"])
def test_requant_output_stream_rule_sby(mode, tmp_path):
    harness = _StreamRuleHarness(mode=mode)
    dut = harness.dut
    ports = [dut.i.valid, dut.i.payload.as_value(), dut.o.ready, dut.i.ready, dut.o.valid,
             dut.o.payload]
    _sby(tmp_path, harness, ports, depth=4)


class _GatingHarness(Elaboratable):
    """The Sequencer with its gating as assertions. While it runs, an instruction that is
    predicated off (or illegal) issues no uop and no probe, takes no value, writes no
    predicate (the predicates are the same the next cycle) and starts no loop; a
    predicated-off legal instruction completes in its cycle (costs at most one). And the
    registered ``on`` is the predicate file's bit for the running instruction."""

    def __init__(self, **params):
        self.dut = Sequencer(**params)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        gated, prev = Signal(), Signal.like(dut.preds)
        m.d.sync += [gated.eq(dut.busy & ~(dut.on & dut.legal) & ~ResetSignal()),
                     prev.eq(dut.preds)]
        with m.If(dut.busy & ~(dut.on & dut.legal)):
            m.d.comb += [Assert(~dut.uop.valid), Assert(~dut.probe.valid),
                         Assert(~dut.value.ready), Assert(~dut.pred_we)]
        with m.If(dut.busy & ~dut.on & dut.legal):
            m.d.comb += Assert(dut.done)
        with m.If(gated):
            m.d.comb += Assert(dut.preds == prev)
        with m.If(dut.busy & ~dut.prime):
            m.d.comb += Assert(dut.on == dut.on_from_preds)
        return m


def _sby(tmp_path, harness, ports, depth):
    run_sby(tmp_path, harness, ports, depth=depth, mode="prove")


@pytest.mark.parametrize("name, fetch_ports", [("sequencer_small", 1), ("sequencer_small", 2),
                                                ("sequencer_conv_small", 1),
                                                ("sequencer_conv_small", 2)])
def test_sequencer_predicated_off_ops_change_nothing_sby(tmp_path, name, fetch_ports):
    harness = _GatingHarness(fetch_ports=fetch_ports, **CONFIGS[name][1])
    dut = harness.dut
    ports = [dut.pload.valid, dut.pload.payload.as_value(), dut.start, dut.uop.ready,
             dut.probe.ready, dut.value.valid, dut.value.payload, dut.uop.valid,
             dut.probe.valid, dut.preds, dut.busy]
    _sby(tmp_path, harness, ports, depth=6)


def test_sequencer_gating_proof_fails_on_an_ungated_mutant(tmp_path, monkeypatch):
    real = Execute._commit  # (the Sequencer's execute stage)
    monkeypatch.setattr(Execute, "_commit", lambda self, m, on, legal: real(self, m, 1, legal))
    harness = _GatingHarness(**CONFIGS["sequencer_small"][1])
    dut = harness.dut
    ports = [dut.start, dut.uop.ready, dut.probe.ready, dut.value.valid, dut.uop.valid]
    with pytest.raises(AssertionError, match="FAIL"):
        _sby(tmp_path, harness, ports, depth=6)
