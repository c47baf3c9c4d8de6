"""Merge the part-select assignments of a wire in Yosys' Verilog into one concatenation.

Yosys' ``write_verilog`` (behind ``amaranth.back.verilog``) drives a wide wire that is put
together from several sources with one continuous assignment per part::

    assign i__payload[287:286] = \\$377 ;
    assign i__payload[255:248] = x_rd__data[127:120];
    ...                                                  (49 assignments for 289 bits)

Icarus Verilog resolves such a wire bit by bit on every change of any part, which made the
core's simulation about 20 times slower than needed (``docs/simulation.md``). ``merge``
rewrites every wire whose bits are all driven by such assignments, each bit exactly once and
each right-hand side of a width it can check, as one ``assign w = {...};``. The two are the
same netlist: every bit keeps its driver. Anything it cannot check is left as it is.
"""

import re

_IDENT = r"(?:[A-Za-z_][A-Za-z0-9_$]*|\\\S+ )"
_DECL = re.compile(rf"^\s*(?:input|output|inout|wire|reg)\s+(?:signed\s+)?"
                   rf"(?:\[(\d+):(\d+)\]\s+)?({_IDENT})\s*(?:=[^;]*)?;")
_WIRE = re.compile(rf"^\s*wire\s+(?:signed\s+)?(?:\[(\d+):(\d+)\]\s+)?({_IDENT})\s*;")
_PART = re.compile(rf"^(\s*)assign ({_IDENT})\s*\[(\d+)(?::(\d+))?\] = (.*);\s*$")
_WHOLE = re.compile(rf"^\s*assign ({_IDENT})\s*= ")
_CONST = re.compile(r"^(\d+)'[sS]?[bBhHdDoO][0-9a-fA-FxXzZ_?]+$")
_SELECT = re.compile(rf"^({_IDENT})\s*\[(\d+)(?::(\d+))?\]$")


def _name(token):
    return token.strip() if not token.startswith("\\") else token.rstrip()


def _split_top(text):
    """Split ``text`` at the commas outside braces and brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _width(expr, widths):
    """The width of a right-hand side Yosys writes, or None when it is not one of the forms
    checked here (an identifier, a part or bit select, a sized constant, a concatenation)."""
    e = expr.strip()
    if e.startswith("{") and e.endswith("}"):
        ws = [_width(p, widths) for p in _split_top(e[1:-1])]
        return None if None in ws else sum(ws)
    m = _CONST.match(e)
    if m:
        return int(m.group(1))
    m = _SELECT.match(e)
    if m:  # a select of a declared vector (not a memory word, not an unknown name)
        hi, lo = int(m.group(2)), m.group(3)
        lo = hi if lo is None else int(lo)
        width = widths.get(_name(m.group(1)))
        return hi - lo + 1 if width is not None and 0 <= lo <= hi < width else None
    return widths.get(_name(e + " " if e.startswith("\\") else e))


def merge(text):
    """``text`` with every fully part-assigned wire driven by one concatenation (module by
    module: names are local to a module)."""
    out, cur = [], []
    for line in text.split("\n"):
        cur.append(line)
        if line.startswith("endmodule"):
            out += _merge_module(cur)
            cur = []
    return "\n".join(out + cur)


def _merge_module(lines):
    widths, wires, whole = {}, {}, set()
    for line in lines:
        m = _DECL.match(line)
        if m:
            hi, lo = m.group(1), m.group(2)
            widths[_name(m.group(3))] = 1 if hi is None else int(hi) - int(lo) + 1
            w = _WIRE.match(line)
            if w and (lo is None or int(lo) == 0):
                wires[_name(w.group(3))] = widths[_name(m.group(3))]
        m = _WHOLE.match(line)
        if m:
            whole.add(_name(m.group(1)))
    parts = {}
    for k, line in enumerate(lines):
        m = _PART.match(line)
        if m:
            name = _name(m.group(2))
            hi = int(m.group(3))
            lo = hi if m.group(4) is None else int(m.group(4))
            parts.setdefault(name, []).append((k, lo, hi, m.group(5).strip(), m.group(1)))
    drop, put = set(), {}
    for name, ps in parts.items():
        if name not in wires or name in whole or len(ps) < 2:
            continue
        ps.sort(key=lambda p: p[1])
        ok, nxt = True, 0
        for _, lo, hi, rhs, _ in ps:
            if lo != nxt or _width(rhs, widths) != hi - lo + 1:
                ok = False
                break
            nxt = hi + 1
        if not ok or nxt != wires[name]:
            continue
        first = min(p[0] for p in ps)
        ident = name + " " if name.startswith("\\") else name + " "
        # a space after each part: an escaped identifier ends at white space
        rhs = ", ".join(p[3] + " " for p in reversed(ps))
        put[first] = f"{ps[0][4]}assign {ident}= {{ {rhs} }};"
        drop.update(p[0] for p in ps)
    return [put.get(k, line) for k, line in enumerate(lines) if k in put or k not in drop]
