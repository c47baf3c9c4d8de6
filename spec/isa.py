"""The instruction encoding shared by the assembler (golden.isa) and the Sequencer (hw).

Opcodes, the (field, lsb, width) layout of each instruction's operands, and the codes of
SETP's comparisons and sources; golden.isa documents what they mean. ``Op``, ``Cmp``, ``Src``
and ``UopKind`` are the same codes as enums, for code that names them.
"""

import enum

OPS = {"CLR": 0x1, "LDB": 0x2, "DOT": 0x3, "REQ": 0x4, "SETP": 0x5, "PAND": 0x6, "POR": 0x7,
       "PNOT": 0x8, "LOOP": 0x9, "SETL": 0xA, "STRD": 0xB, "SETG": 0xC, "HALT": 0xF}
CMPS = ("EQ", "NE", "LT", "LE", "GT", "GE")
SRCS = ("W", "X", "XMAXABS", "XZERO", "XNNZ", "WNNZ")
Op = enum.IntEnum("Op", OPS)
Cmp = enum.IntEnum("Cmp", {name: code for code, name in enumerate(CMPS)})
Src = enum.IntEnum("Src", {name: code for code, name in enumerate(SRCS)})
# the micro-ops the Sequencer hands the datapath: their kind is the opcode less CLR's
UOP_OPS = ("CLR", "LDB", "DOT", "REQ")
UopKind = enum.IntEnum("UopKind", {name: OPS[name] - OPS["CLR"] for name in UOP_OPS})
WORD_BITS = 48
N_ACC = 4  # the accumulators acc0..acc3 (an acc field's values 0..3)
N_BANKS = 2  # a convolution machine's lane-accumulator banks (acc field values 4, 5)
LOOP_LEVELS = 3  # how deep a convolution machine's loops nest (one level otherwise)
STRIDE_KINDS = ("w", "ch")  # STRD's kinds (its ``kind`` field): weight address, channel

# (field, lsb, width) per opcode; common fields are added to each
FIELDS = {
    "CLR": (("acc", 37, 3),),
    "LDB": (("acc", 37, 3), ("ci", 36, 1), ("ch", 26, 10)),
    "DOT": (("acc", 37, 3), ("xi", 36, 1), ("xaddr", 22, 14), ("wi", 21, 1), ("waddr", 6, 15),
            ("win", 5, 1), ("beats", 1, 4)),
    "REQ": (("acc", 37, 3), ("ci", 36, 1), ("ch", 26, 10), ("oi", 25, 1), ("oaddr", 11, 14)),
    "SETP": (("pd", 37, 3), ("cmp", 34, 3), ("src", 31, 3), ("ai", 30, 1), ("addr", 15, 15),
             ("beats", 11, 4), ("imm", 0, 11)),
    "PAND": (("pd", 37, 3), ("pa", 34, 3), ("pb", 31, 3)),
    "POR": (("pd", 37, 3), ("pa", 34, 3), ("pb", 31, 3)),
    "PNOT": (("pd", 37, 3), ("pa", 34, 3)),
    "LOOP": (("count", 32, 8), ("body", 24, 8), ("xstride", 14, 10), ("ostride", 4, 10)),
    # the layer's activation zero point: what DOTs subtract (and skip) and SETPs compare
    # with; and the rounding of the REQs that follow (0 single, 1 double: tflite)
    "SETL": (("in_zp", 32, 8), ("round", 31, 1)),
    # a loop level's stride of the weight address or the channel (``STRIDE_KINDS``)
    "STRD": (("level", 38, 2), ("kind", 37, 1), ("stride", 22, 15)),
    # the window of the DOTs with ``win``: the input's height and width (pixels), the
    # kernel's width, the padding above and left of it, the strides, and the activation
    # words from one pixel to the next and from one row to the next
    "SETG": (("ih", 33, 7), ("iw", 26, 7), ("kw", 23, 3), ("pt", 21, 2), ("pl", 19, 2),
             ("sy", 17, 2), ("sx", 15, 2), ("pixpitch", 10, 5), ("rowpitch", 0, 10)),
    "HALT": (),
}
# what only a convolution machine (``spec.params.machine(conv=True)``) has: these ops, these
# one-bit fields set, and accumulator numbers from N_ACC (its lane-accumulator banks)
CONV_OPS = ("STRD", "SETG")
CONV_FLAGS = {"LDB": ("ci",), "DOT": ("wi", "win"), "REQ": ("ci",), "SETL": ("round",)}
COMMON = (("op", 44, 4), ("pred", 41, 3), ("neg", 40, 1))
SIGNED = {"imm", "in_zp"}


def field_width(name, op=None):
    """The width in bits of field ``name`` (of opcode ``op``, or a common field)."""
    for fname, _lsb, width in COMMON + (FIELDS[op] if op is not None else ()):
        if fname == name:
            return width
    raise KeyError(f"no field {name!r} in {op or 'the common fields'}")
