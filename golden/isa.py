"""The sparq instruction set: encoding, assembler and disassembler.

Instructions are 48-bit words. Every instruction names a predicate ``p`` (0..7) and a
polarity: it executes when ``p[pred] != neg`` (``p0`` is always true, so ``p0`` with
``neg=1`` never executes). An instruction that does not execute changes no state and costs
one cycle.

Common fields: ``[47:44]`` opcode, ``[43:41]`` predicate, ``[40]`` neg. Operand fields (bits
not listed are reserved and must be zero):

=======  ====  =====================================================================
op       code  operands
=======  ====  =====================================================================
CLR      0x1   acc [39:37]:  ``acc[acc] = 0`` (a lane bank: each lane's)
LDB      0x2   acc [39:37], ci [36], ch [35:26]:  ``acc[acc] = bias[c]``,
               ``c = ch + (ci ? ch offset : 0)``
DOT      0x3   acc [39:37], xi [36], xaddr [35:22], wi [21], waddr [20:6], win [5],
               beats [4:1] (1..15): ``acc[acc] += sum_k (x[xa + k] - x_zp) * w[wa + k]``
               over ``beats * lanes`` elements, ``xa = xaddr + (xi ? x offset : 0)``,
               ``wa = waddr + (wi ? w offset : 0)``; with ``win``, beat ``k`` is a tap of
               the SETG window (below); into a lane bank, each lane sums its own products
REQ      0x4   acc [39:37], ci [36], ch [35:26], oi [25], oaddr [24:11]:
               ``x[oa] = requantize(acc[acc], params[c])``, ``oa = oaddr + (oi ? o offset
               : 0)``, ``c`` as LDB's; on a lane bank, ``x[oa + l] = requantize(bank[l] +
               bias[c + l], params[c + l])`` for every lane ``l`` (``oa`` aligned)
SETP     0x5   pd [39:37] (1..7), cmp [36:34], src [33:31], ai [30], addr [29:15],
               beats [14:11] (1..15), imm [10:0] (signed):  ``p[pd] = value(src) cmp imm``
PAND     0x6   pd [39:37] (1..7), pa [36:34], pb [33:31]:  ``p[pd] = p[pa] & p[pb]``
POR      0x7   pd, pa, pb as PAND:  ``p[pd] = p[pa] | p[pb]``
PNOT     0x8   pd [39:37] (1..7), pa [36:34]:  ``p[pd] = ~p[pa]``
LOOP     0x9   count [39:32] (1..255), body [31:24] (1..255), xstride [23:14], ostride [13:4]:
               run the next ``body`` instructions ``count`` times with ``i = 0 .. count-1``;
               predicated off, the body is skipped. Loops do not nest, except on a
               convolution machine (three levels; an inner body ends within the outer)
SETL     0xA   in_zp [39:32] (signed), round [31]:  ``x_zp = in_zp``, the activation zero
               point of the DOTs and SETPs that follow (a program starts with the
               machine's ``x_zero_point``); the REQs that follow round once (0: the
               machine's ``single`` mode) or twice (1: ``tflite``, CONV_2D's rounding)
STRD     0xB   level [39:38] (0..2), kind [37] (0 w, 1 ch), stride [36:22]: the stride of
               that offset at that loop level (executed while that level is open: illegal)
SETG     0xC   ih [39:33], iw [32:26], kw [25:23], pt [22:21], pl [20:19], sy [18:17],
               sx [16:15] (ih, iw, kw, sy, sx >= 1), pixpitch [14:10], rowpitch [9:0]:
               the window of the DOTs with ``win``
HALT     0xF   stop.
=======  ====  =====================================================================

Offsets: at loop nesting level ``l`` (0 the outermost) with iteration index ``i_l``, the
x offset is ``sum_l i_l * xstride_l`` (o: ``ostride_l``; both from the LOOP that opened the
level) and the w and ch offsets ``sum_l i_l * stride_l[kind]`` (STRD; every stride is 0 when
a program starts). A window DOT's beat ``k`` is the tap ``(ky, kx) = divmod(k, kw)`` at
activation address ``xa + ((ky - pt) * rowpitch + (kx - pl) * pixpitch) * lanes`` and
weight address ``wa + k * lanes``; it is dropped (no product, no cycle) unless ``0 <= i_0 *
sy + ky - pt < ih`` and ``0 <= i_1 * sx + kx - pl < iw``, ``i_0`` and ``i_1`` the loop
indices of levels 0 and 1 (0 where there is no such level): loop levels 0 and 1 walk the
output rows and columns.

The convolution extensions (STRD, SETG, ``ci``, ``wi``, ``win``, ``round`` set, nested
loops, the lane banks: accumulator numbers 4 and 5, ``N_BANKS`` of ``lanes`` int32 each)
belong to a machine built with ``conv=True``; on any other machine they are illegal
instructions, executed or not.

``cmp``: 0 EQ, 1 NE, 2 LT, 3 LE, 4 GT, 5 GE. ``src`` (the representative value): 0 a weight
``w[addr]``, 1 an input ``x[a]``, 2 ``max |x - x_zp|`` of the activation block
``x[a : a + beats * lanes]``, 3 that block is all zero (1/0; zero = the zero point), 4 the
block's count of non-zeros, 5 the count of non-zero weights in ``w[addr : addr + beats *
lanes]``; ``a = addr + (ai ? x offset : 0)`` for the activation sources. ``x_zp`` in
DOT and the sources is the zero point SETL set last.

Illegal (golden raises ``IllegalInstruction``, hardware sets its error flag and halts
without changing state): opcodes 0x0 and 0xD-0xE, non-zero reserved bits, ``pd = 0``, cmp or
src above 5, ``beats = 0``, LOOP count or body 0, a LOOP nested deeper than the machine
allows or whose body runs past the program or its enclosing body, STRD level 3 (or,
executed, a level that is open), SETG with
ih, iw, kw, sy or sx 0, an accumulator number the machine does not have (LDB: a bank), the
convolution extensions on a machine without them, and, when executed, an address (after
indexing) outside its memory or not a multiple of ``lanes`` for block operands, a channel
outside the parameter memory.
"""

from dataclasses import dataclass, field

from sparq.spec.isa import CMPS, COMMON, FIELDS, LOOP_LEVELS, OPS, SIGNED, SRCS, WORD_BITS

NAMES = {v: k for k, v in OPS.items()}


class IllegalInstruction(ValueError):
    """An instruction word the machine refuses; the message names the word and the field."""


@dataclass(frozen=True)
class Instr:
    """A decoded instruction: the op name, its predicate and polarity, and its operands."""
    op: str
    pred: int = 0
    neg: int = 0
    args: dict = field(default_factory=dict)

    def __getattr__(self, name):  # operands read as attributes: ins.acc, ins.beats
        try:
            return self.__dict__["args"][name]
        except KeyError:
            raise AttributeError(name) from None


def _mask(width):
    return (1 << width) - 1


def _layout(op):
    return COMMON + FIELDS[op]


def encode(ins):
    """The 48-bit word of ``ins``; raises ``IllegalInstruction`` for a bad field value."""
    if ins.op not in OPS:
        raise IllegalInstruction(f"unknown op {ins.op!r}")
    values = dict(ins.args, op=OPS[ins.op], pred=ins.pred, neg=ins.neg)
    extra = set(ins.args) - {f for f, _, _ in FIELDS[ins.op]}
    if extra:
        raise IllegalInstruction(f"{ins.op} has no operand {sorted(extra)[0]!r}")
    word = 0
    for name, lsb, width in _layout(ins.op):
        v = int(values.get(name, 0))
        lo, hi = ((-(1 << (width - 1)), (1 << (width - 1)) - 1) if name in SIGNED
                  else (0, _mask(width)))
        if not lo <= v <= hi:
            raise IllegalInstruction(f"{ins.op} {name}={v} is outside [{lo}, {hi}]")
        word |= (v & _mask(width)) << lsb
    check(decode_fields(word))
    return word


def decode_fields(word):
    """Split a word into ``Instr`` fields without legality checks (reserved bits kept)."""
    word = int(word)
    if not 0 <= word < (1 << WORD_BITS):
        raise IllegalInstruction(f"word {word:#x} is not a {WORD_BITS}-bit word")
    code = (word >> 44) & 0xF
    op = NAMES.get(code)
    if op is None:
        return Instr(f"?{code:#x}", (word >> 41) & 7, (word >> 40) & 1, dict(word=word))
    args, used = {}, _mask(12) << 40
    for name, lsb, width in FIELDS[op]:
        v = (word >> lsb) & _mask(width)
        if name in SIGNED and v >> (width - 1):
            v -= 1 << width
        args[name] = v
        used |= _mask(width) << lsb
    args["reserved"] = word & ~used & _mask(WORD_BITS)
    return Instr(op, (word >> 41) & 7, (word >> 40) & 1, args)


def check(ins):
    """Static legality of a decoded instruction; returns it without ``reserved``, or raises."""
    if ins.op.startswith("?"):
        raise IllegalInstruction(f"word {ins.args['word']:#014x}: opcode {ins.op[1:]} is "
                                 "not defined")
    args = dict(ins.args)
    if args.pop("reserved", 0):
        raise IllegalInstruction(f"{ins.op}: reserved bits set ({ins.args['reserved']:#x})")
    if "pd" in args and args["pd"] == 0:
        raise IllegalInstruction(f"{ins.op}: p0 is always true and cannot be written")
    if args.get("cmp", 0) >= len(CMPS):
        raise IllegalInstruction(f"SETP: comparison code {args['cmp']} is not defined")
    if args.get("src", 0) >= len(SRCS):
        raise IllegalInstruction(f"SETP: source code {args['src']} is not defined")
    if "beats" in args and args["beats"] == 0:
        raise IllegalInstruction(f"{ins.op}: a block of 0 beats")
    if ins.op == "LOOP" and (args["count"] == 0 or args["body"] == 0):
        raise IllegalInstruction(f"LOOP: count {args['count']} and body {args['body']} must "
                                 "both be at least 1")
    if ins.op == "STRD" and args["level"] >= LOOP_LEVELS:
        raise IllegalInstruction(f"STRD: loop level {args['level']}; loops nest "
                                 f"{LOOP_LEVELS} deep")
    if ins.op == "SETG":
        zero = [k for k in ("ih", "iw", "kw", "sy", "sx") if args[k] == 0]
        if zero:
            raise IllegalInstruction(f"SETG: {zero[0]} must be at least 1")
    return Instr(ins.op, ins.pred, ins.neg, args)


def decode(word):
    """Decode and check a word; raises ``IllegalInstruction``."""
    return check(decode_fields(word))


# ----------------------------------------------------------------------------- assembly text

def disassemble(word):
    """One line of assembly: ``[@p3|@!p3] OP name=value ...`` (``@p0`` is left out)."""
    ins = decode(word)
    guard = "" if (ins.pred, ins.neg) == (0, 0) else f"@{'!' if ins.neg else ''}p{ins.pred} "
    parts = []
    for name, _, _ in FIELDS[ins.op]:
        v = ins.args[name]
        if name == "cmp":
            parts.append(f"cmp={CMPS[v]}")
        elif name == "src":
            parts.append(f"src={SRCS[v]}")
        else:
            parts.append(f"{name}={v}")
    return (guard + " ".join([ins.op] + parts)).strip()


def assemble_line(line, lineno=0):
    """Parse one line of assembly (the disassembler's format; ``#`` starts a comment)."""
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    where = f"line {lineno}: " if lineno else ""
    toks = text.split()
    pred, neg = 0, 0
    if toks[0].startswith("@"):
        g = toks.pop(0)[1:]
        neg = int(g.startswith("!"))
        g = g.lstrip("!")
        if not (g.startswith("p") and g[1:].isdigit()):
            raise IllegalInstruction(f"{where}bad predicate guard {toks and g!r}")
        pred = int(g[1:])
    if not toks or toks[0].upper() not in OPS:
        raise IllegalInstruction(f"{where}unknown op {toks[0] if toks else ''!r} in {text!r}")
    op = toks[0].upper()
    args = {}
    for t in toks[1:]:
        if "=" not in t:
            raise IllegalInstruction(f"{where}operand {t!r} is not name=value")
        k, v = t.split("=", 1)
        if k == "cmp" and v.upper() in CMPS:
            args[k] = CMPS.index(v.upper())
        elif k == "src" and v.upper() in SRCS:
            args[k] = SRCS.index(v.upper())
        else:
            try:
                args[k] = int(v, 0)
            except ValueError:
                raise IllegalInstruction(f"{where}operand {t!r}: {v!r} is not a number") \
                    from None
    try:
        return encode(Instr(op, pred, neg, args))
    except IllegalInstruction as e:
        raise IllegalInstruction(f"{where}{e}") from None


def assemble(text):
    """Assemble a program (one instruction per line) into a list of words."""
    words = []
    for n, line in enumerate(text.splitlines(), 1):
        w = assemble_line(line, n)
        if w is not None:
            words.append(w)
    return words


def ins(op, pred=0, neg=0, **args):
    """Build and encode one instruction: ``ins("DOT", acc=0, xaddr=16, waddr=0, beats=1)``."""
    return encode(Instr(op, pred, neg, args))
