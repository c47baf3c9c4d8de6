"""The Sequencer's view of an instruction word, and the checks made when a word is loaded.

Every width here is derived from ``spec.isa`` (its field table ``FIELDS``/``COMMON``) and the
machine's parameters (``spec.params.machine``); the codes are ``hw.encodings``' enums.

- ``instruction_layout()``: every operand field of a word as one ``data.FlexibleLayout``
  (the opcodes' fields overlap), for ``data.View(instruction_layout(), word)``;
- ``predecoded_layout(**machine)`` and ``Predecoder``: what is stored beside each word in the
  program memory (the checks that need no machine state).
"""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import isa
from sparq.spec import params as spec_params

from .encodings import Cmp, Op, Src

WORD = isa.WORD_BITS
N_PRED = 1 << isa.field_width("pred")  # predicates p0..p7
# how far past a LOOP its body may reach: program addresses run to prog_depth + BODY_SPAN
BODY_BITS = isa.field_width("body", "LOOP")
BODY_SPAN = 1 << BODY_BITS
COUNT_BITS = isa.field_width("count", "LOOP")
STRIDE_BITS = max(isa.field_width("xstride", "LOOP"), isa.field_width("ostride", "LOOP"))
# a loop's offset, the iteration index times a stride (18 bits)
OFFSET_BITS = STRIDE_BITS + COUNT_BITS
# an activation address as written in a word (DOT's xaddr, REQ's oaddr, SETP's addr: 14 bits)
ADDR_BITS = max(isa.field_width("xaddr", "DOT"), isa.field_width("oaddr", "REQ"),
                isa.field_width("addr", "SETP"))
# an effective address, a word's address plus a loop offset (19 bits)
EADDR_BITS = max(ADDR_BITS, OFFSET_BITS) + 1
# DOT's and SETP's beats fields are both named ``beats`` in spec.isa; here they differ
_RENAME = {("DOT", "beats"): "dbeats", ("SETP", "beats"): "sbeats"}
_ENUMS = {"op": Op, "cmp": Cmp, "src": Src}


def _mask(fields):
    return functools.reduce(operator.or_, (((1 << w) - 1) << lsb for _, lsb, w in fields), 0)


def instruction_layout():
    """Every field of an instruction word, named as in ``spec.isa.FIELDS`` except DOT's
    ``beats`` (``dbeats``) and SETP's (``sbeats``); ``op``, ``cmp`` and ``src`` are the enums
    of ``hw.encodings``, ``imm`` is signed. Fields of different opcodes overlap."""
    fields = {}
    for op, table in ((None, isa.COMMON), *isa.FIELDS.items()):
        for name, lsb, width in table:
            key = _RENAME.get((op, name), name)
            shape = _ENUMS.get(name, signed(width) if name in isa.SIGNED else unsigned(width))
            if key in fields:
                if (fields[key].offset, fields[key].width) != (lsb, width):
                    raise ValueError(f"field {key!r} of {op} differs from another opcode's")
                continue
            fields[key] = data.Field(shape, lsb)
    return data.FlexibleLayout(WORD, fields)


def writes_pred(op):
    """The instruction with opcode ``op`` (an ``Op`` view) writes predicate ``pd``."""
    return (op == Op.SETP) | (op == Op.PAND) | (op == Op.POR) | (op == Op.PNOT)


def _largest(enum):
    """The largest code of ``enum`` (the codes are 0 up to it)."""
    return max(code.value for code in enum)


def predecoded_layout(*, prog_depth, x_depth, lanes, w_depth=0, channels=0, conv=False,
                      **_):
    """What ``Predecoder`` stores beside each word: ``uop`` (a uop: ``isa.UOP_OPS``),
    ``setp`` (a SETP), ``loop`` (a LOOP) and ``skip`` (the
    address after its body), ``static`` (illegal in any case), ``dyn`` (illegal when
    executed, whatever the loop), and for an activation address that a loop may offset, its
    kind (``xkind`` 1: one activation, 2: an aligned block), its offset (``okind`` 1: the
    loop's x offset, 2: its output offset), ``xend`` (the end of what it reads or writes, at
    most ``x_depth + 1``) and ``blow`` (its lane). A convolution machine's (``conv``) has
    instead of ``xend`` the room it leaves a loop offset, ``xroom = x_depth - end`` (0 when
    negative) and ``xover`` (``end > x_depth``: out of range at any offset); and ``last``,
    a LOOP's body's last address, and for a weight address or a channel that takes a loop
    offset (``rkind`` 1: DOT's with ``wi``, 2: LDB's or REQ's with ``ci``) the
    ``room`` the offset may take: the fetch stage checks ``offset <= room`` (and a weight
    offset's alignment) with one comparison; ``dyn`` holds what is out of range at offset 0."""
    xend = ({"xover": 1, "xroom": range(x_depth + 1)} if conv
            else {"xend": range(x_depth + 2)})
    return data.StructLayout({"uop": 1, "setp": 1, "loop": 1,
                              "skip": range(prog_depth + BODY_SPAN + 1),
                              "static": 1, "dyn": 1, "xkind": 2, "okind": 2, **xend,
                              "blow": max(1, (lanes - 1).bit_length()),
                              **({"last": range(prog_depth + BODY_SPAN), "rkind": 2,
                                  "room": range(max(w_depth, channels) + 1)} if conv else {})})


class Predecoder(wiring.Component):
    """The checks of a word that need no machine state, made when it is loaded (comb).

    ====== ===== ===========================================================================
    word   In    the instruction word (``WORD`` bits)
    addr   In    its program address, ``range(prog_depth)``
    checks Out   ``predecoded_layout(**machine)``; ``static``: unknown opcode, reserved
                 bits set, p0 written, a SETP comparison or source out of range, a DOT,
                 SETP or LOOP that does nothing, a LOOP whose body runs past the program;
                 ``dyn``: a channel or a weight address out of range (or a weight block not
                 aligned); ``xkind``/``okind``/``xend``/``blow`` (a convolution machine's:
                 ``xover``/``xroom`` for ``xend``): what the fetch stage checks of the
                 activation address once it knows the loop offset
    ====== ===== ===========================================================================

    Bit-exact reference: ``golden.isa.decode`` (static) and ``golden.sequencer``'s checks.
    """

    def __init__(self, **machine):
        self._p = spec_params.machine(**machine)
        super().__init__({"word": In(WORD), "addr": In(range(self._p["prog_depth"])),
                          "checks": Out(predecoded_layout(**self._p))})

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        p = self._p
        lanes, low = p["lanes"], (p["lanes"] - 1).bit_length()
        f = data.View(instruction_layout(), self.word)
        c, op = self.checks, f.op
        conv = p["conv"]
        m.d.comb += [c.uop.eq(functools.reduce(operator.or_, [op == Op[k] for k in isa.UOP_OPS])),
                     c.setp.eq(op == Op.SETP), c.loop.eq(op == Op.LOOP),
                     c.skip.eq(self.addr + 1 + f.body)]
        m.d.comb += c.static.eq(self._static_bad(m, f, conv) | (
            (op == Op.LOOP) & (self.addr + f.body >= p["prog_depth"])))
        if conv:
            m.d.comb += c.last.eq(self.addr + f.body)
        xend, x_addr = (self._conv_x_checks if conv else self._x_checks)(m, c)

        def w_block_bad(a, beats):  # not (a aligned and a + beats * lanes <= w_depth)
            aligned = (a[:low] == 0) if low else Const(1)
            # (``a[low:]``: as wide as the block index, so that the sum and its comparison
            # are as narrow as the old inline ``a >> low`` of a 14-bit field synthesized)
            return ~aligned | ((a[low:] + beats) > p["w_depth"] // lanes)

        req_x = xend("req", f.oaddr, 1, 1)
        dot_x = xend("dot", f.xaddr, f.dbeats, 2)
        # (a convolution machine's channels and weight addresses take loop offsets: the
        # fetch stage checks them)
        setp_x1 = xend("setp_x", f.addr, 1, 1)
        setp_xb = xend("setp_block", f.addr, f.sbeats, 2)
        with m.Switch(op):
            with m.Case(Op.LDB):
                if conv:
                    m.d.comb += _room(c, p["channels"] - 1 - f.ch, f.ci, 2)
                else:
                    m.d.comb += c.dyn.eq(f.ch >= p["channels"])
            with m.Case(Op.REQ):
                if conv:
                    with m.If(f.acc >= isa.N_ACC):  # a lane bank's REQ writes a block
                        m.d.comb += [*x_addr(f.oaddr, xend("reqw", f.oaddr, 1, 2), 2,
                                             Mux(f.oi, 2, 0)),
                                     *_room(c, p["channels"] - lanes - f.ch, f.ci, 2)]
                    with m.Else():
                        m.d.comb += [*x_addr(f.oaddr, req_x, 1, Mux(f.oi, 2, 0)),
                                     *_room(c, p["channels"] - 1 - f.ch, f.ci, 2)]
                else:
                    m.d.comb += [c.dyn.eq(f.ch >= p["channels"]),
                                 *x_addr(f.oaddr, req_x, 1, Mux(f.oi, 2, 0))]
            with m.Case(Op.DOT):
                if conv:  # (a window DOT's taps are checked by the datapath)
                    room = _table(m, f.dbeats, [p["w_depth"] - b * lanes for b in range(
                        1 << len(f.dbeats))], "w_limit") - f.waddr
                    misaligned = (f.waddr[:low] != 0) if low else Const(0)
                    m.d.comb += _room(c, room, f.wi, 1, misaligned)
                    with m.If(~f.win):
                        m.d.comb += x_addr(f.xaddr, dot_x, 2, f.xi)
                else:
                    m.d.comb += [c.dyn.eq(w_block_bad(f.waddr, f.dbeats)),
                                 *x_addr(f.xaddr, dot_x, 2, f.xi)]
            with m.Case(Op.SETP):
                with m.Switch(f.src):
                    with m.Case(Src.W):
                        m.d.comb += c.dyn.eq(f.addr >= p["w_depth"])
                    with m.Case(Src.X):
                        m.d.comb += x_addr(f.addr, setp_x1, 1, f.ai)
                    with m.Case(Src.XMAXABS, Src.XZERO, Src.XNNZ):
                        m.d.comb += x_addr(f.addr, setp_xb, 2, f.ai)
                    with m.Case(Src.WNNZ):
                        m.d.comb += c.dyn.eq(w_block_bad(f.addr, f.sbeats))
        return m

    def _x_checks(self, m, c):
        """``xend(name, base, beats, xkind)``: the end of what an address of kind ``xkind``
        at ``base`` reads or writes (``beats`` blocks of ``lanes``, or one activation),
        saturated at ``x_depth + 1``: each kind's sum and saturation made from the word's
        fields, the opcode's choice after them (not before the carry chain); and
        ``x_addr(base, xend, xkind, okind)``, the assignments of an address's checks."""
        p = self._p
        lanes, low = p["lanes"], (p["lanes"] - 1).bit_length()
        # the activation address's base and extent (at most 15 beats of ``lanes``)
        most = max(1 << isa.field_width("beats", "DOT"), 1 << isa.field_width("beats", "SETP"))
        # a block ends at most at the last whole block, x_depth - slack
        slack = p["x_depth"] % lanes
        end_bits = ((1 << ADDR_BITS) - 1 + (most - 1) * lanes + lanes - 1).bit_length()

        def xend(name, base, beats, xkind):
            extent = beats * lanes if xkind == 2 else beats
            end = Signal(end_bits, name=f"xend_{name}")
            m.d.comb += end.eq(base + extent + (slack if xkind == 2 else 0))
            return Mux(end > p["x_depth"], p["x_depth"] + 1, end)

        def x_addr(base, xend_value, xkind, okind):
            return [c.xkind.eq(xkind), c.okind.eq(okind), c.xend.eq(xend_value),
                    c.blow.eq(base[:low] if low else 0)]

        return xend, x_addr

    def _conv_x_checks(self, m, c):
        """``_x_checks`` on a convolution machine, whose fetch stage compares the loop offset
        with the room the word leaves it (``xroom``, ``xover``: ``predecoded_layout``): the
        room is ``limit - base``, the limit (``x_depth`` less the extent, and less the slack
        of a block) a table of the beats, so that one carry chain sits on the load path."""
        p = self._p
        lanes, low = p["lanes"], (p["lanes"] - 1).bit_length()
        slack = p["x_depth"] % lanes

        def xend(name, base, beats, xkind):
            def limit(b):
                return p["x_depth"] - (b * lanes + slack if xkind == 2 else b)
            if isinstance(beats, int):
                lim = Const(limit(beats), signed(ADDR_BITS + 2))
            else:
                lim = _table(m, beats, [limit(b) for b in range(1 << len(beats))],
                             f"x_limit_{name}")
            room = Signal(signed(max(len(lim), len(base) + 1) + 1), name=f"xroom_{name}")
            m.d.comb += room.eq(lim - base)
            return room < 0, Mux(room < 0, 0, room)

        def x_addr(base, xend_value, xkind, okind):
            over, room = xend_value
            return [c.xkind.eq(xkind), c.okind.eq(okind), c.xover.eq(over), c.xroom.eq(room),
                    c.blow.eq(base[:low] if low else 0)]

        return xend, x_addr

    @staticmethod
    def _static_bad(m, f, conv):
        """The word alone is illegal (see the class docstring's ``static``, but the LOOP's
        body end, which needs the address); on a machine without the convolution extensions
        (``conv``), so are they."""
        op = f.op
        known = Cat(*[op == code for code in Op if conv or code.name not in isa.CONV_OPS]).any()
        ext = _conv_static(f) if conv else _conv_flags(f) | _acc_bad(f, isa.N_ACC)
        return (~known | (_reserved(m, f) != 0) | (writes_pred(op) & (f.pd == 0)) | ext
                | ((op == Op.SETP) & ((f.cmp.as_value() > _largest(Cmp))
                                      | (f.src.as_value() > _largest(Src))
                                      | (f.sbeats == 0)))
                | ((op == Op.DOT) & (f.dbeats == 0))
                | ((op == Op.LOOP) & ((f.count == 0) | (f.body == 0))))


def _table(m, index, values, name):
    """A signal ``name``: ``values[index]`` (signed; a table, so that a constant less a
    multiple of ``index`` costs one level of LUTs, not a carry chain)."""
    out = Signal(signed(max(v.bit_length() for v in values) + 1), name=name)
    with m.Switch(index):
        for k, v in enumerate(values):
            with m.Case(k):
                m.d.comb += out.eq(v)
    return out


def _room(c, room, indexed, rkind, bad=None):
    """A convolution machine's stored range check of a weight address or channel: ``room``
    (signed: how far past it the loop offset may take it), out of range at offset 0 (``dyn``),
    and the kind of offset the fetch stage compares with it when ``indexed``."""
    neg = room < 0
    return [c.dyn.eq(neg if bad is None else neg | bad), c.rkind.eq(Mux(indexed, rkind, 0)),
            c.room.eq(Mux(neg, 0, room))]


def _conv_flags(f):
    """The word uses a convolution extension's flag (``spec.isa.CONV_FLAGS``), which this
    Sequencer does not have (``golden.sequencer.check_machine``)."""
    return functools.reduce(operator.or_, [
        (f.op == Op[op]) & getattr(f, name) for op, names in isa.CONV_FLAGS.items()
        for name in names], Const(0))


def _acc_bad(f, count):
    """An accumulator number from ``count`` (without the convolution extensions, ``N_ACC``: a
    lane bank, which the machine does not have)."""
    uses = functools.reduce(operator.or_, [f.op == Op[op] for op, fields in isa.FIELDS.items()
                                           if any(n == "acc" for n, _, _ in fields)])
    return uses & (f.acc >= count)


def _conv_static(f):
    """What a convolution machine refuses of a word alone (``golden.isa.check``,
    ``golden.sequencer.check_machine``): an accumulator it does not have (LDB: a lane bank),
    STRD of level ``LOOP_LEVELS`` or more, SETG with a size or stride of 0."""
    sizes = Cat(*[getattr(f, k) == 0 for k in ("ih", "iw", "kw", "sy", "sx")]).any()
    return (_acc_bad(f, isa.N_ACC + isa.N_BANKS) | ((f.op == Op.LDB) & (f.acc >= isa.N_ACC))
            | ((f.op == Op.STRD) & (f.level >= isa.LOOP_LEVELS))
            | ((f.op == Op.SETG) & sizes))


def _reserved(m, f):
    """The bits of word ``f`` (a view of ``instruction_layout()``) that its opcode does not
    use: neither a common field nor one of its own (an unknown opcode's are not checked)."""
    word = f.as_value()
    unused = ((1 << WORD) - 1) & ~_mask(isa.COMMON)
    reserved = Signal(WORD, name="reserved")
    with m.Switch(f.op):
        for name, fields in isa.FIELDS.items():
            with m.Case(Op[name]):
                m.d.comb += reserved.eq(word & (unused & ~_mask(fields)))
    return reserved
