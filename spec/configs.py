"""Every block configuration the project ships: name -> (block class name, parameters).

Synthesis, co-simulation, ``make sim`` and the benchmarks all take their configurations from
this table (``hw.export.CONFIGS`` binds the class names to the Amaranth components).
"""

CONFIGS = {
    "requant_tflite": ("Requantizer", dict(mode="tflite")),
    "requant_single": ("Requantizer", dict(mode="single")),
    # the core's requantizer: half the pipeline registers (latency 4)
    "requant_single_short": ("Requantizer", dict(mode="single", short=True)),
    "requant_prepost": ("Requantizer", dict(mode="prepost", m_bits=16, x_bits=18)),
    # both roundings, chosen per accumulator: the requantizer a convolution core needs
    # (CONV_2D rounds twice, FULLY_CONNECTED once; SETL's round bit)
    "requant_dual_short": ("Requantizer", dict(mode="dual", short=True)),
    "sparse_dot_N16_M4": ("SparseDotProduct", dict(lanes=16, slots=4)),
    "sparse_dot_N16_M4_dense": ("SparseDotProduct", dict(lanes=16, slots=4, skip=False)),
    # the carry-over engine (issue 25; docs/sparse_dot.md): 16 lanes in 4 groups, a queue
    # of 8 effectual pairs a group, a lookaside reach of 2, 16 vectors in flight (8 cost
    # one-beat vectors 4 points of eta at density 0.3 with the RTL's latency of 5)
    "queued_dot_N16_M4": ("QueuedDotProduct", dict(lanes=16, slots=4, depth=8, lookaside=2,
                                                   tags=16)),
    # as the core would take it: every result taken, o.ready not looked at
    "queued_dot_N16_M4_push": ("QueuedDotProduct", dict(lanes=16, slots=4, depth=8,
                                                        lookaside=2, tags=16, push=True)),
    # its wide shape: 32 lanes in 16 groups of two, queues of 16 (docs/sparse_dot.md)
    "queued_dot_N32_M16": ("QueuedDotProduct", dict(lanes=32, slots=16, depth=16, lookaside=2,
                                                    tags=16)),
    "sparse_dot_N8_M8": ("SparseDotProduct", dict(lanes=8, slots=8)),
    "sparse_dot_N8_M8_dense": ("SparseDotProduct", dict(lanes=8, slots=8, skip=False)),
    "sparse_dot_N4_M1": ("SparseDotProduct", dict(lanes=4, slots=1)),
    "sparse_dot_N8_M3_mem": ("SparseDotProduct", dict(lanes=8, slots=3, output="memory")),
    "sparse_dot_N16_bins222": ("SparseDotProduct",
                               dict(lanes=16, slots=6, bins={8: 2, 4: 2, 2: 2})),
    # one 8-bit multiplier and a lane-local 4-bit bin (one 4-bit multiplier per lane): the
    # narrow pairs need no dispatcher (docs/mulbins.md)
    "sparse_dot_N16_bins1l": ("SparseDotProduct",
                              dict(lanes=16, slots=17, bins={8: 1, 4: 16})),
    "sparse_dot_N8_bins1l": ("SparseDotProduct", dict(lanes=8, slots=9, bins={8: 1, 4: 8})),
    # small enough for a gate-level run of the bins dispatcher
    "sparse_dot_N8_bins211": ("SparseDotProduct",
                              dict(lanes=8, slots=4, bins={8: 2, 4: 1, 2: 1})),
    # the sequencer: small memories for random programs, and the digits core's sizes
    "sequencer_small": ("Sequencer", dict(lanes=4, x_depth=64, w_depth=128, channels=8,
                                          prog_depth=64, x_zero_point=-3)),
    "sequencer": ("Sequencer", dict(lanes=16, x_depth=256, w_depth=4096, channels=64,
                                    prog_depth=512, x_zero_point=-128, fetch_ports=2)),
    "sequencer_conv_small": ("Sequencer", dict(lanes=4, x_depth=1024, w_depth=1024,
                                               channels=32, prog_depth=128, x_zero_point=-3,
                                               conv=True)),
    # the sequencer of the keyword spotter's convolution core (core_kws): loops
    # nested three deep, strides, windows, lane banks
    "sequencer_conv": ("Sequencer", dict(lanes=16, x_depth=16384, w_depth=32768,
                                         channels=1024, prog_depth=512, x_zero_point=-128,
                                         conv=True, fetch_ports=2)),
    # the core's weight memory with its delta port (two banks of the digits model's size)
    "delta_apply_4k": ("DeltaApply", dict(depth=4096)),
    # the core: the digits MLP's sizes, N16 engine with four 8-bit multipliers, and its dense
    # baseline (same multipliers, no skipping)
    "core": ("Core", dict(lanes=16, slots=4, x_depth=256, w_depth=4096, channels=64,
                          prog_depth=512, x_zero_point=-128, short_requant=True,
                          fetch_ports=2)),
    "core_dense": ("Core", dict(lanes=16, slots=4, skip=False, x_depth=256, w_depth=4096,
                                channels=64, prog_depth=512, x_zero_point=-128,
                                short_requant=True)),
    # a core for the iCE40 UP5K (5,280 logic cells, 30 block RAMs) that holds the digits MLP
    # (122 activations, 2,720 weights, 58 channels, 207 instructions): the parameter memory
    # in block RAM (the iCE40 has no distributed RAM); four lanes, two multipliers; hazards
    # tracked per 8 words (the room for the error contract's pcs; per 4 words, one layer's
    # output each, saves 34 cycles an image: docs/core.md has the sizes tried)
    "core_ice40": ("Core", dict(lanes=4, slots=2, x_depth=128, w_depth=4096, channels=64,
                                prog_depth=256, x_zero_point=-128, param_ram="sync",
                                short_requant=True, hazard_words=8)),
    # a small convolution core (the extensions of golden.isa: nested loops, window DOTs, lane
    # banks) for random programs under both simulators
    "core_conv_small": ("Core", dict(lanes=4, slots=2, x_depth=512, w_depth=512, channels=32,
                                     prog_depth=128, x_zero_point=-3, param_ram="sync",
                                     short_requant=True, hazard_words=4, conv=True)),
    # the convolution core the MLPerf Tiny keyword spotter is compiled for (issue 23; 25,616
    # weight bytes, 652 channels, two 8,000 B activation buffers), the ECP5 core's engine with
    # the convolution extensions (golden.isa) and memories for the model; hazards per 64 words;
    # the parameters in block RAM (1,024 channels)
    "core_kws": ("Core", dict(lanes=16, slots=4, x_depth=16384, w_depth=32768, channels=1024,
                              prog_depth=512, x_zero_point=-128, param_ram="sync",
                              short_requant=True, hazard_words=64, fetch_ports=2, conv=True,
                              stored_nz=True)),
}

# Configurations the golden model and the core model run but the RTL does not build yet
# (none at present: the keyword spotter's core_kws moved to CONFIGS when its RTL was joined)
PLANNED = {}
