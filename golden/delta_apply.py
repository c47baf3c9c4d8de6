"""The core's delta port: weight records into a shadow bank, swapped in atomically.

Golden twin of ``hw.delta_apply.DeltaApply``'s architectural state (both banks, which one is
active, ``open``, ``status``, ``updates``), not of its timing. Its parameters are
``depth`` (no default here) and ``init``, which must hold exactly ``depth`` weights (the
hardware pads a shorter ``init`` with zeros); the hardware's ``lanes`` only sets the width of
its read port and has no counterpart here. Two banks of ``depth`` int8 weights; the core
reads the *active* one. A record is ``(op, arg)`` (``spec.delta_port.RecordOp``; ``arg``
is 48 bits in hardware):

- ``BEGIN`` (1): copy the active bank into the shadow bank (the hardware's ``records.ready``
  is low for ``depth/lanes + 2`` cycles meanwhile), start a new checksum and count; a
  BEGIN inside an open update starts it again;
- ``DATA`` (0), ``arg = addr | (value & 0xFF) << 16``: ``shadow[addr] = value`` (bits 0-15
  the address, bits 16-23 the value as a signed byte, higher bits ignored); the record's
  three bytes (address little endian, value) enter the CRC-32 and the count (modulo
  2**16);
- ``COMMIT`` (2), ``arg = crc32 | count << 32``: when the CRC-32 (``zlib.crc32``) of the
  DATA records since BEGIN and their count (bits 32-47, modulo 2**16) both match, the banks
  swap (the shadow becomes active) in one step and ``updates`` counts it; otherwise the
  update is dropped, the active bank is untouched, and the status says why (a bad checksum
  before a bad count);
- ``ABORT`` (3): drop the update (status ``ABORTED``, open update or not).

A DATA or COMMIT outside an open update, or a DATA address outside the bank, is a protocol
error: the update (if any) is dropped, the active bank is untouched. An ``op`` outside 0..3
raises ``ValueError`` (the hardware's ``op`` field is 2 bits). A reset drops an open update
and clears the status and the update counter; it keeps both banks and which one is active.
``records_for(old, new)`` makes the records of an update.
"""

import zlib

import numpy as np

from sparq.spec import params as spec_params
from sparq.spec.delta_port import STATUS_TEXT, RecordOp, Status

from .requant import check_range

DATA, BEGIN, COMMIT, ABORT = RecordOp  # (spec.delta_port: one source with the hardware)
NONE, COMMITTED, BAD_CHECKSUM, BAD_COUNT, PROTOCOL, ABORTED = Status
STATUS = tuple(STATUS_TEXT[s] for s in Status)


def check_depth(depth):
    """``depth`` if it is a valid bank size (``spec.params.delta_port``), else ValueError."""
    return spec_params.delta_port(depth=depth)["depth"]


def record_bytes(addr, value):
    """The three bytes of a DATA record that enter the checksum: ``addr`` (16 bits) little
    endian, then ``value`` as a two's complement byte."""
    return bytes([addr & 0xFF, addr >> 8 & 0xFF, value & 0xFF])


def data_record(addr, value):
    """The DATA record that writes int8 ``value`` at ``addr``."""
    return (DATA, int(addr) | (int(value) & 0xFF) << 16)


def records_for(old, new, *, begin=True, commit=True):
    """The records that turn weight image ``old`` into ``new``: ``(BEGIN, 0)`` (unless
    ``begin=False``), a DATA record per changed address in increasing order, and ``(COMMIT,
    crc | n << 32)`` (unless ``commit=False``), ``crc`` the ``zlib.crc32`` of those
    records' ``record_bytes`` and ``n`` their number. Both images are int8 (else
    ValueError), of the same size, which must be a valid ``depth``."""
    old = check_range("old", old, -128, 127).ravel()
    new = check_range("new", new, -128, 127).ravel()
    if old.shape != new.shape:
        raise ValueError(f"the images differ in size: {old.size} and {new.size}")
    check_depth(old.size)
    recs = [(BEGIN, 0)] if begin else []
    crc, n = 0, 0
    for a in np.flatnonzero(old != new):
        recs.append(data_record(a, new[a]))
        crc = zlib.crc32(record_bytes(int(a), int(new[a])), crc)
        n += 1
    if commit:
        recs.append((COMMIT, crc | n << 32))
    return recs


class DeltaPort:
    """The architectural state: both banks, which is active (``active``), whether an update
    is open (``open``), its running ``crc`` and ``count``, ``status``
    (``spec.delta_port.Status``) and ``updates`` (updates committed since the last reset; a
    16-bit counter in hardware)."""

    def __init__(self, *, depth, init=None):
        self.depth = check_depth(depth)
        bank = np.zeros(depth, np.int64) if init is None else \
            check_range("init", init, -128, 127).ravel().copy()
        if bank.size != depth:
            raise ValueError(f"init has {bank.size} weights, depth is {depth}")
        self.banks = [bank, bank.copy()]
        self.active, self.open, self.updates, self.status = 0, False, 0, NONE
        self.crc, self.count = 0, 0

    @property
    def weights(self):
        """The active bank (the weights the core reads)."""
        return self.banks[self.active]

    def reset(self):
        """Drops an open update and clears the status and the update counter; the banks and
        which one is active stay."""
        self.open, self.status, self.updates = False, NONE, 0

    def record(self, op, arg):
        """Apply one record ``(op, arg)`` (see the module docstring); returns nothing."""
        if op == BEGIN:
            self.banks[1 - self.active][:] = self.banks[self.active]
            self.open, self.crc, self.count = True, 0, 0
        elif op == DATA:
            addr, value = arg & 0xFFFF, (arg >> 16 & 0xFF)
            value = value - 256 if value > 127 else value
            if not self.open or addr >= self.depth:
                self.open, self.status = False, PROTOCOL
                return
            self.banks[1 - self.active][addr] = value
            self.crc = zlib.crc32(record_bytes(addr, value), self.crc)
            self.count = (self.count + 1) & 0xFFFF
        elif op == COMMIT:
            if not self.open:
                self.status = PROTOCOL
                return
            self.open = False
            if (arg & 0xFFFFFFFF) != self.crc:
                self.status = BAD_CHECKSUM
            elif (arg >> 32 & 0xFFFF) != self.count:
                self.status = BAD_COUNT
            else:
                self.active, self.updates, self.status = 1 - self.active, self.updates + 1, \
                    COMMITTED
        elif op == ABORT:
            self.open, self.status = False, ABORTED
        else:
            raise ValueError(f"record op {op!r} is not one of 0..3")
