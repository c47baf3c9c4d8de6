# amaranth: UnusedElaboratable=no
"""The Sequencer's parts with logic of their own, each alone under amaranth.sim against the
golden models: SETP's comparison (every code, a grid of values), the predecoder (the checks
stored beside each word, on corner and random words, against ``golden.isa.decode`` and the
ISA simulator's own checks when the word executes) and the loop unit (random LOOP programs'
commands, against the loop index of ``golden.sequencer``'s semantics)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparq.golden import sequencer as golden_sequencer
from sparq.golden.isa import IllegalInstruction, decode, decode_fields
from sparq.hw.seq_decode import Predecoder
from sparq.hw.seq_execute import Compare
from sparq.hw.seq_loop import CASES, LoopUnit
from sparq.sim import seq_stim
from sparq.spec import isa
from tests.conftest import SEED


def _run(dut, bench, *, clock=False):
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# ----------------------------------------------------------------------------- Compare

def test_compare_every_code():
    """``a cmp imm`` for all eight 3-bit codes (6 and 7 are none: 0) on a grid of values:
    the corners of ``a`` (16 bits) and ``imm`` (12 bits), their neighbours, and random ones."""
    rng = np.random.default_rng(SEED + 20)
    print(f"seed {SEED + 20}")
    a_edges = [-(1 << 15), -(1 << 15) + 1, -2049, -2048, -2047, -1, 0, 1, 2046, 2047, 2048,
               (1 << 15) - 1]
    top = 1 << (isa.field_width("imm", "SETP") - 1)  # imm is signed: [-top, top)
    imm_edges = [-top, -top + 1, -1, 0, 1, top - 2, top - 1]
    a_vals = a_edges + [int(v) for v in rng.integers(-(1 << 15), 1 << 15, 8)]
    imm_vals = imm_edges + [int(v) for v in rng.integers(-top, top, 5)] + [
        int(v) for v in rng.integers(-3, 4, 3)]
    dut = Compare()
    seen = {}

    async def bench(ctx):
        for code in range(1 << isa.field_width("cmp", "SETP")):
            for a in a_vals:
                for imm in imm_vals + [a] if -top <= a < top else imm_vals:
                    ctx.set(dut.cmp.as_value(), code)  # (6 and 7 are no Cmp)
                    ctx.set(dut.a, a)
                    ctx.set(dut.imm, imm)
                    want = (int(golden_sequencer._compare(code, a, imm))
                            if code < len(isa.CMPS) else 0)
                    assert ctx.get(dut.r) == want, (code, a, imm)
                    seen[code, want] = seen.get((code, want), 0) + 1

    _run(dut, bench)
    # every defined code gave both answers; the undefined ones only 0
    assert all(seen.get((c, r)) for c in range(len(isa.CMPS)) for r in (0, 1))


# ----------------------------------------------------------------------------- Predecoder

CONFIGS = [seq_stim.SMALL,  # x_depth a multiple of lanes
           dict(lanes=8, x_depth=70, w_depth=204, channels=5, prog_depth=100,
                x_zero_point=0)]  # not: blocks end 6 short of x_depth


def _field(rng, name, width, cfg):
    """A value of field ``name``: mostly near the machine's limits, sometimes anything."""
    near = {"xaddr": cfg["x_depth"], "oaddr": cfg["x_depth"], "addr": cfg["x_depth"],
            "waddr": cfg["w_depth"], "ch": cfg["channels"], "beats": 3, "count": 3,
            "body": 3, "pd": 1, "cmp": 5, "src": 5}
    top = (1 << width) - 1
    if name in near and rng.random() < 0.7:
        c = near[name]
        return int(np.clip(c + rng.integers(-cfg["lanes"] - 2, cfg["lanes"] + 2), 0, top))
    return int(rng.integers(0, top + 1))


def random_words(rng, cfg, n):
    """Corner words first (every opcode with every field 0, and every field all ones), then
    words of a random opcode (defined or not) with random fields, a few reserved bits set,
    and plain random 48-bit words."""
    words = []
    for name, code in isa.OPS.items():
        ones = sum(((1 << w) - 1) << lsb for _, lsb, w in isa.FIELDS[name])
        words += [code << 44, (code << 44) | ones, (code << 44) | (7 << 41) | (1 << 40)]
    words += [0, (1 << isa.WORD_BITS) - 1]
    while len(words) < n:
        r = rng.random()
        if r < 0.08:
            words.append(int(rng.integers(0, 1 << 48)))
            continue
        code = int(rng.integers(0, 16)) if r < 0.15 else int(rng.choice(list(isa.OPS.values())))
        word = (code << 44) | (int(rng.integers(0, 8)) << 41) | (int(rng.integers(0, 2)) << 40)
        name = {v: k for k, v in isa.OPS.items()}.get(code)
        for fname, lsb, width in (isa.FIELDS[name] if name else ()):
            word |= _field(rng, fname, width, cfg) << lsb
        if rng.random() < 0.05:
            word |= 1 << int(rng.integers(0, 40))
        words.append(word)
    return words


def golden_static(word, addr, cfg):
    """Illegal whatever the state: ``golden.isa.decode`` or the machine
    (``golden.sequencer.check_machine``) refuses it, or a LOOP's body runs past the program
    (``golden.sequencer.run``'s check)."""
    try:
        ins = decode(word)
        golden_sequencer.check_machine(golden_sequencer.MachineConfig(**cfg), ins)
    except IllegalInstruction:
        return True
    return ins.op == "LOOP" and addr + ins.body >= cfg["prog_depth"]


def golden_faults(word, cfg, prm, i, xstride, ostride):
    """The ISA simulator refuses to execute the (statically legal) word at loop index ``i``
    with these strides."""
    m = golden_sequencer.new_machine(golden_sequencer.MachineConfig(**cfg), prm,
                                     np.zeros(cfg["x_depth"], np.int64))
    try:
        golden_sequencer.execute(m, decode(word), golden_sequencer.Offsets(
            x=i * xstride, o=i * ostride))
    except IllegalInstruction:
        return True
    return False


def stored_check_faults(c, cfg, xo, oo):
    """What the stored checks ``c`` say (the contract of ``predecoded_layout``, which the
    fetch stage evaluates): ``dyn``, or the activation address at offset ``xo``/``oo``
    (``okind``) ends past ``x_depth`` or, for a block, leaves its lane."""
    o = (0, xo, oo)[c["okind"]]
    if c["dyn"]:
        return True
    if c["xkind"] == 0:
        return False
    return bool(c["xend"] + o > cfg["x_depth"]
                or (c["xkind"] == 2 and (c["blow"] + o) % cfg["lanes"] != 0))


@pytest.mark.parametrize("cfg", CONFIGS, ids=["small", "slack"])
def test_predecoder_against_golden(cfg):
    seed = SEED + 21 + CONFIGS.index(cfg)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    prm = seq_stim.random_params(rng, golden_sequencer.MachineConfig(**cfg))
    dut = Predecoder(**cfg)
    words = random_words(rng, cfg, 1500)
    seen = dict(static=0, legal=0, faults=0, loops=0)

    async def bench(ctx):
        for word in words:
            addr = int(rng.integers(0, cfg["prog_depth"]))
            ctx.set(dut.word, word)
            ctx.set(dut.addr, addr)
            c = {name: ctx.get(getattr(dut.checks, name)) for name, _ in dut.checks.shape()}
            static = golden_static(word, addr, cfg)
            assert c["static"] == static, f"{word:#014x} at {addr}"
            if static:
                seen["static"] += 1
                continue
            seen["legal"] += 1
            ins = decode_fields(word)
            assert c["loop"] == (ins.op == "LOOP"), f"{word:#014x}"
            assert c["uop"] == (ins.op in isa.UOP_OPS), f"{word:#014x}"
            assert c["setp"] == (ins.op == "SETP"), f"{word:#014x}"
            if ins.op == "LOOP":
                seen["loops"] += 1
                assert c["skip"] == addr + 1 + ins.body
            for _ in range(3):
                i = int(rng.integers(0, 256)) if rng.random() < 0.5 else int(rng.integers(0, 3))
                xs, os_ = (int(rng.integers(0, 1 << 10)) if rng.random() < 0.3 else
                           int(rng.integers(0, 3)) * cfg["lanes"] + int(rng.integers(0, 2))
                           for _ in range(2))
                want = golden_faults(word, cfg, prm, i, xs, os_)
                assert stored_check_faults(c, cfg, i * xs, i * os_) == want, \
                    f"{word:#014x} i={i} xstride={xs} ostride={os_}: {c}"
                seen["faults"] += want

    _run(dut, bench)
    print(seen)
    assert all(seen.values())


def test_predecoder_static_on_a_conv_machine():
    """On a convolution machine the stored ``static`` check is golden's for every word (the
    convolution extensions legal, their own static checks: accumulators 6 and 7, LDB of a
    lane bank, STRD level 3, SETG sizes of 0), and ``last`` is a LOOP's body's last address
    (its channel and weight addresses are the fetch stage's to check: tests/
    test_sequencer_rtl.py's conv programs)."""
    cfg = dict(seq_stim.CONV)
    seed = SEED + 23
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    dut = Predecoder(**cfg)
    words = random_words(rng, cfg, 1500)
    seen = {"static": 0, "legal": 0}

    async def bench(ctx):
        for word in words:
            addr = int(rng.integers(0, cfg["prog_depth"]))
            ctx.set(dut.word, word)
            ctx.set(dut.addr, addr)
            static = golden_static(word, addr, cfg)
            assert ctx.get(dut.checks.static) == static, f"{word:#014x} at {addr}"
            seen["static" if static else "legal"] += 1
            if not static and word >> 44 == isa.OPS["LOOP"]:
                assert ctx.get(dut.checks.last) == addr + decode_fields(word).body

    _run(dut, bench)
    print(seen)
    assert all(seen.values())


# ----------------------------------------------------------------------------- LoopUnit

class LoopModel:
    """A loop as ``golden.sequencer`` runs it: its body's first and last address, its count
    and strides, and the index ``i`` of the iteration running (offsets ``i * stride``)."""

    def __init__(self):
        self.loop = None  # (start, end, count, xstride, ostride, i)

    def state(self):
        if self.loop is None:
            return dict(in_loop=0)
        start, end, count, xs, os_, i = self.loop
        return dict(in_loop=1, l_start=start, l_end=end, l_left=count - 1 - i, xstride=xs,
                    ostride=os_, xoff=i * xs, ooff=i * os_, xoff_next=(i + 1) * xs,
                    ooff_next=(i + 1) * os_)

    def after(self, event, args):
        """The model after the current instruction completes with ``event``."""
        new = LoopModel()
        if event == "begin":
            pc, body, count, xs, os_ = args
            new.loop = (pc + 1, pc + body, count, xs, os_, 0)
        elif event == "end":  # the body's last instruction
            start, end, count, xs, os_, i = self.loop
            new.loop = (start, end, count, xs, os_, i + 1) if i + 1 < count else None
        elif event != "go":
            new.loop = self.loop
        return new


def _matches(view_get, want):
    return {k: view_get(k) for k in want} == want


@pytest.mark.parametrize("prog_depth", [64, 512])
def test_loop_unit_against_model(prog_depth):
    """Random commands as the execute stage gives them (a LOOP that runs, only outside a
    loop; the end of a body, only inside one; other instructions, idle cycles, starts):
    every cycle ``cases.next`` is the model's state after the instruction and ``cases.sel``
    names the case that holds; the registers (case ``other``) follow the model."""
    seed = SEED + 23 + prog_depth
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    dut = LoopUnit(prog_depth=prog_depth)
    cmd, out, ctl = dut.cmd, dut.cases, dut.ctl
    seen = {}

    async def bench(ctx):
        model = LoopModel()
        for _ in range(3000):
            inside = model.loop is not None
            event = rng.choice(["idle", "other", "begin" if not inside else "end",
                                "end" if inside else "other", "go", "start"],
                               p=[0.15, 0.3, 0.2, 0.25, 0.05, 0.05])
            pc = int(rng.integers(0, prog_depth - 1))
            body = int(rng.integers(1, min(255, prog_depth - 1 - pc) + 1))
            count = int(rng.choice([1, 2, 3, 255, int(rng.integers(1, 256))]))
            xs, os_ = (int(rng.choice([0, 1, 1023, int(rng.integers(0, 1024))]))
                       for _ in range(2))
            for sig, v in ((cmd.pc, pc), (cmd.body, body), (cmd.count, count),
                           (cmd.xstride, xs), (cmd.ostride, os_),
                           (cmd.begin, event == "begin"), (cmd.at_end, event == "end"),
                           (cmd.advance, event in ("begin", "end", "other")),
                           (ctl.go, event == "go"), (ctl.start, event == "start")):
                ctx.set(sig, v)
            assert ctx.get(cmd.in_loop) == inside
            assert _matches(lambda k: ctx.get(out.case[len(CASES) - 1][k]), model.state())
            nxt = model.after(event, (pc, body, count, xs, os_))
            want_case = {"go": "start", "begin": "begin"}.get(str(event), "other")
            if event == "end":
                want_case = "step" if model.loop[5] + 1 < model.loop[2] else "end"
            sel = ctx.get(out.sel)
            first = next((k for k in range(len(CASES) - 1) if sel >> k & 1), len(CASES) - 1)
            assert CASES[first] == want_case, (event, sel)
            assert _matches(lambda k: ctx.get(out.next[k]), nxt.state()), event
            seen[want_case] = seen.get(want_case, 0) + 1
            await ctx.tick()
            if event in ("begin", "end", "other"):
                model = nxt
            elif event == "start":
                model = LoopModel()

    _run(dut, bench, clock=True)
    print(seen)
    assert set(seen) == set(CASES)
