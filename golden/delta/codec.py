"""Byte-level codings of the delta file: LEB128 varints, gap-coded or bitmap index sets, and
bit-packed two's-complement integers. Readers raise ``DecodeError`` on malformed input."""

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


def encode_indices(out, idx, size):
    """Changed flat indices (sorted, unique) as gaps or a bitmap, whichever is smaller.
    Writes a coding byte (1 gaps, 2 bitmap), then the set."""
    idx = np.asarray(idx, np.int64)
    gaps = bytearray()
    prev = -1
    for i in idx:
        put_varint(gaps, int(i) - prev - 1)
        prev = int(i)
    bitmap = np.packbits(np.isin(np.arange(size), idx), bitorder="little").tobytes()
    if len(gaps) <= len(bitmap):
        out.append(1)
        out += gaps
    else:
        out.append(2)
        out += bitmap


def decode_indices(r, count, size, what):
    coding = r.u8(f"{what} index coding")
    if coding == 1:
        idx, prev = [], -1
        for _ in range(count):
            prev = prev + 1 + r.varint(f"{what} index gap", limit=size)
            if prev >= size:
                raise DecodeError(f"{what}: index {prev} outside the tensor's {size} elements")
            idx.append(prev)
        return np.array(idx, np.int64)
    if coding == 2:
        bits = np.unpackbits(np.frombuffer(r.take((size + 7) // 8, f"{what} bitmap"), np.uint8),
                             bitorder="little")
        if bits[size:].any():
            raise DecodeError(f"{what}: bitmap bits set past the tensor's {size} elements")
        idx = np.flatnonzero(bits[:size])
        if idx.size != count:
            raise DecodeError(f"{what}: bitmap has {idx.size} indices, header says {count}")
        return idx
    raise DecodeError(f"{what}: unknown index coding {coding}")


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
