"""The core's delta port: weight records into a shadow bank, swapped in atomically.

Golden twin of ``hw.delta_apply.DeltaApply``, with the same parameters (``depth``,
``init``). Two banks of ``depth`` int8 weights; the core reads the *active* one. A record
is ``(op, arg)``:

- ``BEGIN`` (1): copy the active bank into the shadow bank (``depth`` cycles in hardware),
  start a new checksum and count;
- ``DATA`` (0), ``arg = addr | (value & 0xFF) << 16``: ``shadow[addr] = value``; the record's
  three bytes (address little endian, value) enter the CRC-32 and the count;
- ``COMMIT`` (2), ``arg = crc32 | count << 32``: when the CRC-32 (``zlib.crc32``) of the
  DATA records since BEGIN and their count both match, the banks swap (the shadow becomes
  active) in one step; otherwise nothing changes and the status says why;
- ``ABORT`` (3): drop the update.

A DATA or COMMIT outside an open update, or a DATA address outside the bank, is a protocol
error: the update (if any) is dropped, the active bank is untouched. A reset drops an open
update and clears the status and the update counter; it keeps both banks and which one is
active. ``records_for(old, new)`` makes
the records of an update.
"""

import zlib

import numpy as np

import spec.params
from spec.delta_port import STATUS_TEXT, RecordOp, Status

from .requant import check_range

DATA, BEGIN, COMMIT, ABORT = RecordOp  # (spec.delta_port: one source with the hardware)
NONE, COMMITTED, BAD_CHECKSUM, BAD_COUNT, PROTOCOL, ABORTED = Status
STATUS = tuple(STATUS_TEXT[s] for s in Status)


def check_depth(depth):
    return spec.params.delta_port(depth=depth)["depth"]


def record_bytes(addr, value):
    """The three bytes of a DATA record that enter the checksum."""
    return bytes([addr & 0xFF, addr >> 8 & 0xFF, value & 0xFF])


def data_record(addr, value):
    return (DATA, int(addr) | (int(value) & 0xFF) << 16)


def records_for(old, new, *, begin=True, commit=True):
    """The records that turn weight image ``old`` into ``new`` (changed addresses only)."""
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
    """The architectural state: both banks, which is active, the open update, the status."""

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
        return self.banks[self.active]

    def reset(self):
        """Drops an open update and clears the status and the update counter; the banks and
        which one is active stay."""
        self.open, self.status, self.updates = False, NONE, 0

    def record(self, op, arg):
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
