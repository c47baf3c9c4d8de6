"""Byte-level codings of the delta file: LEB128 varints, index sets (gap varints, Rice-coded
gaps or a bitmap, whichever is smallest), and bit-packed two's-complement integers. Readers
raise ``DecodeError`` on malformed input."""

import numpy as np


class DecodeError(ValueError):
    """Malformed bytes; the message says what and where."""


def put_varint(out, v):
    """Append unsigned LEB128 ``v`` to bytearray ``out``."""
    v = int(v)
    if v < 0:
        raise ValueError(f"varint of a negative number {v}")
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return


class Reader:
    """Sequential reads from ``data`` with bounds checks."""

    def __init__(self, data):
        self.data, self.pos = memoryview(data), 0

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError(f"{what}: needs {n} bytes at offset {self.pos}, "
                              f"{len(self.data) - self.pos} left")
        b = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return b

    def rest(self):
        """The unread bytes, without consuming them."""
        return bytes(self.data[self.pos:])

    def u8(self, what):
        return self.take(1, what)[0]

    def varint(self, what, limit=1 << 64):
        v, shift = 0, 0
        while True:
            b = self.u8(what)
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift > 70:
                raise DecodeError(f"{what}: varint longer than 10 bytes at offset {self.pos}")
        if v >= limit:
            raise DecodeError(f"{what}: {v} is not below {limit}")
        return v

    def done(self):
        if self.pos != len(self.data):
            raise DecodeError(f"{len(self.data) - self.pos} unexpected trailing bytes at "
                              f"offset {self.pos}")


GAPS, BITMAP, RICE = 1, 2, 3
MAX_RICE = 15  # the largest Rice parameter (bits of a gap's remainder)


def _bits_to_bytes(bits):
    return np.packbits(np.asarray(bits, np.uint8), bitorder="little").tobytes()


def rice_bits(values, r):
    """``values`` (unsigned) Rice-coded with parameter ``r``: per value its quotient
    ``v >> r`` in unary (that many 1 bits, then a 0) and its ``r`` low bits, LSB first."""
    out = []
    for v in np.asarray(values, np.int64):
        q = int(v) >> r
        out += [1] * q + [0]
        out += [(int(v) >> i) & 1 for i in range(r)]
    return out


def encode_indices(out, idx, size, *, rice=True):
    """Changed flat indices (sorted, unique) in the smallest of three codings (ties: the
    lower coding number). Writes a coding byte, then the set:

    1 gaps: per index a varint ``index[i] - index[i-1] - 1`` (``index[-1] = -1``);
    2 bitmap: ``ceil(size/8)`` bytes, bit ``j`` (LSB first) set if element ``j`` changes;
    3 Rice: a byte ``r`` (0..15), then the same gaps Rice-coded with parameter ``r``
      (``rice_bits``) in ``ceil(bits/8)`` bytes, padding bits zero (the ``n`` gaps delimit
      themselves). ``rice=False`` (format version 1) leaves it out.
    """
    idx = np.asarray(idx, np.int64)
    gap_values = np.diff(np.concatenate([[-1], idx])) - 1
    gaps = bytearray()
    for g in gap_values:
        put_varint(gaps, int(g))
    options = {GAPS: bytes(gaps),
               BITMAP: np.packbits(np.isin(np.arange(size), idx), bitorder="little").tobytes()}
    if rice:
        best = min(range(MAX_RICE + 1),
                   key=lambda r: int(((gap_values >> r) + 1 + r).sum()))
        options[RICE] = bytes([best]) + _bits_to_bytes(rice_bits(gap_values, best))
    code = min(options, key=lambda c: (len(options[c]), c))
    out.append(code)
    out += options[code]


def _decode_rice(r, count, size, what):
    param = r.u8(f"{what} Rice parameter")
    if param > MAX_RICE:
        raise DecodeError(f"{what}: Rice parameter {param} is above {MAX_RICE}")
    bits = np.unpackbits(np.frombuffer(r.rest(), np.uint8), bitorder="little")
    zeros = np.flatnonzero(bits == 0)
    weights = 1 << np.arange(param)
    idx, pos, prev = [], 0, -1
    for _ in range(count):
        z = np.searchsorted(zeros, pos)
        if z == zeros.size or zeros[z] + 1 + param > bits.size:
            raise DecodeError(f"{what}: the Rice-coded gaps end early ({len(idx)} of {count})")
        q = int(zeros[z]) - pos
        pos += q + 1
        low = int(bits[pos:pos + param] @ weights)
        pos += param
        prev = prev + 1 + (q << param) + low
        if prev >= size:
            raise DecodeError(f"{what}: index {prev} outside the tensor's {size} elements")
        idx.append(prev)
    if bits[pos:(pos + 7) // 8 * 8].any():
        raise DecodeError(f"{what}: the Rice-coded gaps' padding bits are not zero")
    r.take((pos + 7) // 8, f"{what} Rice-coded gaps")
    return np.array(idx, np.int64)


def decode_indices(r, count, size, what, *, rice=True):
    coding = r.u8(f"{what} index coding")
    if coding == GAPS:
        idx, prev = [], -1
        for _ in range(count):
            prev = prev + 1 + r.varint(f"{what} index gap", limit=size)
            if prev >= size:
                raise DecodeError(f"{what}: index {prev} outside the tensor's {size} elements")
            idx.append(prev)
        return np.array(idx, np.int64)
    if coding == BITMAP:
        bits = np.unpackbits(np.frombuffer(r.take((size + 7) // 8, f"{what} bitmap"), np.uint8),
                             bitorder="little")
        if bits[size:].any():
            raise DecodeError(f"{what}: bitmap bits set past the tensor's {size} elements")
        idx = np.flatnonzero(bits[:size])
        if idx.size != count:
            raise DecodeError(f"{what}: bitmap has {idx.size} indices, header says {count}")
        return idx
    if coding == RICE and rice:
        return _decode_rice(r, count, size, what)
    raise DecodeError(f"{what}: unknown index coding {coding}")


def trailing_zeros(values):
    """The largest ``s`` (at most 31) such that every value is a multiple of ``2**s``."""
    acc = 0
    for v in np.asarray(values, np.int64):
        acc |= int(v)
    s = 0
    while s < 31 and acc and not (acc >> s) & 1:
        s += 1
    return s


def bits_needed(values):
    """Two's-complement width that holds every value (at least 1)."""
    values = np.asarray(values, np.int64)
    if values.size == 0:
        return 1
    lo, hi = int(values.min()), int(values.max())
    b = 1
    while not (-(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1):
        b += 1
    return b


def pack_signed(values, bits):
    """``values`` as ``bits``-bit two's complement, LSB first, bytes padded with zeros."""
    v = np.asarray(values, np.int64) & ((1 << bits) - 1)
    bitarr = ((v[:, None] >> np.arange(bits)) & 1).astype(np.uint8).ravel()
    return np.packbits(bitarr, bitorder="little").tobytes()


def unpack_signed(data, count, bits, what):
    nbytes = (count * bits + 7) // 8
    if len(data) != nbytes:
        raise DecodeError(f"{what}: {len(data)} bytes of packed values, expected {nbytes}")
    arr = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
    if arr[count * bits:].any():
        raise DecodeError(f"{what}: padding bits are not zero")
    v = arr[:count * bits].reshape(count, bits).astype(np.int64) << np.arange(bits)
    v = v.sum(axis=1)
    return np.where(v >> (bits - 1) & 1, v - (1 << bits), v)
