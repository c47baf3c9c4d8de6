"""Small arithmetic building blocks shared by the blocks."""

from amaranth.hdl import Const


def fits_signed(v, bits):
    """True when signed ``v`` fits ``bits`` bits: its bits from ``bits-1`` up all equal."""
    if len(v) <= bits:
        return Const(1, 1)
    high = v[bits - 1:]
    return (high == 0) | (high == (1 << len(high)) - 1)


def popcount(bits):
    """Sum of the bits of a value, as a balanced adder tree."""
    terms = [bits[i] for i in range(len(bits))]
    if not terms:
        return Const(0, 1)
    while len(terms) > 1:
        terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                 for k in range(0, len(terms), 2)]
    return terms[0]
