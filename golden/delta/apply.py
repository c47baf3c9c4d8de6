"""Apply a delta file to a model file on the endpoint, atomically.

``apply_delta(model_path, delta_bytes, public_key=None)``: read the installed model, check
the delta (signature, base hash, counter, payload), patch a copy in memory, check the target
hash, then replace the file: write a temporary file beside it, fsync it, rename it over the
model (atomic on POSIX), fsync the directory. Any failure before the rename leaves the model
byte-identical (and removes the temporary file); after the rename the new model is in place.

The file operations go through an ``Ops`` object so that tests can fail each step.
"""

import os
import pathlib

from .fileformat import DeltaError, apply_to_bytes, parse_delta


class Ops:
    """The file-system steps of an update (each one a place where power can fail)."""

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def open_tmp(self, path):
        return open(path, "xb")

    def write(self, f, data):
        f.write(data)

    def fsync(self, f):
        f.flush()
        os.fsync(f.fileno())

    def close(self, f):
        f.close()

    def rename(self, src, dst):
        os.replace(src, dst)

    def fsync_dir(self, path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, path):
        os.unlink(path)


def apply_delta(model_path, delta_bytes, *, public_key=None, require_signature=False,
                ops=None):
    """Verify ``delta_bytes`` against the model at ``model_path`` and install the result.

    Returns the parsed ``Delta``. Raises ``DeltaError`` (the model untouched) when anything
    does not check out, ``OSError`` if the file system fails (the model is then the old one
    or, once renamed, the new one; never a mix).
    """
    ops = ops or Ops()
    path = pathlib.Path(model_path)
    delta = parse_delta(delta_bytes, public_key=public_key, require_signature=require_signature)
    try:
        base = ops.read(path)
    except FileNotFoundError:
        raise DeltaError(f"no model at {path}") from None
    new = apply_to_bytes(base, delta)
    tmp = path.with_name(f".{path.name}.sparq-delta.tmp")
    if tmp.exists():  # left by an update that failed before its rename
        ops.remove(tmp)
    f = ops.open_tmp(tmp)
    try:
        try:
            ops.write(f, new)
            ops.fsync(f)
        finally:
            ops.close(f)
        ops.rename(tmp, path)
    except BaseException:
        if tmp.exists():
            try:
                ops.remove(tmp)
            except OSError:
                pass
        raise
    ops.fsync_dir(path.parent)
    return delta


def verify_delta(model_path, delta_bytes, *, public_key=None, require_signature=False):
    """All of ``apply_delta``'s checks without writing anything; returns the ``Delta``."""
    delta = parse_delta(delta_bytes, public_key=public_key, require_signature=require_signature)
    with open(model_path, "rb") as f:
        apply_to_bytes(f.read(), delta)
    return delta
