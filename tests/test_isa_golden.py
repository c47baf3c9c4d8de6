"""golden.isa and golden.sequencer: encoding round trips, illegal words, and the semantics."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparq.golden import isa
from sparq.golden import sequencer as golden_sequencer
from sparq.golden.isa import IllegalInstruction, ins
from sparq.golden.requant import requantize
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
        elif name == "level":
            args[name] = draw(st.integers(0, isa.LOOP_LEVELS - 1))
        elif name == "cmp":
            args[name] = draw(st.integers(0, len(isa.CMPS) - 1))
        elif name == "src":
            args[name] = draw(st.integers(0, len(isa.SRCS) - 1))
        elif name in ("beats", "count", "body", "ih", "iw", "kw", "sy", "sx"):
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
    (0xD << 44, "opcode 0xd is not defined"),
    (ins("SETL", in_zp=-1) | 1 << 30, "reserved bits"),
    (ins("STRD", level=2, kind=1, stride=5) | 3 << 38, "loop level 3"),
    (ins("SETG", ih=5, iw=5, kw=3, sy=1, sx=1) & ~(7 << 23), "kw must be at least 1"),
    (ins("CLR", acc=1) | 1, "reserved bits"),
    (ins("HALT") | 1 << 39, "reserved bits"),
    (ins("PNOT", pd=1, pa=2) & ~(7 << 37), "p0 is always true"),
    (ins("SETP", pd=1, src=0, addr=0, beats=1) | 6 << 34, "comparison code 6"),
    (ins("SETP", pd=1, src=0, addr=0, beats=1) | 7 << 31, "source code 7"),
    (ins("DOT", xaddr=0, waddr=0, beats=1) & ~(0xF << 1), "0 beats"),
    (ins("LOOP", count=1, body=1) & ~(0xFF << 32), "count 0"),
])
def test_illegal_words(word, match):
    with pytest.raises(IllegalInstruction, match=match):
        isa.decode(word)


@pytest.mark.parametrize("text, match", [
    ("FOO acc=1", "unknown op 'FOO'"),
    ("CLR acc=9", r"acc=9 is outside \[0, 7\]"),
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
        golden_sequencer.MachineConfig(x_depth=1 << 15)
    with pytest.raises(ValueError, match="conv must be True or False"):
        golden_sequencer.MachineConfig(conv=1)


# ------------------------------------------------------------------ convolution extensions

CONV = golden_sequencer.MachineConfig(lanes=4, x_depth=256, w_depth=256, channels=16,
                                      prog_depth=64, x_zero_point=0, conv=True)


def conv_machine(x, w, **prm):
    c = CONV.channels
    base = dict(bias=np.zeros(c, np.int64), multiplier=np.full(c, 1 << 30),
                shift=np.zeros(c, np.int64), out_zp=np.zeros(c, np.int64),
                act_min=np.full(c, -128), act_max=np.full(c, 127))
    base.update(prm)
    return golden_sequencer.new_machine(CONV, golden_sequencer.Params(w=w, **base), x)


def test_conv_extensions_are_illegal_on_other_machines():
    """Executed or not, a word using a convolution extension is illegal on a machine built
    without them; the same words run on a convolution machine."""
    words = ["STRD level=0 kind=0 stride=4", "SETG ih=3 iw=3 kw=3 sy=1 sx=1 rowpitch=3",
             "LDB acc=0 ci=1 ch=0", "DOT acc=0 wi=1 xaddr=0 waddr=0 beats=1",
             "DOT acc=0 win=1 xaddr=0 waddr=0 beats=1", "REQ acc=0 ci=1 ch=0 oaddr=0",
             "SETL in_zp=0 round=1", "CLR acc=4", "DOT acc=5 xaddr=0 waddr=0 beats=1"]
    for text in words:
        for guard in ("", "@!p0 "):
            prog = isa.assemble(guard + text + "\nHALT")
            with pytest.raises(IllegalInstruction, match="convolution extension|accumulator"):
                golden_sequencer.run(machine(), prog)
            golden_sequencer.run(conv_machine(np.zeros(256, int), np.zeros(256, int)), prog)
    with pytest.raises(IllegalInstruction, match="accumulator 6"):  # two banks
        golden_sequencer.run(conv_machine(np.zeros(256, int), np.zeros(256, int)),
                             isa.assemble("@!p0 CLR acc=6\nHALT"))
    with pytest.raises(IllegalInstruction, match="accumulator 4"):  # LDB: no bank
        golden_sequencer.run(conv_machine(np.zeros(256, int), np.zeros(256, int)),
                             isa.assemble("LDB acc=4 ch=0\nHALT"))


def test_nested_loops_with_weight_and_channel_strides():
    """Three levels: every (i0, i1, i2) visits the body once, in order, each indexed
    operand at its offset sum_l i_l * stride_l."""
    x = np.arange(256) % 11 - 5
    w = np.arange(256) % 7 - 3
    prog = isa.assemble("""
        STRD level=1 kind=0 stride=8      # w: +8 per level-1 step
        STRD level=2 kind=1 stride=1      # ch: +1 per level-2 step
        STRD level=2 kind=0 stride=4      # w: +4 per level-2 step
        LOOP count=2 body=5 xstride=16 ostride=24
        LOOP count=3 body=4 xstride=4 ostride=8
        LOOP count=2 body=3 xstride=0 ostride=1
        LDB acc=0 ci=1 ch=0
        DOT acc=0 xi=1 xaddr=0 wi=1 waddr=0 beats=1
        REQ acc=0 ci=1 ch=0 oi=1 oaddr=128
        HALT
    """)
    bias = np.arange(16) * 10
    m = golden_sequencer.run(conv_machine(x, w, bias=bias), prog)
    n = 0
    for i0 in range(2):
        for i1 in range(3):
            for i2 in range(2):
                xa, wa, ch = 16 * i0 + 4 * i1, 8 * i1 + 4 * i2, i2
                acc = int(bias[ch] + (x[xa:xa + 4] * w[wa:wa + 4]).sum())
                want = requantize(np.array([acc]), multiplier=1 << 30, mode="single")[0]
                assert m.x[128 + 24 * i0 + 8 * i1 + i2] == want, (i0, i1, i2)
                n += 1
    assert n == 12 and m.executed == 3 + 1 + 2 + 6 + 12 * 3 + 1


def test_loop_nesting_limits():
    cm = conv_machine(np.zeros(256, int), np.zeros(256, int))
    deep = "LOOP count=2 body=4\nLOOP count=2 body=3\nLOOP count=2 body=2\nLOOP count=2 body=1\n" \
           "CLR acc=0\nHALT"
    with pytest.raises(IllegalInstruction, match="nest at most 3 deep"):
        golden_sequencer.run(cm, isa.assemble(deep))
    with pytest.raises(IllegalInstruction, match="past the end of the enclosing body"):
        golden_sequencer.run(conv_machine(np.zeros(256, int), np.zeros(256, int)),
                             isa.assemble("LOOP count=2 body=2\nCLR acc=0\nLOOP count=2 body=2\n"
                                          "CLR acc=1\nCLR acc=2\nHALT"))
    # a stride changes only while its level is closed (the hardware keeps running totals)
    with pytest.raises(IllegalInstruction, match="loop level 0 is open"):
        golden_sequencer.run(conv_machine(np.zeros(256, int), np.zeros(256, int)),
                             isa.assemble("LOOP count=2 body=2\nSTRD level=1 kind=0 stride=4\n"
                                          "STRD level=0 kind=1 stride=1\nHALT"))
    # a skipped inner body that ends the outer one still ends the outer iteration
    prog = isa.assemble("LOOP count=3 body=3\nCLR acc=0\n@!p0 LOOP count=2 body=1\nCLR acc=1\n"
                        "HALT")
    m = golden_sequencer.run(conv_machine(np.zeros(256, int), np.zeros(256, int)), prog)
    assert [pc for pc, _, _ in m.trace] == [0] + [1, 2] * 3 + [4]


def test_window_dot_drops_the_padding_taps():
    """A 3x3 window over a 4x5 image of one 4-lane word a pixel, SAME padding: each output
    pixel's DOT sums the taps inside the image only (a depthwise convolution per lane, into a
    lane bank), then REQW writes the 4 lanes."""
    rng = np.random.default_rng(SEED)
    hgt, wid, lanes = 4, 5, 4
    img = rng.integers(-128, 128, (hgt, wid, lanes))
    x = np.zeros(256, np.int64)
    x[:img.size] = img.ravel()
    ker = rng.integers(-127, 128, (9, lanes))
    w = np.zeros(256, np.int64)
    w[:ker.size] = ker.ravel()
    prog = isa.assemble(f"""
        SETL in_zp=3
        SETG ih={hgt} iw={wid} kw=3 pt=1 pl=1 sy=1 sx=1 pixpitch=1 rowpitch={wid}
        LOOP count={hgt} body=4 xstride={wid * lanes} ostride={wid * lanes}
        LOOP count={wid} body=3 xstride={lanes} ostride={lanes}
        CLR acc=4
        DOT acc=4 xi=1 xaddr=0 waddr=0 win=1 beats=9
        REQ acc=4 ch=0 oi=1 oaddr=128
        HALT
    """)
    bias = np.arange(16) * 100
    m = golden_sequencer.run(conv_machine(x, w, bias=bias, shift=np.full(16, -4)), prog)
    pad = np.pad(img - 3, ((1, 1), (1, 1), (0, 0)))  # padding taps contribute nothing
    out = m.x[128:128 + img.size].reshape(hgt, wid, lanes)
    for oy in range(hgt):
        for ox in range(wid):
            acc = (pad[oy:oy + 3, ox:ox + 3].reshape(9, lanes) * ker).sum(axis=0) + bias[:4]
            want = [int(requantize(np.array([a]), multiplier=1 << 30, shift=-4,
                                   mode="single")[0]) for a in acc]
            assert out[oy, ox].tolist() == want, (oy, ox)
    assert m.banks.shape == (2, lanes)


def test_setl_round_selects_double_rounding():
    """REQ rounds once (single) by default and twice (tflite) after SETL round=1: an
    accumulator where the two differ."""
    acc, mult, shift = 5, 1 << 30, -1  # 5 * 0.5 * 0.5 = 1.25: 1 once, 2 twice
    single = int(requantize(np.array([acc]), multiplier=mult, shift=shift, mode="single")[0])
    double = int(requantize(np.array([acc]), multiplier=mult, shift=shift, mode="tflite")[0])
    cm = conv_machine(np.zeros(256, int), np.zeros(256, int), bias=np.full(16, acc),
                      shift=np.full(16, shift))
    prog = isa.assemble("LDB acc=0 ch=0\nREQ acc=0 ch=0 oaddr=0\nSETL in_zp=0 round=1\n"
                        "REQ acc=0 ch=0 oaddr=1\nHALT")
    m = golden_sequencer.run(cm, prog)
    assert single != double
    assert [int(m.x[0]), int(m.x[1])] == [single, double]
