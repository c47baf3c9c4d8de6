"""The instruction encoding shared by the assembler (golden.isa) and the Sequencer (hw).

Opcodes, the (field, lsb, width) layout of each instruction's operands, and the codes of
SETP's comparisons and sources; golden.isa documents what they mean. ``Op``, ``Cmp``, ``Src``
and ``UopKind`` are the same codes as enums, for code that names them.
"""

import enum

OPS = {"CLR": 0x1, "LDB": 0x2, "DOT": 0x3, "REQ": 0x4, "SETP": 0x5, "PAND": 0x6, "POR": 0x7,
       "PNOT": 0x8, "LOOP": 0x9, "SETL": 0xA, "HALT": 0xF}
CMPS = ("EQ", "NE", "LT", "LE", "GT", "GE")
SRCS = ("W", "X", "XMAXABS", "XZERO", "XNNZ", "WNNZ")
Op = enum.IntEnum("Op", OPS)
Cmp = enum.IntEnum("Cmp", {name: code for code, name in enumerate(CMPS)})
Src = enum.IntEnum("Src", {name: code for code, name in enumerate(SRCS)})
# the micro-ops the Sequencer hands the datapath: their kind is the opcode less CLR's
UOP_OPS = ("CLR", "LDB", "DOT", "REQ")
UopKind = enum.IntEnum("UopKind", {name: OPS[name] - OPS["CLR"] for name in UOP_OPS})
WORD_BITS = 48

# (field, lsb, width) per opcode; common fields are added to each
FIELDS = {
    "CLR": (("acc", 38, 2),),
    "LDB": (("acc", 38, 2), ("ch", 30, 8)),
    "DOT": (("acc", 38, 2), ("xi", 37, 1), ("xaddr", 27, 10), ("waddr", 13, 14),
            ("beats", 9, 4)),
    "REQ": (("acc", 38, 2), ("ch", 30, 8), ("oi", 29, 1), ("oaddr", 19, 10)),
    "SETP": (("pd", 37, 3), ("cmp", 34, 3), ("src", 31, 3), ("ai", 30, 1), ("addr", 16, 14),
             ("beats", 12, 4), ("imm", 0, 12)),
    "PAND": (("pd", 37, 3), ("pa", 34, 3), ("pb", 31, 3)),
    "POR": (("pd", 37, 3), ("pa", 34, 3), ("pb", 31, 3)),
    "PNOT": (("pd", 37, 3), ("pa", 34, 3)),
    "LOOP": (("count", 32, 8), ("body", 24, 8), ("xstride", 14, 10), ("ostride", 4, 10)),
    # the layer's activation zero point: what DOTs subtract (and skip) and SETPs compare with
    "SETL": (("in_zp", 32, 8),),
    "HALT": (),
}
COMMON = (("op", 44, 4), ("pred", 41, 3), ("neg", 40, 1))
SIGNED = {"imm", "in_zp"}


def field_width(name, op=None):
    """The width in bits of field ``name`` (of opcode ``op``, or a common field)."""
    for fname, _lsb, width in COMMON + (FIELDS[op] if op is not None else ()):
        if fname == name:
            return width
    raise KeyError(f"no field {name!r} in {op or 'the common fields'}")
