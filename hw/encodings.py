"""The project's encodings as ``amaranth.lib.enum`` shapes, for layouts and ``m.Case``.

One source: the codes are ``spec.isa``'s and ``spec.delta_port``'s (shared with the golden
models); this module only gives each a hardware shape of the width its field has in the
instruction word (``spec.isa.FIELDS``) or on the port (``spec.delta_port``), so a layout
field declared as ``Op`` reads ``f.op == Op.LOOP`` and ``m.Case(UopKind.DOT)``.
"""

from amaranth.lib import enum as hw_enum

from sparq.spec import delta_port, isa


def _wrap(codes, width):
    """``codes`` (a Python ``enum.IntEnum``) as an Amaranth enum of shape ``width`` bits."""
    if max(codes) >= 1 << width:
        raise ValueError(f"{codes.__name__} has codes up to {max(codes)}, "
                         f"beyond its {width}-bit field")
    ns = hw_enum.EnumType.__prepare__(codes.__name__, (hw_enum.Enum,), shape=width)
    for member in codes:
        ns[member.name] = member.value
    return hw_enum.EnumType(codes.__name__, (hw_enum.Enum,), ns, shape=width)


Op = _wrap(isa.Op, isa.field_width("op"))
Cmp = _wrap(isa.Cmp, isa.field_width("cmp", "SETP"))
Src = _wrap(isa.Src, isa.field_width("src", "SETP"))
UopKind = _wrap(isa.UopKind, (len(isa.UOP_OPS) - 1).bit_length())
RecordOp = _wrap(delta_port.RecordOp, delta_port.OP_BITS)
Status = _wrap(delta_port.Status, delta_port.STATUS_BITS)

# the activation zero point's width (SETL's in_zp), as carried on uops, probes and beats
ZP_BITS = isa.field_width("in_zp", "SETL")
