"""The delta port's encodings, one source for ``hw.delta_apply.DeltaApply`` and its golden
twin ``golden.delta_apply.DeltaPort``: the record operations (the ``op`` field, 2 bits) and
the status codes (the ``status`` output, 3 bits)."""

import enum


class RecordOp(enum.IntEnum):
    """A delta record's operation (``golden.delta_apply`` describes each)."""
    DATA = 0
    BEGIN = 1
    COMMIT = 2
    ABORT = 3


class Status(enum.IntEnum):
    """The delta port's status after a record (``status``: how the last update ended)."""
    NONE = 0
    COMMITTED = 1
    BAD_CHECKSUM = 2
    BAD_COUNT = 3
    PROTOCOL = 4
    ABORTED = 5


OP_BITS = 2  # the op field's width
STATUS_BITS = 3  # the status output's width
STATUS_TEXT = {Status.NONE: "none", Status.COMMITTED: "committed",
               Status.BAD_CHECKSUM: "bad checksum", Status.BAD_COUNT: "bad count",
               Status.PROTOCOL: "protocol error", Status.ABORTED: "aborted"}
assert max(RecordOp) < 1 << OP_BITS and max(Status) < 1 << STATUS_BITS
