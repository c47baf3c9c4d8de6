"""Small arithmetic building blocks shared by the blocks."""

from amaranth.hdl import Const, Mux


def fits_signed(v, bits):
    """True when signed ``v`` fits ``bits`` bits: its bits from ``bits-1`` up all equal."""
    if len(v) <= bits:
        return Const(1, 1)
    high = v[bits - 1:]
    return (high == 0) | (high == (1 << len(high)) - 1)


def adder_tree(terms):
    """The sum of ``terms`` (values), as a balanced adder tree; 0 for none."""
    terms = list(terms)
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                 for k in range(0, len(terms), 2)]
    return terms[0]


def one_hot_or(hits, values):
    """The OR of the values whose hit bit is set (at most one is: a one-hot choice): an
    AND-OR multiplexer, 0 when no bit is set."""
    out = 0
    for h, v in zip(hits, values, strict=True):
        out = out | Mux(h, v, 0)
    return out


def popcount(bits):
    """Sum of the bits of a value, as a balanced adder tree."""
    return adder_tree(bits[i] for i in range(len(bits)))


# narrower weights are multiplied by shift and add, in logic: a DSP block for a 4-bit product
# wastes it (and the iCE40 UP5K has 8)
SHIFT_ADD_MAX_WIDTH = 4


def product(w, x):
    """``w * x`` for signed values; a weight of at most ``SHIFT_ADD_MAX_WIDTH`` bits as the sum
    of its partial products (two's complement: the top bit's term is subtracted), which no
    synthesis tool maps to a multiplier block."""
    b = len(w)
    if b > SHIFT_ADD_MAX_WIDTH:
        return w * x
    terms = [Mux(w[k], x << k, 0) for k in range(b - 1)]
    total = -Mux(w[b - 1], x << (b - 1), 0)
    for t in terms:
        total = total + t
    return total
