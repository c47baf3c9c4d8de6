"""Parameter checks shared by each block (hw/) and its golden twin (golden/).

Each function takes the block's keyword parameters, raises ``ValueError`` naming the bad
parameter and value, and returns the normalized parameter dict (the block's ``params``).
"""

REQUANT_MODES = ("tflite", "single", "prepost", "dual")
DOT_OUTPUTS = ("stream", "memory")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def int_in(name, value, lo, hi):
    """``value`` must be an int in [lo, hi]."""
    if not _is_int(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {value!r}")
    return value


def flag(name, value):
    """``value`` must be True or False (a bool: not 0 or 1)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return value


def requant(*, mode="tflite", m_bits=16, x_bits=18, short=False):
    """Requantizer: ``mode`` one of REQUANT_MODES (``dual``: tflite or single rounding chosen
    per accumulator); prepost widths ``m_bits``, ``x_bits``; ``short``: about half the
    pipeline registers (latency 5/4/4/5 for tflite/single/prepost/dual instead of
    9/8/7/9)."""
    if mode not in REQUANT_MODES:
        raise ValueError(f"mode must be one of {REQUANT_MODES}, not {mode!r}")
    return dict(mode=mode, m_bits=int_in("m_bits", m_bits, 2, 31),
                x_bits=int_in("x_bits", x_bits, 2, 32), short=flag("short", short))


# hw.requant's pipeline stages by mode (the Requantizer checks, when it is built, that it
# made this many): its latency is the ones that keep a register (requant_merged)
REQUANT_STAGES = {"tflite": 9, "single": 8, "prepost": 7, "dual": 9}


def requant_latency(*, mode="tflite", short=False, **_):
    """The Requantizer's latency (``hw.requant.Requantizer.latency``): cycles from an input
    transfer (``i.valid & i.ready``) to the cycle its result is valid on ``o`` while ``o``
    is not stalled (then also its output transfer): the registered stages of its pipeline,
    ``REQUANT_STAGES[mode]`` less the merged ones. 9/8/7 for tflite/single/prepost, 5/4/4
    with ``short``."""
    stages = REQUANT_STAGES[mode]
    return len([k for k in range(1, stages + 1) if k not in requant_merged(stages, short)])


# the stages that keep their register in a ``short`` Requantizer, by stage count (mode):
# the input's and the output's, and in between every other one, except that single mode's
# fine shift keeps its register rather than the coarse shift (the tail after it, saturation,
# rounding, zero point and clamp, is long enough alone: 82 MHz on ECP5 instead of 68)
_SHORT_KEPT = {9: {1, 3, 5, 7, 9}, 8: {1, 3, 6, 8}, 7: {1, 3, 5, 7}}


def requant_merged(stages, short):
    """The stages without a register in a ``short`` Requantizer (see ``_SHORT_KEPT``); the
    latency is ``ceil(stages / 2)``."""
    if not short:
        return set()
    return set(range(1, stages + 1)) - _SHORT_KEPT[stages]


def sparse_dot(*, lanes=8, slots=4, skip=True, output="stream", addr_width=8,
               level_widths=(2, 4, 8), bins=None):
    """SparseDotProduct: lanes N, multiplier slots M <= N, skipping, output kind, levels, and
    optionally multiplier bins ``{width: count}`` (then M is their total)."""
    int_in("lanes", lanes, 1, 64)
    most = lanes if bins is None else 2 * lanes  # a lane-local bin adds ``lanes`` slots
    if not _is_int(slots) or not 1 <= slots <= most:
        raise ValueError(f"slots must be an integer in [1, {most}] (lanes={lanes}), "
                         f"not {slots!r}")
    flag("skip", skip)
    if output not in DOT_OUTPUTS:
        raise ValueError(f"output must be one of {DOT_OUTPUTS}, not {output!r}")
    int_in("addr_width", addr_width, 1, 32)
    lw = tuple(level_widths)
    if len(lw) != 3 or not all(_is_int(b) and 1 <= b <= 8 for b in lw) or list(lw) != sorted(lw):
        raise ValueError(f"level_widths must be three increasing widths in [1, 8], "
                         f"not {level_widths!r}")
    if bins is not None:
        bins = multiplier_bins(bins, lw)
        if sum(bins.values()) != slots:
            raise ValueError(f"slots must equal the bins' total {sum(bins.values())} "
                             f"(bins={bins}), not {slots!r}")
        if not skip:
            raise ValueError("bins need skip=True (the dense baseline uses uniform slots)")
        if any(c > lanes for c in bins.values()):
            raise ValueError(f"a bin has more multipliers than the {lanes} lanes: {bins}")
        local = [w for w, c in bins.items() if c == lanes and w != max(lw)]
        if local and sum(c for w, c in bins.items() if w not in local and w != max(lw)):
            raise ValueError(f"a lane-local bin ({local[0]} bits, one multiplier per lane) "
                             f"goes with the widest bin only, not with {bins}")
    return dict(lanes=lanes, slots=slots, skip=skip, output=output, addr_width=addr_width,
                level_widths=lw, bins=bins)



BORROW_RULES = ("chain", "nearest")


def queued_dot(*, lanes, slots, depth, lookaside, front=1, tags=None, latency=2,
               borrow="chain"):
    """The carry-over engine (``golden.queued_dot``'s model, ``hw.queued_dot``'s RTL):
    ``lanes`` 1..64, ``slots`` dividing it, ``depth`` at least a group's lanes (a full beat
    of a group fits) and at most 64, ``lookaside`` 0 to ``slots - 1``, ``front`` 1..4,
    ``tags`` None (no limit) or 1..256, ``latency`` 1..8, ``borrow`` one of
    ``BORROW_RULES``."""
    int_in("lanes", lanes, 1, 64)
    int_in("slots", slots, 1, lanes)
    if lanes % slots:
        raise ValueError(f"slots must divide lanes={lanes}, not {slots!r}")
    int_in("depth", depth, lanes // slots, 64)
    int_in("lookaside", lookaside, 0, slots - 1)
    int_in("front", front, 1, 4)
    if tags is not None:
        int_in("tags", tags, 1, 256)
    int_in("latency", latency, 1, 8)
    if borrow not in BORROW_RULES:
        raise ValueError(f"borrow must be one of {BORROW_RULES}, not {borrow!r}")
    return dict(lanes=lanes, slots=slots, depth=depth, lookaside=lookaside, front=front,
                tags=tags, latency=latency, borrow=borrow)

# the dot-product engine's adder tree (hw.sparse_dot.adder_tree) has a register after every
# DOT_TREE_LEVELS_PER_STAGE-th level of additions, except after its last (the accumulator's
# adder follows it in the same cycle)
DOT_TREE_LEVELS_PER_STAGE = 2
# the engine's registers on every slot's path besides the tree's: the slot's operands, its
# product, and the output (``o``, or the memory write port, with the accumulator's sum)
DOT_FIXED_REGISTERS = 3


def adder_tree_levels(n):
    """The levels of additions of a balanced binary tree over ``n`` terms, ``ceil(log2 n)``
    (a level pairs neighbours, an odd last term passes through)."""
    levels = 0
    while n > 1:
        n = (n + 1) // 2
        levels += 1
    return levels


def adder_tree_registers(n, levels_per_stage=DOT_TREE_LEVELS_PER_STAGE):
    """The levels (1-based) of a balanced adder tree over ``n`` terms after which
    ``hw.sparse_dot.adder_tree`` places a register: every ``levels_per_stage``-th, but not
    after the last level."""
    return list(range(levels_per_stage, adder_tree_levels(n), levels_per_stage))


def sparse_dot_latency(**params):
    """The SparseDotProduct's latency (``hw.sparse_dot.SparseDotProduct.latency``) for its
    keyword parameters (``sparse_dot``).

    Its front end takes a beat in cycle ``s`` (the cycle after the beat's ``i`` transfer,
    or, when it is busy, the cycle it issues the previous beat's last step) and issues the
    beat's steps to the multipliers in cycles ``s+1 .. s+cost`` (``cost``: the beat's
    front-end cycles, golden.sparse_dot's cycle model; ``cycles`` counts them). The latency
    is the number of cycles from ``F = s + cost``, the cycle the front end issues the last
    step of a vector's last beat, to the cycle the vector's result is valid on ``o``
    (``wr_en`` with ``output="memory"``), while ``o`` is not stalled: ``o.valid`` is high in
    cycle ``F + latency``. A register per slot's operands, one per product, the adder tree's
    (``adder_tree_registers(slots)``) and the output's:
    ``DOT_FIXED_REGISTERS + len(adder_tree_registers(slots))``, so 3 for up to 4 slots, 4
    for 5 to 16, 5 for 17 to 64, 6 beyond; it depends on the slots (with bins, their total)
    only."""
    p = sparse_dot(**params)
    return DOT_FIXED_REGISTERS + len(adder_tree_registers(p["slots"]))


def multiplier_bins(bins, level_widths=(2, 4, 8)):
    """``bins`` maps a weight width to a multiplier count; the widest level needs one."""
    if not isinstance(bins, dict) or not bins:
        raise ValueError(f"bins must be a non-empty dict width -> count, not {bins!r}")
    for width, count in bins.items():
        if width not in level_widths:
            raise ValueError(f"bin width {width!r} is not one of the level widths "
                             f"{tuple(level_widths)}")
        if not _is_int(count) or count < 0:
            raise ValueError(f"bin {width} must have a count >= 0, not {count!r}")
    if bins.get(max(level_widths), 0) < 1:
        raise ValueError(f"bins need at least one {max(level_widths)}-bit multiplier, "
                         f"or the widest weights can never be multiplied: {bins!r}")
    return {w: bins.get(w, 0) for w in sorted(level_widths, reverse=True)}


def machine(*, lanes=16, x_depth=256, w_depth=4096, channels=64, prog_depth=256,
            x_zero_point=-128, mode="single", conv=False):
    """The sequencer's machine: block width ``lanes``, memory depths (activations, weights,
    parameter channels, program words) within the instruction fields, the activation zero
    point a program starts with, the requantizer mode, and ``conv``: the convolution
    extensions (``spec.isa.CONV_OPS`` and ``CONV_FLAGS``: nested loops, weight and channel
    strides, window DOTs, lane-accumulator banks, a REQ rounding chosen by SETL)."""
    int_in("lanes", lanes, 1, 64)
    if lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two (block alignment), not {lanes}")
    int_in("x_depth", x_depth, lanes, 1 << 14)
    int_in("w_depth", w_depth, lanes, 1 << 15)
    int_in("channels", channels, 1, 1 << 10)
    int_in("prog_depth", prog_depth, 2, 1 << 12)
    int_in("x_zero_point", x_zero_point, -128, 127)
    if mode not in REQUANT_MODES:
        raise ValueError(f"mode must be one of {REQUANT_MODES}, not {mode!r}")
    flag("conv", conv)
    return dict(lanes=lanes, x_depth=x_depth, w_depth=w_depth, channels=channels,
                prog_depth=prog_depth, x_zero_point=x_zero_point, mode=mode, conv=conv)


def delta_port(*, depth=4096, lanes=1):
    """DeltaApply / golden.delta_apply: ``depth`` weights per bank (16-bit record addresses),
    read in words of ``lanes`` (a power of two dividing ``depth``)."""
    int_in("depth", depth, 1, 1 << 16)
    int_in("lanes", lanes, 1, 64)
    if lanes & (lanes - 1) or depth % lanes:
        raise ValueError(f"lanes must be a power of two dividing depth={depth}, not {lanes}")
    return dict(depth=depth, lanes=lanes)


PARAM_RAMS = ("async", "sync")
# the cycles a convolution core's window DOT waits, once offered, before the DotFeeder takes
# it (its taps' arithmetic is registered, in two stages: ``hw.dot_feeder``'s ``window_wait``;
# ``golden.core``'s timing)
WINDOW_WAIT = 2


def check_hazard_words(hazard_words, words):
    """``hazard_words`` must be a power of two dividing the ``words`` activation words."""
    if not (_is_int(hazard_words) and hazard_words >= 1
            and hazard_words & (hazard_words - 1) == 0 and words % hazard_words == 0):
        raise ValueError(f"hazard_words must be a power of two dividing the {words} "
                         f"activation words, not {hazard_words!r}")
    return hazard_words


def dot_feeder(*, lanes=16, x_depth=256, w_depth=4096, prog_depth=512, hazard_words=1,
               writes_in_flight=9):
    """The core's DOT feeder (``hw.dot_feeder``): the machine's memories and program, the
    hazard regions, and the most activation writes (REQ results) in flight at once."""
    machine(lanes=lanes, x_depth=x_depth, w_depth=w_depth, prog_depth=prog_depth)
    check_hazard_words(hazard_words, x_depth // lanes)
    int_in("writes_in_flight", writes_in_flight, 1, 1 << 10)
    return dict(lanes=lanes, x_depth=x_depth, w_depth=w_depth, prog_depth=prog_depth,
                hazard_words=hazard_words, writes_in_flight=writes_in_flight)


def check_fetch_ports(n):
    """The Sequencer's program memory read ports: 1, or 2 (``hw.sequencer``); returns ``n``."""
    if n not in (1, 2):
        raise ValueError(f"fetch_ports must be 1 or 2, not {n!r}")
    return n


def core(*, lanes=16, slots=4, bins=None, skip=True, x_depth=256, w_depth=4096, channels=64,
         prog_depth=512, x_zero_point=-128, mode="single", param_ram="async",
         short_requant=False, hazard_words=1, fetch_ports=1, conv=False, stored_nz=False):
    """Core: the machine (``machine``) and its dot-product engine (``sparse_dot``); the core
    requantizes in ``single`` mode (LiteRT's FULLY_CONNECTED). ``param_ram``: the parameter
    memory read asynchronously (distributed RAM; LDB and REQ in one cycle) or synchronously
    (block RAM, for the iCE40; LDB and REQ one cycle more). ``short_requant``: the
    Requantizer with half its pipeline registers (``requant(short=True)``).
    ``hazard_words``: activation words per region that the DOT/REQ hazards track (a power
    of two; 1 tracks every word; larger is smaller hardware and can only add waits).
    ``fetch_ports``: the Sequencer's program memory read ports (2: a predicated-off LOOP is
    decided in the execute stage, a shorter path for twice the block RAM; same timing).
    ``conv``: the convolution extensions (``machine``). ``stored_nz``: each weight's
    non-zero bit is stored beside it in the weight memory (written with it: the ECP5's block
    RAMs have a ninth bit per byte), so the engine's zero mask of the weights is not
    computed on the block RAM's late output (no cycle changes)."""
    m = machine(lanes=lanes, x_depth=x_depth, w_depth=w_depth, channels=channels,
                prog_depth=prog_depth, x_zero_point=x_zero_point, mode=mode, conv=conv)
    if mode != "single":
        raise ValueError(f"the core requantizes in 'single' mode, not {mode!r}")
    if param_ram not in PARAM_RAMS:
        raise ValueError(f"param_ram must be one of {PARAM_RAMS}, not {param_ram!r}")
    check_hazard_words(hazard_words, x_depth // lanes)
    check_fetch_ports(fetch_ports)
    flag("stored_nz", stored_nz)
    requant(mode=mode, short=short_requant)
    e = sparse_dot(lanes=lanes, slots=slots, skip=skip, bins=bins)
    delta_port(depth=w_depth, lanes=lanes)
    return dict(m, slots=e["slots"], bins=e["bins"], skip=e["skip"], param_ram=param_ram,
                short_requant=short_requant, hazard_words=hazard_words,
                fetch_ports=fetch_ports, stored_nz=stored_nz)
