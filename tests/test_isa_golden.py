"""golden.isa and golden.sequencer: encoding round trips, illegal words, and the semantics."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparq.golden import isa
from sparq.golden import sequencer as golden_sequencer
from sparq.golden.isa import IllegalInstruction, ins
from sparq.sim import seq_stim
from tests.conftest import SEED

CFG = golden_sequencer.MachineConfig(**seq_stim.SMALL)


@st.composite
def instructions(draw):
    op = draw(st.sampled_from(sorted(isa.OPS)))
    args = {}
    for name, _, width in isa.FIELDS[op]:
        if name in isa.SIGNED:
            args[name] = draw(st.integers(-(1 << (width - 1)), (1 << (width - 1)) - 1))
        elif name in ("pd",):
            args[name] = draw(st.integers(1, 7))
        elif name == "cmp":
            args[name] = draw(st.integers(0, len(isa.CMPS) - 1))
        elif name == "src":
            args[name] = draw(st.integers(0, len(isa.SRCS) - 1))
        elif name in ("beats", "count", "body"):
            args[name] = draw(st.integers(1, (1 << width) - 1))
        else:
            args[name] = draw(st.integers(0, (1 << width) - 1))
    return isa.Instr(op, draw(st.integers(0, 7)), draw(st.integers(0, 1)), args)


@settings(max_examples=1500, deadline=None)
@given(instructions())
def test_encode_decode_assemble_round_trip(i):
    word = isa.encode(i)
    assert 0 <= word < 1 << 48
    back = isa.decode(word)
    assert (back.op, back.pred, back.neg, back.args) == (i.op, i.pred, i.neg, i.args)
    assert isa.assemble(isa.disassemble(word)) == [word]


@settings(max_examples=1500, deadline=None)
@given(st.integers(0, (1 << 48) - 1))
def test_every_word_decodes_or_raises_a_named_error(word):
    try:
        i = isa.decode(word)
    except IllegalInstruction as e:
        assert str(e)
        return
    assert isa.encode(i) == word  # a legal word has exactly one encoding


@pytest.mark.parametrize("word, match", [
    (0, "opcode 0x0 is not defined"),
    (0xB << 44, "opcode 0xb is not defined"),
    (ins("SETL", in_zp=-1) | 1 << 31, "reserved bits"),
    (ins("CLR", acc=1) | 1, "reserved bits"),
    (ins("HALT") | 1 << 39, "reserved bits"),
    (ins("PNOT", pd=1, pa=2) & ~(7 << 37), "p0 is always true"),
    (ins("SETP", pd=1, src=0, addr=0, beats=1) | 6 << 34, "comparison code 6"),
    (ins("SETP", pd=1, src=0, addr=0, beats=1) | 7 << 31, "source code 7"),
    (ins("DOT", xaddr=0, waddr=0, beats=1) & ~(0xF << 9), "0 beats"),
    (ins("LOOP", count=1, body=1) & ~(0xFF << 32), "count 0"),
])
def test_illegal_words(word, match):
    with pytest.raises(IllegalInstruction, match=match):
        isa.decode(word)


@pytest.mark.parametrize("text, match", [
    ("FOO acc=1", "unknown op 'FOO'"),
    ("CLR acc=9", r"acc=9 is outside \[0, 3\]"),
    ("SETP pd=0 src=W addr=0 beats=1", "p0"),
    ("DOT acc=1 xaddr=zz", "not a number"),
    ("CLR bogus=1", "no operand 'bogus'"),
    ("@q1 CLR acc=1", "bad predicate guard"),
])
def test_assembler_errors_name_the_line(text, match):
    with pytest.raises(IllegalInstruction, match=match):
        isa.assemble("HALT\n" + text)
    with pytest.raises(IllegalInstruction, match="line 2"):
        isa.assemble("HALT\n" + text)


def machine(x=None, **kw):
    rng = np.random.default_rng(SEED)
    prm = seq_stim.random_params(rng, CFG)
    return golden_sequencer.new_machine(CFG, prm, np.zeros(CFG.x_depth, int) + CFG.x_zero_point
                               if x is None else x)


def test_predicated_off_ops_change_nothing_and_cost_one_cycle():
    prog = isa.assemble("""
        SETP pd=2 cmp=EQ src=XZERO addr=0 beats=2 imm=0   # the block is all zero: p2 = 0
        @p2 LDB acc=1 ch=3
        @p2 SETP pd=3 cmp=EQ src=X addr=0 beats=1 imm=-3
        @p2 PNOT pd=4 pa=0
        @!p0 HALT
        @p2 LOOP count=3 body=2 xstride=4 ostride=1
        DOT acc=1 xi=1 xaddr=0 waddr=0 beats=1
        REQ acc=1 ch=1 oi=1 oaddr=40
        HALT
    """)
    m = golden_sequencer.run(machine(), prog)
    assert m.state()["p"] == [True] + [False] * 7 and m.acc == [0, 0, 0, 0]
    assert m.predicated_off == 5 and m.executed == 2  # SETP and HALT
    assert m.cycles == 5 + 2 + 2  # one per fetch, SETP's probe and compare; body skipped
    assert [pc for pc, _, _ in m.trace] == [0, 1, 2, 3, 4, 5, 8]


def test_loop_runs_its_body_with_indexed_addresses():
    x = np.arange(CFG.x_depth) % 7 - 3
    prog = isa.assemble("""
        LOOP count=3 body=3 xstride=4 ostride=2
        CLR acc=0
        DOT acc=0 xi=1 xaddr=0 waddr=8 beats=1
        REQ acc=0 ch=0 oi=1 oaddr=40
        HALT
    """)
    m = golden_sequencer.run(machine(x), prog)
    prm = m.params
    for i in range(3):
        acc = int(((x[4 * i:4 * i + 4] - CFG.x_zero_point) * prm.w[8:12]).sum())
        from sparq.golden.requant import requantize
        want = requantize(np.array([acc]), multiplier=int(prm.multiplier[0]),
                          shift=int(prm.shift[0]), output_zero_point=int(prm.out_zp[0]),
                          act_min=-128, act_max=127, mode="single")[0]
        assert m.x[40 + 2 * i] == want
    assert m.executed == 1 + 9 + 1 and m.cycles == 11


def test_setl_sets_the_zero_point_of_the_dots_and_probes_that_follow():
    """SETL: DOTs subtract (and SETPs compare with) the zero point set last; a program
    starts with the machine's; a predicated-off SETL changes nothing; one cycle each."""
    x = np.full(CFG.x_depth, 5)
    x[1] = 9
    prog = isa.assemble("""
        DOT acc=0 xaddr=0 waddr=8 beats=1        # x - (-3): 8, 12, 8, 8
        SETL in_zp=5
        DOT acc=1 xaddr=0 waddr=8 beats=1        # x - 5: 0, 4, 0, 0
        SETP pd=1 cmp=EQ src=XNNZ addr=0 beats=1 imm=1
        @!p1 SETL in_zp=9                        # off: stays 5
        SETP pd=2 cmp=EQ src=XMAXABS addr=0 beats=1 imm=4
        SETL in_zp=-128
        SETP pd=3 cmp=EQ src=XZERO addr=4 beats=1 imm=0
        HALT
    """)
    m = golden_sequencer.run(machine(x), prog)
    w = m.params.w[8:12]
    assert m.acc[0] == int(((x[:4] + 3) * w).sum())
    assert m.acc[1] == 4 * int(w[1]) and m.x_zp == -128
    assert m.p[1:4] == [True, True, True]
    assert m.cycles == 9 + 3 * 2 and m.predicated_off == 1
    again = golden_sequencer.run(machine(x), prog[:1] + prog[-1:])  # a new run starts at -3
    assert again.acc[0] == m.acc[0]
    with pytest.raises(IllegalInstruction, match=r"in_zp=128 is outside \[-128, 127\]"):
        ins("SETL", in_zp=128)


@pytest.mark.parametrize("text, match", [
    ("LOOP count=2 body=2\nLOOP count=2 body=1\nCLR acc=0\nHALT", "loops do not nest"),
    ("LOOP count=2 body=63\nHALT", "runs past the program"),
    ("DOT acc=0 xaddr=2 waddr=0 beats=1\nHALT", "not lane-aligned"),
    ("DOT acc=0 xaddr=0 waddr=124 beats=2\nHALT", "runs past the memory"),
    ("REQ acc=0 ch=8 oaddr=0\nHALT", "channel 8"),
    ("REQ acc=0 ch=0 oaddr=64\nHALT", "output address 64"),
    ("SETP pd=1 src=W addr=128 beats=1\nHALT", "weight address 128"),
    ("CLR acc=0", "opcode 0x0"),  # no HALT: the zero words after the program are illegal
])
def test_illegal_at_run_time_keeps_the_previous_state(text, match):
    m = machine()
    prog = isa.assemble("SETP pd=5 cmp=EQ src=X addr=0 beats=1 imm=-3\n" + text)
    with pytest.raises(IllegalInstruction, match=match):
        golden_sequencer.run(m, prog)
    assert m.p[5] and m.executed >= 1  # the state of the instructions before it


def test_predicated_off_illegal_address_is_not_an_error():
    m = golden_sequencer.run(machine(), isa.assemble("@!p0 REQ acc=0 ch=0 oaddr=999\nHALT"))
    assert m.predicated_off == 1 and m.halted


def test_machine_config_errors():
    with pytest.raises(ValueError, match="lanes must be a power of two"):
        golden_sequencer.MachineConfig(lanes=3)
    with pytest.raises(ValueError, match="x_depth must be an integer in"):
        golden_sequencer.MachineConfig(x_depth=4096)
