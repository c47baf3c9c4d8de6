"""The sparq delta file: make, parse and apply to bytes (docs/delta.md has the byte layout).

    header   magic "SPQD", version 2 (1 is read too), flags (bit 0: signed), base SHA-256,
             target SHA-256, counter (u64), payload length (u32)     82 bytes, little endian
    payload  zstd frame of the body (version 1: with its content checksum):
             tensor count, then per changed tensor (in name order): name, dtype, shape,
             number of changed elements, their flat indices (gap-coded varints,
             Rice-coded gaps or a bitmap, whichever is smallest), the width and the shift
             of the differences and the differences bit-packed, shifted right by the
             shift (differences that are multiples of 2**s cost s bits less each).
             Unchanged tensors are not listed: the base and target hashes pin the whole
             model.
    check    the first 8 bytes of SHA-256(header + payload): any changed byte is noticed
             even in an unsigned file
    sig      Ed25519 signature of header + payload + check (64 bytes), when flag bit 0 is set

Every reader check raises ``DeltaError`` with a message that names the problem.
"""

import struct
from dataclasses import dataclass

import numpy as np

from . import codec
from .model_file import ModelFileError, dump, parse, sha256

MAGIC = b"SPQD"
VERSION = 2
READABLE = (1, 2)  # version 1: no Rice-coded gaps, no difference shift
FLAG_SIGNED = 1
HEADER = struct.Struct("<4sBB32s32sQI")
SIG_BYTES = 64
CHECK_BYTES = 8
DTYPES = {0: np.dtype(np.int8), 1: np.dtype(np.int32), 2: np.dtype(np.float32),
          3: np.dtype(np.int16)}
CODES = {v: k for k, v in DTYPES.items()}
MAX_BODY = 256 << 20  # a decompressed body larger than this is refused


class DeltaError(ValueError):
    """A delta that cannot be made, read or applied; the message says why."""


@dataclass
class TensorDelta:
    name: str
    dtype: np.dtype
    shape: tuple
    indices: np.ndarray  # flat indices of the changed elements
    diffs: np.ndarray  # target - base at those indices


@dataclass
class Delta:
    base_sha256: bytes
    target_sha256: bytes
    counter: int
    signed: bool
    tensors: list
    version: int = VERSION

    @property
    def changed(self):
        return sum(int(t.indices.size) for t in self.tensors)


def _model(data, which):
    try:
        return parse(data)
    except ModelFileError as e:
        raise DeltaError(f"the {which} model: {e}") from None


def make_delta(old, new, *, signing_key=None, level=19, version=VERSION):
    """The delta file (bytes) that turns model bytes ``old`` into ``new``.

    The counter is the new model's; it must be above the old one's. Both models must have
    the same tensors (names, shapes, dtypes) and equal float tensors (a weight delta does
    not carry quantization-parameter changes). ``signing_key``: an Ed25519 private key
    (``cryptography``) to sign the file. ``version``: the format version to write (1 for
    readers that predate version 2).
    """
    import zstandard

    if version not in READABLE:
        raise DeltaError(f"format version {version!r} cannot be written; known: "
                         f"{', '.join(map(str, READABLE))}")
    ot, oc = _model(old, "old")
    nt, nc = _model(new, "new")
    if nc <= oc:
        raise DeltaError(f"the new model's counter {nc} must be above the old one's {oc}")
    if sorted(ot) != sorted(nt):
        raise DeltaError(f"the models' tensors differ: {sorted(set(ot) ^ set(nt))}")
    entries = bytearray()
    listed = 0
    for name in sorted(nt):
        a, b = ot[name], nt[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            raise DeltaError(f"tensor {name}: {a.dtype}{list(a.shape)} became "
                             f"{b.dtype}{list(b.shape)}; a delta keeps the structure")
        if b.dtype not in CODES:
            raise DeltaError(f"tensor {name}: dtype {b.dtype} is not supported")
        if b.dtype.kind == "f":
            if a.tobytes() != b.tobytes():
                raise DeltaError(f"tensor {name} (quantization parameters) changed; a weight "
                                 "delta cannot carry that: ship the full model")
            continue
        d = b.astype(np.int64).ravel() - a.astype(np.int64).ravel()
        idx = np.flatnonzero(d)
        if not idx.size:
            continue
        diff = d[idx]
        listed += 1
        name_b = name.encode()
        codec.put_varint(entries, len(name_b))
        entries += name_b
        entries.append(CODES[b.dtype])
        entries.append(len(b.shape))
        for s in b.shape:
            codec.put_varint(entries, s)
        codec.put_varint(entries, idx.size)
        codec.encode_indices(entries, idx, b.size, rice=version >= 2)
        shift = codec.trailing_zeros(diff) if version >= 2 else 0
        bits = codec.bits_needed(diff >> shift)
        entries.append(bits)
        if version >= 2:
            entries.append(shift)
        entries += codec.pack_signed(diff >> shift, bits)
    body = bytearray()
    codec.put_varint(body, listed)
    body += entries
    # version 2 leaves out the frame's content checksum: the check bytes (and a signature)
    # cover the payload, the target hash the patched model
    payload = zstandard.ZstdCompressor(level=level, write_checksum=version == 1).compress(
        bytes(body))
    flags = FLAG_SIGNED if signing_key is not None else 0
    head = HEADER.pack(MAGIC, version, flags, sha256(old), sha256(new), nc, len(payload))
    data = head + payload
    data += sha256(data)[:CHECK_BYTES]
    if signing_key is not None:
        data += signing_key.sign(data)
    return data


def parse_delta(data, *, public_key=None, require_signature=False):
    """Read and check a delta file; returns a ``Delta``.

    With ``public_key`` (Ed25519, ``cryptography``) the file must be signed by it; with
    ``require_signature`` an unsigned file is refused even without a key to check it.
    """
    import zstandard

    data = bytes(data)
    if len(data) < HEADER.size:
        raise DeltaError(f"{len(data)} bytes: shorter than the {HEADER.size}-byte header "
                         "(truncated?)")
    magic, version, flags, base, target, counter, plen = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DeltaError(f"bad magic {magic!r}: not a sparq delta file")
    if version not in READABLE:
        raise DeltaError(f"format version {version} is not supported (this reader: "
                         f"{', '.join(map(str, READABLE))})")
    if flags & ~FLAG_SIGNED:
        raise DeltaError(f"unknown flags {flags:#04x}")
    signed = bool(flags & FLAG_SIGNED)
    want = HEADER.size + plen + CHECK_BYTES + (SIG_BYTES if signed else 0)
    if len(data) != want:
        raise DeltaError(f"{len(data)} bytes, the header promises {want} "
                         f"({'truncated' if len(data) < want else 'trailing data'})")
    end = HEADER.size + plen
    if sha256(data[:end])[:CHECK_BYTES] != data[end:end + CHECK_BYTES]:
        raise DeltaError("the file's check bytes do not match its contents (corrupted)")
    if signed and public_key is not None:
        from cryptography.exceptions import InvalidSignature
        try:
            public_key.verify(data[-SIG_BYTES:], data[:-SIG_BYTES])
        except InvalidSignature:
            raise DeltaError("the signature does not verify with the given public key "
                             "(tampered, or signed by another key)") from None
    elif public_key is not None or require_signature:
        raise DeltaError("the delta is not signed, and a signature is required")
    payload = data[HEADER.size:HEADER.size + plen]
    try:
        body = zstandard.ZstdDecompressor().decompress(payload, max_output_size=MAX_BODY)
    except zstandard.ZstdError as e:
        raise DeltaError(f"the compressed payload is corrupt: {e}") from None
    if len(body) > MAX_BODY:
        raise DeltaError(f"the payload expands past {MAX_BODY} bytes")
    try:
        tensors = _parse_body(body, version)
    except codec.DecodeError as e:
        raise DeltaError(f"malformed payload: {e}") from None
    return Delta(base, target, counter, signed, tensors, version)


def _parse_body(body, version):
    r = codec.Reader(body)
    n = r.varint("tensor count", limit=1 << 16)
    tensors, last = [], None
    for _ in range(n):
        name_len = r.varint("name length", limit=1 << 10)
        try:
            name = r.take(name_len, "tensor name").decode()
        except UnicodeDecodeError:
            raise codec.DecodeError("a tensor name is not UTF-8") from None
        if last is not None and name <= last:
            raise codec.DecodeError(f"tensor {name!r} is out of order or repeated")
        last = name
        code = r.u8(f"{name!r} dtype")
        if code not in DTYPES:
            raise codec.DecodeError(f"{name!r}: unknown dtype code {code}")
        ndim = r.u8(f"{name!r} rank")
        if ndim > 8:
            raise codec.DecodeError(f"{name!r}: rank {ndim}")
        shape = tuple(r.varint(f"{name!r} dimension", limit=1 << 31) for _ in range(ndim))
        size = int(np.prod(shape, dtype=np.int64))
        if size > MAX_BODY:
            raise codec.DecodeError(f"{name!r}: {size} elements")
        count = r.varint(f"{name!r} change count", limit=size + 1)
        if count == 0:
            raise codec.DecodeError(f"{name!r}: listed with no change")
        if DTYPES[code].kind == "f":
            raise codec.DecodeError(f"{name!r}: changes to a float tensor")
        idx = codec.decode_indices(r, count, size, repr(name), rice=version >= 2)
        bits = r.u8(f"{name!r} difference width")
        if not 1 <= bits <= 33:
            raise codec.DecodeError(f"{name!r}: difference width {bits}")
        shift = r.u8(f"{name!r} difference shift") if version >= 2 else 0
        if shift > 31:
            raise codec.DecodeError(f"{name!r}: difference shift {shift}")
        diffs = codec.unpack_signed(r.take((count * bits + 7) // 8, f"{name!r} differences"),
                                    count, bits, repr(name)) << shift
        if np.any(diffs == 0):
            raise codec.DecodeError(f"{name!r}: a listed change of 0")
        tensors.append(TensorDelta(name, DTYPES[code], shape, idx, diffs))
    r.done()
    return tensors


def apply_to_bytes(base, delta):
    """The target model's bytes: ``delta`` applied to model bytes ``base``, every check
    done (base hash, counter, tensor table, value ranges, target hash)."""
    if sha256(base) != delta.base_sha256:
        raise DeltaError(f"the model is not this delta's base (SHA-256 "
                         f"{sha256(base).hex()[:16]}..., the delta wants "
                         f"{delta.base_sha256.hex()[:16]}...)")
    tensors, counter = _model(base, "installed")
    if delta.counter <= counter:
        raise DeltaError(f"the delta's counter {delta.counter} is not above the installed "
                         f"model's {counter}: a replay or a downgrade")
    out = dict(tensors)
    for td in delta.tensors:
        if td.name not in tensors:
            raise DeltaError(f"the delta patches tensor {td.name!r}, which the model lacks")
        a = tensors[td.name]
        if a.shape != td.shape or a.dtype != td.dtype:
            raise DeltaError(f"tensor {td.name}: the model has {a.dtype}{list(a.shape)}, the "
                             f"delta {td.dtype}{list(td.shape)}")
        flat = a.astype(np.int64).ravel()
        flat[td.indices] += td.diffs
        info = np.iinfo(a.dtype)
        if flat.min() < info.min or flat.max() > info.max:
            raise DeltaError(f"tensor {td.name}: a patched value leaves {a.dtype}")
        out[td.name] = flat.astype(a.dtype).reshape(a.shape)
    new = dump(out, delta.counter)
    if sha256(new) != delta.target_sha256:
        raise DeltaError("the patched model does not match the delta's target SHA-256")
    return new
