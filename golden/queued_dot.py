"""The cycle model of a carry-over dot-product engine: lane groups with pair queues.

A design candidate for the engine that keeps its multipliers busy across beats (issue 25;
docs/sparse_dot.md, "Carrying work over between beats"). Its values are those of
``golden.sparse_dot.sparse_dot`` (the schedule does not change a sum); this module gives its
cycles. Its RTL: ``hw.queued_dot.QueuedDotProduct``.

The engine: ``lanes`` lanes in ``slots`` groups of ``lanes // slots`` neighbouring lanes,
one multiplier per group, and per group a queue of up to ``depth`` pairs (a pair is
*effectual* when both operands are non-zero; only those enter a queue). In each cycle ``t``:

- the front end takes up to ``front`` beats, in order, each only if every group's queue has
  room for its effectual pairs: ``occ[k] + pairs already taken this cycle + the beat's
  pairs of group k <= depth``, with ``occ[k]`` the queue's occupancy at the start of the
  cycle (a pop in this cycle frees its place from the next: a comparison on registers);
- each multiplier ``k`` multiplies the head of its own queue when it holds a pair at the
  start of the cycle; with ``lookaside`` ``r`` > 0, a multiplier whose own queue is empty
  takes the *second* pair of the first of the next ``r`` groups' queues (``k + 1``, ...,
  ``k + r`` modulo ``slots``) that holds two or more and whose second pair no multiplier
  before ``k`` (in index order) took this cycle; so each queue gives at most two pairs a
  cycle, to its owner and to one of the ``r`` multipliers before it;
- pairs taken in cycle ``t`` can be multiplied from cycle ``t + 1``.

That lookaside rule is ``borrow="chain"`` (the RTL's): a multiplier turned away by a queue
lent already tries the next, so each multiplier's choice waits for those before it (a
chain through all ``slots``). ``borrow="nearest"``: a multiplier whose queue is empty asks
the first of its next ``r`` queues that holds two or more pairs, whatever the others ask; a
queue asked by several lends its second pair to the nearest (``k + 1`` before ``k + 2``),
and the others multiply nothing this cycle (each choice depends on the ``r`` before it
only).

A beat without effectual pairs still takes its place in the front end (one of ``front`` a
cycle). A vector is *done* in the cycle its last pair is multiplied (or in the cycle its
last beat is taken, if no pair is left). Its result *leaves* (in order, one a cycle, the
output always ready) ``latency`` cycles after it is done at the earliest: ``leave[v] =
max(done[v] + latency, leave[v - 1] + 1)``. With ``tags`` (the vector numbers the RTL
keeps), a vector holds a number from the cycle its first beat is taken to the cycle its
result leaves, and a beat that starts a vector is taken only while a number is free at
the start of the cycle (after the vectors started earlier in the same cycle). The
stream's cycles run from cycle 0 (the first beat offered) to the cycle after the last pair
is multiplied (the input always valid unless ``arrive`` says when each beat comes).

Efficiency (issue 25): ``eta = ideal / cycles`` with ``ideal = max(ceil(effectual /
slots), ceil(beats / front))``.
"""

from dataclasses import dataclass

import numpy as np

from sparq.spec import params as spec_params


def check_params(**params):
    """The parameters, checked (``spec.params.queued_dot``, shared with the RTL)."""
    return spec_params.queued_dot(**params)


@dataclass
class QueuedRun:
    take: np.ndarray  # the cycle each beat is taken in
    done: np.ndarray  # the cycle each vector is done in
    leave: np.ndarray  # the cycle each vector's result leaves
    cycles: int  # the stream's cycles (cycle 0 to the one after the last multiply)
    effectual: int  # pairs multiplied
    busy: np.ndarray  # per multiplier: cycles it multiplied a pair


def queued_cycles(nz, last=None, *, lanes, slots, depth=8, lookaside=1, front=1, tags=None,
                  latency=2, arrive=None, borrow="chain"):
    """Run a stream of beats through the model. ``nz``: bools (beats, lanes), the effectual
    pairs; ``last``: bools (beats,), the beats that end a vector (default: every beat;
    the final beat must be one); ``arrive``: ints (beats,), non-decreasing, the first cycle
    each beat is offered to the front end (default: all from cycle 0, the input always
    valid; the RTL's testbenches give the cycles their random producers offered them).
    ``borrow``: the lookaside's rule (the module's docstring). Returns a ``QueuedRun``."""
    check_params(lanes=lanes, slots=slots, depth=depth, lookaside=lookaside, front=front,
                 tags=tags, latency=latency, borrow=borrow)
    nz = np.asarray(nz, bool)
    if nz.ndim != 2 or nz.shape[1] != lanes:
        raise ValueError(f"nz must be (beats, lanes={lanes}), got shape {nz.shape}")
    beats = nz.shape[0]
    last = np.ones(beats, bool) if last is None else np.asarray(last, bool)
    if last.shape != (beats,):
        raise ValueError(f"last must have shape ({beats},), got {last.shape}")
    if beats and not last[-1]:
        raise ValueError("the final beat must be last: a vector is left unfinished")
    arrive = np.zeros(beats, np.int64) if arrive is None else np.asarray(arrive, np.int64)
    if arrive.shape != (beats,):
        raise ValueError(f"arrive must have shape ({beats},), got {arrive.shape}")
    if beats and (arrive[0] < 0 or np.any(np.diff(arrive) < 0)):
        k = 0 if arrive[0] < 0 else int(np.flatnonzero(np.diff(arrive) < 0)[0]) + 1
        raise ValueError(f"arrive must be non-decreasing cycles from 0: beat {k} arrives at "
                         f"{int(arrive[k])}" + (f", after {int(arrive[k - 1])}" if k else ""))
    per = nz.reshape(beats, slots, lanes // slots).sum(axis=2)  # pairs per beat and group
    vec = np.cumsum(last) - last  # each beat's vector
    # each queue as a list of the vectors of its pairs (oldest first)
    queues = [[] for _ in range(slots)]
    take = np.zeros(beats, np.int64)
    done = np.full(int(last.sum()), -1, np.int64)  # (-1: not yet)
    left = np.zeros(len(done), np.int64)  # pairs of each vector not yet multiplied
    closed = np.zeros(len(done), bool)  # its last beat is taken
    out = _Results(done, latency)
    busy = np.zeros(slots, np.int64)
    i = t = 0
    while i < beats or any(queues):
        occ = [len(q) for q in queues]
        pops = _issue(occ, slots, lookaside, borrow)  # (queue, position, multiplier)
        for q, pos, k in sorted(pops, key=lambda p: -p[1]):  # (second before head)
            v = queues[q].pop(pos)
            busy[k] += 1
            left[v] -= 1
            if left[v] == 0 and closed[v]:
                out.done(v, t)
        added = np.zeros(slots, np.int64)
        taken, held = 0, out.held(t)  # (vector numbers held at the start of the cycle)
        while i < beats and taken < front and arrive[i] <= t and all(
                occ[k] + added[k] + per[i, k] <= depth for k in range(slots)):
            v = vec[i]
            starts = i == 0 or last[i - 1]
            if starts and tags is not None and held >= tags:
                break
            held += starts
            for k in range(slots):
                queues[k].extend([v] * int(per[i, k]))
            added += per[i]
            left[v] += int(per[i].sum())
            take[i] = t
            closed[v] = last[i]
            if last[i] and left[v] == 0:
                out.done(v, t)
            if starts:
                out.start(v)
            i, taken = i + 1, taken + 1
        t += 1
    return QueuedRun(take=take, done=done, leave=out.leave, cycles=t,
                     effectual=int(per.sum()), busy=busy)


def _issue(occ, slots, lookaside, borrow):
    """The pairs multiplied in a cycle, as (queue, position 0 or 1, multiplier): each
    multiplier its queue's head; one whose queue is empty a second pair, by ``borrow``."""
    pops = [(k, 0, k) for k in range(slots) if occ[k]]
    lent = [False] * slots  # (chain) the queue's second pair is taken
    asks = {}  # (nearest) queue -> (distance, multiplier) of those asking it
    for k in (k for k in range(slots) if not occ[k]):
        for s in range(1, lookaside + 1):
            j = (k + s) % slots
            if occ[j] >= 2 and not lent[j]:
                if borrow == "chain":
                    pops.append((j, 1, k))
                    lent[j] = True
                else:
                    asks.setdefault(j, []).append((s, k))
                break
    pops += [(j, 1, min(a)[1]) for j, a in asks.items()]
    return pops


class _Results:
    """The vectors' ``done`` cycles (an array, -1 until done: written here), each one's
    leave cycle once it and every vector before it are done (``leave[v] = max(done[v] +
    latency, leave[v - 1] + 1)``), and the vector numbers held at the start of a cycle
    (started, result not yet left)."""

    def __init__(self, done, latency):
        self.latency, self.started, self.next, self.freed = latency, 0, 0, 0
        self.done_at = done
        self.leave = np.full(len(done), -1, np.int64)

    def start(self, v):
        self.started = v + 1

    def done(self, v, t):
        self.done_at[v] = t
        while self.next < len(self.leave) and self.done_at[self.next] >= 0:
            v = self.next
            before = self.leave[v - 1] + 1 if v else 0
            self.leave[v] = max(self.done_at[v] + self.latency, before)
            self.next += 1

    def held(self, t):
        """Vectors started whose result has not left before cycle ``t`` (``t`` never
        decreases; results leave in order)."""
        while self.freed < self.next and self.leave[self.freed] < t:
            self.freed += 1
        return self.started - self.freed


def ideal_cycles(effectual, beats, *, slots, front=1):
    """``max(ceil(effectual / slots), ceil(beats / front))``: no engine with ``slots``
    multipliers and a front end of ``front`` beats a cycle does better."""
    return max(-(-int(effectual) // slots), -(-int(beats) // front))


def efficiency(cycles, effectual, beats, *, slots, front=1):
    """``eta = ideal_cycles / cycles`` (1.0: every multiplier busy, or the front end full)."""
    if int(cycles) < 1:
        raise ValueError(f"cycles must be positive (a stream of at least one beat), not "
                         f"{cycles!r}")
    return ideal_cycles(effectual, beats, slots=slots, front=front) / cycles
