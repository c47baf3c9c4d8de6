"""``make bench``: the project's measured figures, in build/reports/bench.json, and plots.

Each section is a function that returns a JSON-able dict; ``python -m sparq.sim.bench [SECTION]``
runs all sections (or the named ones) and merges them into bench.json. Plots are written to
build/reports/ and copied to docs/img/ (the docs show them).

Sections:
- ``requant``: every requantizer configuration co-simulated on the default simulator (vectors,
  mismatches, results per cycle under continuous valid/ready), the RTL against LiteRT's
  reference kernels on every accumulator of the digits MLP (``litert_bitexact``: k/n
  outputs), and the prepost error against exact rounding as the multiplier width varies.
- ``sparse_dot``: for N=16, M=4 and N=8, M=8, RTL cycles (the block's counter, checked equal
  to the model and cycle-exact) against the dense baseline's over joint densities, and on
  the real digits MLP; ``sparse_dot_speedup.png``.
- ``sim_speed``: the core's simulation throughput on the digits program (as ``make sim`` runs
  it) under Verilator (its default C++ optimization and ``-O0``, the tests') and Icarus,
  without and with waveforms: simulated clock cycles per wall-clock second of the
  testbench's body, the core's busy cycles per second, the build's time apart, and what
  that makes a keyword-spotter inference (about 500,000 core cycles) cost
  (docs/simulation.md).
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import time

import numpy as np

from sparq.golden.data import digits_split
from sparq.golden.layers import fc_accumulators
from sparq.golden.litert_model import quantize_input, read_dense_layers, run_reference
from sparq.golden.qparams import derive_prepost, prepost_error_bound
from sparq.golden.requant import requantize
from sparq.golden.trained import DELTA_K, DELTA_RECIPES  # the updates the delta section measures
from sparq.sim.requant_stim import digits_vectors
from sparq.sim.runner import BUILD, ROOT, default_simulator, run, run_given
from sparq.sim.sparse_stim import beats, beats_file_content, digits_beats
from sparq.spec.configs import CONFIGS

FIXTURES = ROOT / "tests" / "fixtures"
REPORTS = BUILD / "reports"
DOC_IMG = ROOT / "docs" / "img"
SEED = int(os.environ.get("SPARQ_SEED", "20261123"))


def _log(msg):
    print(f"[bench] {msg}", flush=True)


def _rtl_on_digits(name, fixture, x_test, sim):
    mode = CONFIGS[name][1]["mode"]
    vectors, litert = digits_vectors(FIXTURES / fixture, x_test, mode)
    _, got = run_given(name, "tb_requant", {"vectors_file": vectors}, outputs=True, sim=sim,
                       seed=SEED, tag="digits")
    return int((got == litert).sum()), int(litert.size)


def prepost_sweep(x_test, m_bits_list=range(4, 21), x_bits=18):
    """prepost on the digits FC model, each layer fed LiteRT's input: outputs that differ
    from LiteRT (exactly rounded) and the largest stated bound, per multiplier width."""
    path = FIXTURES / "digits_mlp_fc.tflite"
    x = quantize_input(path, x_test)
    refs = run_reference(path, x)
    layers = read_dense_layers(path)
    rows = []
    for m_bits in m_bits_list:
        differ = total = worst = 0
        bound_max = 0.0
        a = x
        for layer, ref in zip(layers, refs, strict=True):
            acc = fc_accumulators(a, layer.w, layer.bias, input_zero_point=layer.input_zero_point)
            acc_bound = int(np.abs(acc).max())
            scales = layer.effective_scales()
            params = [derive_prepost(float(s), acc_bound=acc_bound, m_bits=m_bits,
                                     x_bits=x_bits) for s in scales]
            bound_max = max(bound_max, *(prepost_error_bound(float(s), *p, acc_bound=acc_bound)
                                         for s, p in zip(scales, params, strict=True)))
            m, pre, post = (np.array(v) for v in zip(*params, strict=True))
            out = requantize(acc, multiplier=m, pre=pre, post=post, mode="prepost",
                             output_zero_point=layer.output_zero_point, act_min=layer.act_min,
                             act_max=layer.act_max, m_bits=m_bits, x_bits=x_bits)
            diff = np.abs(out.astype(int) - ref.astype(int))
            differ, total = differ + int((diff > 0).sum()), total + diff.size
            worst = max(worst, int(diff.max()))
            a = ref
        rows.append(dict(m_bits=m_bits, x_bits=x_bits, outputs=total, differ=differ,
                         max_abs_diff=worst, bound=round(bound_max, 4)))
    return rows


def _plot_prepost(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    mb = [r["m_bits"] for r in rows]
    ax.semilogy(mb, [max(r["differ"], 0.5) / r["outputs"] for r in rows], "o-",
                label="outputs differing from LiteRT")
    ax.set_xlabel("prepost multiplier width m_bits (x_bits = 18)")
    ax.set_ylabel("share of int8 outputs")
    ax2 = ax.twinx()
    ax2.plot(mb, [r["bound"] for r in rows], "s--", color="tab:red", label="stated bound")
    ax2.plot(mb, [r["max_abs_diff"] for r in rows], "x:", color="tab:green",
             label="largest |difference|")
    ax2.set_ylabel("error (output steps)")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="center right", fontsize=8)
    ax.set_title("prepost on the digits MLP (20,880 outputs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_requant():
    sim = default_simulator()
    _, x_test, _, _ = digits_split()
    per_config, vectors, mismatches, rpc = {}, 0, 0, []
    for name in (n for n in CONFIGS if n.startswith("requant_")):
        _log(f"requant: {name} on {sim}, 20000 vectors")
        rep = run(name, "tb_requant", sim=sim, vectors=20_000, seed=SEED)
        per_config[name] = {k: rep[k] for k in ("vectors", "mismatches", "cycles",
                                                "results_per_cycle", "latency")}
        vectors += rep["vectors"]
        mismatches += rep["mismatches"]
        rpc.append(rep["results_per_cycle"])
    exact = total = 0
    litert = {}
    for name, fixture in (("requant_single", "digits_mlp_fc.tflite"),
                          ("requant_tflite", "digits_mlp_conv1x1.tflite")):
        _log(f"requant: {name} RTL against LiteRT ({fixture})")
        k, n = _rtl_on_digits(name, fixture, x_test, sim)
        litert[name] = f"{k}/{n}"
        exact, total = exact + k, total + n
    _log("requant: prepost error sweep")
    sweep = prepost_sweep(x_test)
    img = REPORTS / "requant_prepost_error.png"
    _plot_prepost(sweep, img)
    DOC_IMG.mkdir(parents=True, exist_ok=True)
    shutil.copy(img, DOC_IMG / img.name)
    return dict(vectors=vectors, mismatches=mismatches, results_per_cycle=min(rpc),
                litert_bitexact=f"{exact}/{total}", litert_by_config=litert,
                simulator=sim, seed=SEED, configs=per_config, prepost_error=sweep)


JOINT_DENSITIES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
SPARSE_PAIRS = (("sparse_dot_N16_M4", "sparse_dot_N16_M4_dense"),
                ("sparse_dot_N8_M8", "sparse_dot_N8_M8_dense"))


def _rtl_beats(name, b, zp, sim):
    """Run given beats through configuration ``name``; return the RTL's counters."""
    rep, _ = run_given(name, "tb_sparse_dot", {"beats_file": beats_file_content(b, zp)},
                       sim=sim, seed=SEED, testcase="given_beats")
    assert rep["given_mismatches"] == 0 and rep["given_cycle_exact"], rep
    return rep


def _against_dense(name, dense, b, zp, sim):
    """The engine and its dense baseline on the same beats: cycles, speedup, ideal; the
    efficiency (issue 25's ``eta``: ``golden.queued_dot.efficiency``, one beat a cycle) of
    the engine (its RTL cycles) and of the carry-over engine's model on the same beats
    (``golden.queued_dot``: ``QUEUE_DEPTH`` pairs, ``QUEUE_LOOKASIDE``) and, for 16 lanes /
    4 multipliers, of its RTL (``queued_dot_N16_M4``: ``eta_queued_rtl``)."""
    from sparq.golden.queued_dot import efficiency, queued_cycles

    lanes, slots = CONFIGS[name][1]["lanes"], CONFIGS[name][1]["slots"]
    sp, dn = _rtl_beats(name, b, zp, sim), _rtl_beats(dense, b, zp, sim)
    density = 1 - sp["given_skipped"] / sp["given_pairs"]
    effectual = sp["given_pairs"] - sp["given_skipped"]
    nz = (np.asarray(b["w"]) != 0) & (np.asarray(b["x"]) != zp)
    queued = queued_cycles(nz, b["last"], lanes=lanes, slots=slots, depth=QUEUE_DEPTH,
                           lookaside=min(QUEUE_LOOKASIDE, slots - 1))
    rtl = {}
    if (lanes, slots) == (16, 4):  # the carry-over engine's RTL, on the same beats
        rep = _queued_rtl(b, zp, sim)
        rtl = dict(queued_rtl_cycles=rep["given_model_cycles"],
                   eta_queued_rtl=round(efficiency(rep["given_model_cycles"], effectual,
                                                   sp["given_beats"], slots=slots), 4))
    return dict(**rtl,measured_density=round(density, 4), beats=sp["given_beats"],
                vectors=sp["given_vectors"], rtl_cycles=sp["given_rtl_cycles"],
                model_cycles=sp["given_model_cycles"], dense_cycles=dn["given_rtl_cycles"],
                speedup=round(dn["given_rtl_cycles"] / sp["given_rtl_cycles"], 4),
                ideal=round(_ideal(lanes, slots, density), 4),
                eta=round(efficiency(sp["given_rtl_cycles"], effectual, sp["given_beats"],
                                     slots=slots), 4),
                queued_model_cycles=queued.cycles,
                eta_queued_model=round(efficiency(queued.cycles, effectual,
                                                  sp["given_beats"], slots=slots), 4))


# the carry-over engine's queues (golden.queued_dot) in the figures: 8 pairs, a reach of 2
QUEUE_DEPTH, QUEUE_LOOKASIDE = 8, 2


def _queued_rtl(b, zp, sim):
    """The carry-over engine's Verilog (``queued_dot_N16_M4``) on beats ``b``, the input
    always valid and the output always ready: its report (``given_model_cycles``: the
    stream's cycles, every result's cycle checked against the model's)."""
    rep, _ = run_given("queued_dot_N16_M4", "tb_queued_dot",
                       {"beats_file": beats_file_content(b, zp)}, sim=sim, vectors=20,
                       idle=0.0, stall=0.0, seed=SEED, tag="bench")
    assert rep["given_mismatches"] == 0 and rep["given_cycle_mismatches"] == 0, rep
    return rep


def _carry_over_study(rng, n=2000):
    """The carry-over engine's model (``golden.queued_dot``) beside today's engine's cycle
    model: eta on ``n`` one-beat vectors of random operands at each joint density, for 16
    lanes / 4 multipliers and a wide shape (32 / 16), queues of 4, 8 and 16 pairs, a
    lookaside reach of 0, 1 or 2, one or two beats a cycle; and the lookaside's other rule
    (``borrow="nearest"``) for queues of 8 and 16, reach 2."""
    from sparq.golden.queued_dot import efficiency, queued_cycles
    from sparq.golden.sparse_dot import beat_cycles

    rows = []
    for lanes, slots in ((16, 4), (32, 16)):
        for d in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0):
            _log(f"sparse_dot: carry-over model, {lanes} lanes / {slots}, density {d}")
            nz = (rng.random((n, lanes)) < d ** 0.5) & (rng.random((n, lanes)) < d ** 0.5)
            eff = int(nz.sum())
            today = int(beat_cycles(nz.sum(1), lanes=lanes, slots=slots).sum())
            row = dict(lanes=lanes, slots=slots, joint_density=d, effectual=eff,
                       eta_today=round(efficiency(today, eff, n, slots=slots), 4))
            for depth in (4, 8, 16):
                for look in (0, 1, 2):
                    for front in (1, 2):  # (every depth holds a beat of a group)
                        r = queued_cycles(nz, lanes=lanes, slots=slots, depth=depth,
                                          lookaside=look, front=front)
                        key = f"eta_q{depth}_look{look}_b{front}"
                        row[key] = round(efficiency(r.cycles, eff, n, slots=slots,
                                                    front=front), 4)
                if depth > 4:  # the lookaside's other rule (borrow="nearest")
                    r = queued_cycles(nz, lanes=lanes, slots=slots, depth=depth, lookaside=2,
                                      borrow="nearest")
                    row[f"eta_q{depth}_look2_b1_nearest"] = round(
                        efficiency(r.cycles, eff, n, slots=slots), 4)
            rows.append(row)
    return rows


def _ideal(lanes, slots, density):
    """1/density speedup over the dense baseline, until one beat per cycle."""
    dense = -(-lanes // slots)
    return min(dense, dense / max(1.0, density * lanes / slots))


def bench_sparse_dot():
    """Cycles of each engine against its dense baseline over joint densities (both operands
    at sqrt(density)) and on the real digits MLP; RTL counters checked against the model."""
    sim = default_simulator()
    rng = np.random.default_rng(SEED)
    _, x_test, _, _ = digits_split()
    out = {}
    for name, dense in SPARSE_PAIRS:
        lanes, slots = CONFIGS[name][1]["lanes"], CONFIGS[name][1]["slots"]

        rows = []
        for d in JOINT_DENSITIES:
            _log(f"sparse_dot: {name} at joint density {d}")
            b = beats(rng, 600, lanes=lanes, w_density=d ** 0.5, x_density=d ** 0.5)
            rows.append(dict(joint_density=d, **_against_dense(name, dense, b, 0, sim)))
        images = 40
        _log(f"sparse_dot: {name} on {images} digits images")
        b, zp, _ = digits_beats(FIXTURES / "digits_mlp_fc.tflite", x_test[:images],
                                lanes=lanes)
        digits = _against_dense(name, dense, b, zp, sim)
        digits = dict(images=images, joint_density=digits.pop("measured_density"), **digits)
        out[f"N{lanes}_M{slots}"] = dict(sweep=rows, digits=digits)
    img = REPORTS / "sparse_dot_speedup.png"
    _plot_sparse(out, img)
    shutil.copy(img, DOC_IMG / img.name)
    return dict(out, carry_over_study=_carry_over_study(np.random.default_rng(SEED)),
                simulator=sim, seed=SEED)


def _plot_sparse(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key, res in out.items():
        d = [r["measured_density"] for r in res["sweep"]]
        line, = ax.plot(d, [r["speedup"] for r in res["sweep"]], "o-", label=f"{key} RTL")
        ax.plot(d, [r["ideal"] for r in res["sweep"]], "--", color=line.get_color(),
                label=f"{key} ideal")
        g = res["digits"]
        ax.plot([g["joint_density"]], [g["speedup"]], "*", ms=12, color=line.get_color(),
                label=f"{key} digits MLP")
    ax.set_xlabel("joint density (pairs with both operands non-zero)")
    ax.set_ylabel("speedup over the dense baseline")
    ax.set_title("SparseDotProduct: measured RTL cycles", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# the bins engines: two of each width (a dispatcher for every bin), and one 8-bit
# multiplier plus a lane-local 4-bit bin (one 4-bit multiplier per lane, no dispatcher)
BINS_NAMES = ("sparse_dot_N16_bins222", "sparse_dot_N16_bins1l")
UNIFORM_SLOTS = (4, 6)  # uniform 8-bit engines synthesized to price a slot in LUTs


def _lutmul_luts(name, cls_params=None):
    """LUTs of an engine with multipliers in LUTs (ECP5, ``ecp5_lutmul``), from synth.json
    when ``make synth`` recorded it, else synthesized now (about 2-5 minutes each)."""
    from sparq.hw.export import BLOCKS
    from sparq.hw.synth import merge_report, synthesize

    path = REPORTS / "synth.json"
    have = json.loads(path.read_text()) if path.exists() else {}
    if "ecp5_lutmul" in have.get(name, {}):
        return have[name]["ecp5_lutmul"]["luts"]
    cls, params = (BLOCKS[CONFIGS[name][0]], CONFIGS[name][1]) if cls_params is None \
        else cls_params
    _log(f"mulbins: synthesizing {name} with LUT multipliers")
    fig, _, _ = synthesize(name, "ecp5_lutmul", BUILD / "synth", cls, params)
    merge_report({name: {"ecp5_lutmul": dict(fig, device="LFE5U-25F-6BG381C")}})
    return fig["luts"]


def _mix_beats(rng, mix, lanes, x_zp, n_beats=640):
    """Beats whose weights follow level shares ``mix`` (levels 1..3) and dense activations."""
    from sparq.golden.mulbins import level_bounds, smallest_level

    lvl = rng.choice([1, 2, 3], size=(n_beats, lanes), p=mix)
    lo, hi = level_bounds(lvl)
    w = rng.integers(lo, hi + 1)
    w = np.where(w == 0, hi, w)  # a non-zero weight of its level
    x = rng.integers(-127, 128, (n_beats, lanes))
    x = np.where(x == x_zp, x_zp + 1, x)
    last = np.zeros(n_beats, bool)
    last[lanes // 4 - 1::lanes // 4] = True  # 4-beat vectors (64 inputs)
    return dict(w=w, x=x, lvl=smallest_level(w), last=last)


def _equal_budget(luts, target):
    """The uniform 8-bit slots that ``target`` LUTs buy (linear in the slots between the
    synthesized ones, at least the smallest) and their LUTs."""
    (m0, l0), (m1, l1) = [(m, luts[m]) for m in UNIFORM_SLOTS[:2]]
    per_slot = (l1 - l0) / (m1 - m0)
    m_eq = max(1, int(m0 + (target - l0) // per_slot))
    return m_eq, round(l0 + (m_eq - m0) * per_slot)


def bench_mulbins():
    """Multiplier bins against uniform 8-bit engines: cycles per vector and MACs per cycle
    per 1,000 LUTs (dense-equivalent MACs: lanes x beats) for the weight mixes, each bins
    engine against the uniform engine its LUTs buy; the engines' RTL cycles checked equal to
    the schedule model on the digits mixed model."""
    from sparq.golden import digits_model, trained
    from sparq.golden.mulbins import bin_cycles
    from sparq.golden.sparse_dot import beat_cycles
    from sparq.hw.sparse_dot import SparseDotProduct

    sim = default_simulator()
    rng = np.random.default_rng(SEED)
    lanes = CONFIGS[BINS_NAMES[0]][1]["lanes"]
    _, x_test, _, _ = digits_split()
    base, mixed, levels = (trained.load(n) for n in ("int8", "mixed", "levels"))
    record = trained.manifest()["mixed"]  # the recipe's validation figures
    acc = dict(int8=digits_model.test_accuracy(base), mixed=digits_model.test_accuracy(mixed),
               levels=digits_model.test_accuracy(levels))
    images = 40
    mixes = {}
    for key, layers, a in (("int8", base, "int8"), ("digits_mixed", mixed, "mixed"),
                           ("digits_mixed_fixed_scales", levels, "levels")):
        path = digits_model.write_tflite(layers, BUILD / f"digits_{key}.tflite")
        b, zp, _ = digits_beats(path, x_test[:images], lanes=lanes)
        mixes[key] = (b, zp, dict(images=images, level_shares=[
            round(v, 4) for v in digits_model.level_shares(layers)],
            test_accuracy=round(acc[a], 2)))
    b = _mix_beats(rng, (0.5, 0.3, 0.2), lanes, 0)
    mixes["synthetic_2b50_4b30_8b20"] = (b, 0, dict(level_shares=[0, 0.5, 0.3, 0.2]))

    luts = {m: _lutmul_luts(f"sparse_dot_N{lanes}_M{m}",
                            (SparseDotProduct, dict(lanes=lanes, slots=m)))
            for m in UNIFORM_SLOTS}
    engines = {}
    for name in BINS_NAMES:
        mine = _lutmul_luts(name)
        m_eq, luts_eq = _equal_budget(luts, mine)
        engines[name] = dict(bins={str(k): v for k, v in CONFIGS[name][1]["bins"].items()},
                             luts_lutmul=mine, equal_budget_slots=m_eq,
                             equal_budget_luts=luts_eq)
    out = dict(engines=engines, uniform_luts_lutmul={f"M{m}": luts[m] for m in UNIFORM_SLOTS},
               note="equal budget: the uniform 8-bit slots a bins engine's LUTs buy, by linear "
                    "interpolation of the synthesized uniform engines",
               mixed_model=dict(method="widths", val_accuracy=record["val_accuracy"],
                                base_val_accuracy=record["base_val_accuracy"],
                                test_accuracy_int8=acc["int8"],
                                test_accuracy_mixed=acc["mixed"],
                                test_accuracy_fixed_scales=acc["levels"]),
               mixes={})
    for key, (b, zp, info) in mixes.items():
        nz = (b["w"] != 0) & (b["x"] != zp)
        n_vec = int(b["last"].sum())
        row = dict(info, vectors=n_vec, beats=len(b["w"]),
                   joint_density=round(float(nz.mean()), 4))
        macs = lanes * len(b["w"])

        def figures(cycles, lut, n_vec=n_vec, macs=macs):
            return dict(cycles=cycles, cycles_per_vector=round(cycles / n_vec, 3),
                        macs_per_cycle_per_kLUT=round(macs / cycles / (lut / 1000), 4))

        row["uniform_M4"] = figures(int(beat_cycles(nz.sum(1), lanes=lanes, slots=4).sum()),
                                    luts[4])
        for name, e in engines.items():
            bins = CONFIGS[name][1]["bins"]
            m_eq = e["equal_budget_slots"]
            mine = figures(int(bin_cycles(b["lvl"], nz, bins=bins).sum()), e["luts_lutmul"])
            eq = figures(int(beat_cycles(nz.sum(1), lanes=lanes, slots=m_eq).sum()),
                         e["equal_budget_luts"])
            row[name] = dict(mine, **{f"uniform_M{m_eq}_equal_luts": eq},
                             vs_equal_luts_macs_per_lut=round(
                                 mine["macs_per_cycle_per_kLUT"]
                                 / eq["macs_per_cycle_per_kLUT"], 3))
        out["mixes"][key] = row
    # the RTL meets the schedule model on the real mixed model (values and cycles)
    b, zp, _ = mixes["digits_mixed"]
    part = {k: v[:len(v) // 4] for k, v in b.items()}
    out["rtl_check"] = {}
    for name in BINS_NAMES:
        rep = _rtl_beats(name, part, zp, sim)
        out["rtl_check"][name] = dict(
            beats=rep["given_beats"], vectors=rep["given_vectors"],
            rtl_cycles=rep["given_rtl_cycles"], model_cycles=rep["given_model_cycles"],
            mismatches=rep["given_mismatches"], simulator=sim)
    return dict(out, seed=SEED)


def bench_predicate():
    """The digits MLP (mixed precision) compiled with and without block predication, run by
    the core's cost model on the test images: cycles per image with the sparse engine
    (N16 M4) and with the dense baseline, the share of ops predicated off; the compiled
    program also checked on the RTL Sequencer for one image."""
    from sparq.golden import compiler, mlp, trained
    from sparq.golden import core as golden_core
    from sparq.sim import seq_stim

    layers = trained.load("mixed")
    x_train, x_test, _, _ = digits_split()
    xt = mlp.quantize_input(layers, x_train[:300])
    xq = mlp.quantize_input(layers, x_test)
    ref = mlp.run_int8(layers, xq)
    engines = {"sparse_N16_M4": golden_core.engine_cost(lanes=16, slots=4),
               "dense_N16_M4": golden_core.engine_cost(lanes=16, slots=4, skip=False)}
    variants = {"no_predication": dict(predicate_blocks=False),
                "blocks": dict(predicate_blocks=True),
                "blocks_zero_first": dict(predicate_blocks=True, calibration=xt),
                "blocks_zero_first_dead_channels": dict(predicate_blocks=True, calibration=xt,
                                                        dead_channels=True)}
    out = dict(images=len(xq), model="digits mixed precision (golden.digits_model)",
               variants={})
    for name, kw in variants.items():
        c = compiler.compile_mlp(layers, prog_depth=512, **kw)
        row = dict(program_words=len(c.program))
        for eng, cost in engines.items():
            cycles, off, ops = 0, 0, 0
            for n in range(len(xq)):
                m = golden_core.run_image(c, xq[n], cost)
                assert np.array_equal(c.layer_output(m.x, 2), ref[2][n]), (name, n)
                cycles += m.cycles
                off += m.predicated_off
                ops += m.executed + m.predicated_off
            row[eng] = dict(cycles_per_image=round(cycles / len(xq), 2))
            row["ops_per_image"] = round(ops / len(xq), 2)
            row["predicated_off_share"] = round(off / ops, 4)
        out["variants"][name] = row
        _log(f"predicate: {name}: {row}")
    base = out["variants"]["no_predication"]
    for row in out["variants"].values():
        for eng in engines:
            row[eng]["vs_no_predication"] = round(
                base[eng]["cycles_per_image"] / row[eng]["cycles_per_image"], 4)
    # the RTL sequencer on one image of the best-predicated program
    c = compiler.compile_mlp(layers, prog_depth=512, calibration=xt)
    case = seq_stim.Case(c.cfg, c.params, c.x_image(xq[0]),
                         c.program + [0] * (c.cfg.prog_depth - len(c.program)))
    rep, x = run_given("sequencer", "tb_sequencer", {"program_file": seq_stim.case_to_json(case)},
                       outputs=True, testcase="given_program", seed=SEED, tag="bench")
    m = golden_core.run_image(c, xq[0])
    out["rtl_check"] = dict(outputs_equal=bool(np.array_equal(c.layer_output(x, 2), ref[2][0])),
                            predicated_off=rep["given_predicated_off"],
                            model_predicated_off=m.predicated_off,
                            cycles_minus_stalls=rep["given_cycles"] - rep["given_stalls"],
                            model_cycles=m.cycles)
    return dict(out, seed=SEED)


def _delta_bytes(old, base, weights, counter=2):
    from sparq.golden import mlp
    from sparq.golden.delta import fileformat, model_file

    new = model_file.dump(model_file.layers_to_tensors(mlp.with_weights(base, weights)), counter)
    return new, len(fileformat.make_delta(old, new))


def bench_delta():
    """Delta updates per scenario: the full int8 model, zstd of the new model, zstd
    --patch-from and bsdiff of the unconstrained fine-tune, our delta of it, post-hoc top-k
    of its change, and constrained updates at several budgets: bytes and test accuracy."""
    import bsdiff4
    import zstandard

    from sparq.golden import mlp, trained
    from sparq.golden.delta import model_file, train

    out = {}
    study = trained.Study()  # the committed updates: the same figures on every machine
    for name in train.SCENARIOS:
        sc = study.scenario(name)
        base = sc.base
        base_w = mlp.weights(base)
        acc0 = sc.accuracy(base)
        old = model_file.dump(model_file.layers_to_tensors(base), 1)
        _log(f"delta: {name}: unconstrained fine-tune")
        un = study.update(name)
        acc_u = sc.accuracy(mlp.with_weights(base, un))
        new_u, ours_u = _delta_bytes(old, base, un)
        gain = acc_u - acc0
        raw = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        patch_from = len(zstandard.ZstdCompressor(level=19, dict_data=raw).compress(new_u))
        row = dict(
            full_int8_model_bytes=len(old),
            int8_weight_bytes=int(sum(w.size for w in base_w)),
            zstd_new_model_bytes=len(zstandard.ZstdCompressor(level=19).compress(new_u)),
            base_accuracy=round(acc0, 2),
            unconstrained=dict(accuracy=round(acc_u, 2),
                               changed=train.changed_count(un, base_w),
                               zstd_patch_from_bytes=patch_from,
                               bsdiff4_bytes=len(bsdiff4.diff(old, new_u)),
                               sparq_delta_bytes=ours_u),
            post_hoc_top_k=[], constrained=[])
        for k in DELTA_K:
            ph = train.post_hoc_top_k(base_w, un, k)
            a = sc.accuracy(mlp.with_weights(base, ph))
            row["post_hoc_top_k"].append(dict(k=k, accuracy=round(a, 2),
                                              bytes=_delta_bytes(old, base, ph)[1],
                                              gain_retained=round((a - acc0) / gain, 3)))
            for recipe in DELTA_RECIPES:
                _log(f"delta: {name}: constrained k={k} {recipe}")
                c = study.update(name, k=k, **recipe)
                a = sc.accuracy(mlp.with_weights(base, c))
                nbytes = _delta_bytes(old, base, c)[1]
                row["constrained"].append(dict(
                    k=k, **recipe, accuracy=round(a, 2), bytes=nbytes,
                    changed=train.changed_count(c, base_w),
                    gain_retained=round((a - acc0) / gain, 3),
                    share_of_full=round(nbytes / len(old), 4),
                    smaller_than_patch_from=round(patch_from / nbytes, 2)))
        ok = [r for r in row["constrained"] if r["share_of_full"] <= 0.10
              and r["gain_retained"] >= 0.90 and r["smaller_than_patch_from"] >= 6]
        row["goal_met_by"] = [dict(k=r["k"], score=r["score"], bits=r["bits"], step=r["step"],
                                   bytes=r["bytes"]) for r in ok]
        out[name] = row
        _log(f"delta: {name}: base {acc0:.2f}%, unconstrained {acc_u:.2f}%, patch-from "
             f"{patch_from} B, goal met by {row['goal_met_by']}")
    if study.trained_here:
        _log(f"delta: {study.trained_here} updates were not in the committed study and were "
             "trained here: their figures depend on this machine's floating point")
    img = REPORTS / "delta_bytes_accuracy.png"
    _plot_delta(out, img)
    shutil.copy(img, DOC_IMG / img.name)
    return dict(out, seed=SEED, trained_here=study.trained_here)


def _recipe_label(recipe):
    text = "constrained, " + ("top-k" if recipe["score"] == "change" else "iterative top-k")
    if recipe["bits"] is not None:
        text += f", |d| <= {2 ** recipe['bits'] - 1}"
    if recipe["step"] > 1:
        text += f", d a multiple of {recipe['step']}"
    return text


def _plot_delta(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 - matplotlib.ticker.NullFormatter below

    fig, axes = plt.subplots(1, len(out), figsize=(11, 4))
    for ax, (name, r) in zip(axes, out.items(), strict=True):
        for recipe, style in zip(DELTA_RECIPES, ("o-", "s--", "v-"), strict=True):
            pts = [c for c in r["constrained"] if all(c[key] == v for key, v in recipe.items())]
            ax.plot([c["bytes"] for c in pts], [c["accuracy"] for c in pts], style,
                    label=_recipe_label(recipe))
        ph = r["post_hoc_top_k"]
        ax.plot([c["bytes"] for c in ph], [c["accuracy"] for c in ph], "^:",
                label="post-hoc top-k of the unconstrained change")
        u = r["unconstrained"]
        for key, mark in (("sparq_delta_bytes", "D"), ("zstd_patch_from_bytes", "P"),
                          ("bsdiff4_bytes", "X")):
            ax.plot([u[key]], [u["accuracy"]], mark, ms=9,
                    label=f"unconstrained: {key.replace('_bytes', '').replace('_', ' ')}")
        ax.axhline(r["base_accuracy"], color="gray", lw=0.8, label="base model")
        ax.axvline(0.1 * r["full_int8_model_bytes"], color="red", lw=0.8, ls=":",
                   label="10% of the full int8 model")
        ax.set_xscale("log")
        ax.set_xticks([200, 500, 1000, 2000, 5000], ["200", "500", "1000", "2000", "5000"])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("update bytes")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"scenario {name}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SPEED_SECONDS = 5.0  # each sim_speed run simulates images for at least this long (wall)
SPEED_MAX_IMAGES = 5000
KWS_CYCLES = 500_000  # core cycles of one keyword-spotter inference, about
SPEED_RUNS = {  # name: (simulator, waves, SPARQ_VERILATOR_OPT)
    "verilator": ("verilator", False, ""),  # make sim's models (Verilator's own C++ level)
    "verilator_O0": ("verilator", False, "-O0"),  # the tests' models
    "verilator_waves": ("verilator", True, ""),
    "icarus": ("icarus", False, None),
    "icarus_waves": ("icarus", True, None),
}


@contextlib.contextmanager
def _environ(**values):
    """Set environment variables (a string) or unset them (None) for the block's duration."""
    old = {k: os.environ.get(k) for k in values}

    def put(d):
        for k, v in d.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    put(values)
    try:
        yield
    finally:
        put(old)


def _speed_run(sim, waves, prog, layers, xq_all, seconds):
    """One sim_speed figure: a fresh build (its time: from calling ``run_core`` to the
    test's first line, Verilog export and simulator start included), then runs with more
    images until the testbench's body lasts ``seconds``; the last run's figures."""
    from sparq.golden import mlp
    from sparq.sim.core_run import bit_exact_images, run_core, throughput
    from sparq.sim.runner import verilator_cxx_opt

    tag = "speed-waves" if waves else "speed"  # (a Verilator model is built with or without
    # tracing: one build directory each, or every run would rebuild)
    folder = sim + (verilator_cxx_opt() if sim == "verilator" else "")
    shutil.rmtree(BUILD / "sim" / folder / f"core-{tag}", ignore_errors=True)  # runner's path

    def once(n):
        xq = np.resize(xq_all, (n, xq_all.shape[1]))  # the test images, repeated past 360
        t = time.time()
        res, rep = run_core("core", prog, xq, sim=sim, seed=SEED, tag=tag, waves=waves)
        golden = mlp.run_int8(layers, xq)
        exact = bit_exact_images(res, golden)
        return rep, rep["started_at"] - t, exact

    rep, build_seconds, _ = once(1)
    n = 1
    for _ in range(4):
        n = min(SPEED_MAX_IMAGES,
                max(n + 1, math.ceil(n * 1.15 * seconds / rep["wall_seconds"])))
        rep, start_seconds, exact = once(n)
        if rep["wall_seconds"] >= seconds or n == SPEED_MAX_IMAGES:
            break
    t = throughput(rep)
    busy_cps = rep["core_cycles"] / rep["busy_wall_seconds"]
    wave_files = [f for f in (BUILD / "sim" / folder / f"core-{tag}").iterdir()
                  if f.suffix in (".vcd", ".fst")] if waves else []
    out = dict(
        simulator=sim, waves=waves,
        waves_format=(wave_files[0].suffix[1:].upper() if wave_files else None),
        waves_bytes=sum(f.stat().st_size for f in wave_files) if waves else None,
        verilator_cxx_opt=(verilator_cxx_opt() or "default") if sim == "verilator" else None,
        images=rep["images"], bit_exact=f"{exact}/{rep['images']}",
        clock_cycles=t["clock_cycles"], core_cycles=rep["core_cycles"],
        wall_seconds=t["wall_seconds"], busy_wall_seconds=rep["busy_wall_seconds"],
        cycles_per_second=t["cycles_per_second"],
        core_cycles_per_second=round(rep["core_cycles"] / t["wall_seconds"], 1),
        busy_cycles_per_second=round(busy_cps, 1),
        build_seconds=round(build_seconds, 2), start_seconds=round(start_seconds, 2),
        kws_inference_estimate_seconds=round(KWS_CYCLES / t["cycles_per_second"], 1),
        kws_inference_estimate_seconds_busy_rate=round(KWS_CYCLES / busy_cps, 1),
        load_average=[round(v, 2) for v in os.getloadavg()])
    # an inference is all busy cycles: the busy rate is the one it runs at
    out["kws_inferences_per_minute_busy_rate"] = round(
        60 / out["kws_inference_estimate_seconds_busy_rate"], 3)
    for f in wave_files:  # (hundreds of MB for a few seconds' run: measured, not kept)
        f.unlink()
    return out


def bench_sim_speed(seconds=SPEED_SECONDS, runs=None):
    """The core's simulation throughput with cocotb attached: the digits program (the
    block-pruned digits MLP compiled for ``core``, as ``make sim`` runs it) on each
    simulator and Verilator C++ level, without and with waveforms (``SPEED_RUNS``)."""
    from sparq.golden import compiler, mlp, trained
    from sparq.sim.runner import simulator_available

    layers = trained.load("sparse")
    _, x_test, _, _ = digits_split()
    xq = mlp.quantize_input(layers, x_test)
    prog = compiler.compile_mlp(layers, predicate_blocks=False, prog_depth=512)
    out = dict(model="golden.trained 'sparse' (block-pruned digits MLP), compiled for core "
                     "(predicate_blocks=False, prog_depth=512), as make sim runs it",
               kws_cycles=KWS_CYCLES, target_seconds=seconds, cpus=os.cpu_count(), runs={})
    for name in runs or SPEED_RUNS:
        sim, waves, opt = SPEED_RUNS[name]
        if not simulator_available(sim):
            _log(f"sim_speed: {name}: {sim} not available, skipped")
            continue
        env = dict(WAVES=None)  # (WAVES=1 from make would put waves in every run)
        if sim == "verilator":
            env["SPARQ_VERILATOR_OPT"] = opt
        with _environ(**env):
            row = _speed_run(sim, waves, prog, layers, xq, seconds)
        out["runs"][name] = row
        _log(f"sim_speed: {name}: {row['cycles_per_second']:.0f} cycles/s "
             f"({row['busy_cycles_per_second']:.0f} while the core is busy), "
             f"{row['images']} images, build {row['build_seconds']} s; load "
             f"{row['load_average']}")
    r = out["runs"]

    def ratio(a, b, key):
        return round(r[a][key] / r[b][key], 2) if a in r and b in r else None

    out["ratios"] = dict(  # a/b of cycles per second, and of busy cycles per second
        verilator_default_over_O0=ratio("verilator", "verilator_O0", "cycles_per_second"),
        verilator_default_over_O0_busy=ratio("verilator", "verilator_O0",
                                             "busy_cycles_per_second"),
        verilator_without_over_with_waves_busy=ratio("verilator", "verilator_waves",
                                                     "busy_cycles_per_second"),
        icarus_without_over_with_waves_busy=ratio("icarus", "icarus_waves",
                                                  "busy_cycles_per_second"),
        verilator_over_icarus_busy=ratio("verilator", "icarus", "busy_cycles_per_second"))
    return out


def bench_kws(n_random=3):
    """The MLPerf Tiny keyword spotter compiled for ``core_kws``, per layer and in total on
    the real input and ``n_random`` random int8 ones: the core model's cycles (``cycles``:
    a layer's share of the whole program's), the RTL's (Verilator: ``rtl_cycles``, the whole
    program, and per layer ``rtl_alone``, the layer's program run alone, which adds its
    drain), the dense baseline's (same program and multipliers, no skipping), the ideal
    ceil(effectual MACs / multipliers), and the pairs fed, effectual and skipped."""
    from sparq.golden.graph_compiler import compile_graph, layer_figures
    from sparq.golden.sequencer import MachineConfig
    from sparq.sim.graph_run import run_graph
    from sparq.spec.configs import CONFIGS

    core = CONFIGS["core_kws"][1]
    model = ROOT / "tests" / "fixtures" / "mlperf_tiny" / "kws_ref_model.tflite"
    c = compile_graph(model, MachineConfig.of(core))
    real = np.load(model.parent / "kws_input.npy").astype(np.int8)
    rng = np.random.default_rng(SEED)
    inputs = {"real": real[0]}
    inputs.update({f"random{k}": rng.integers(-128, 128, real.shape[1:]).astype(np.int8)
                   for k in range(n_random)})
    keys = ("cycles", "dense", "ideal", "pairs", "effectual", "skipped")
    out = dict(config="core_kws", source="core model (golden.core.predict_program_cycles) "
               "per layer; the RTL (Verilator) in total and per layer alone",
               program_words=len(c.program),
               weight_bytes=int(c.params.w.size), channels=int(c.params.bias.size),
               anchors=dict(cortex_m4_cycles=9.0e6, cortex_m7_cycles=4.1e6), inputs={})
    for name, x in inputs.items():
        _log(f"kws: {name}")
        layers = layer_figures(c, x, **{k: v for k, v in core.items()
                                        if k not in MachineConfig.__dataclass_fields__})
        out["inputs"][name] = dict(layers=layers,
                                   total={k: sum(r[k] for r in layers) for k in keys})
    _log(f"kws: {len(inputs)} inputs on the RTL (Verilator)")
    res, _ = run_graph("core_kws", c, np.array(list(inputs.values())), sim="verilator",
                       seed=SEED, tag="bench")
    for name, r in zip(inputs, res, strict=True):
        fig = out["inputs"][name]
        for layer, alone in zip(fig["layers"], r["op_cycles"], strict=True):
            layer["rtl_alone"] = alone
        fig["total"]["rtl_cycles"] = r["cycles"]
        fig["rtl_equals_model"] = r["cycles"] == fig["total"]["cycles"]
    out["engine_eta"] = _engine_eta(c, real[0], core)
    tot = out["inputs"]["real"]["total"]
    out["real_over_cortex_m4"] = round(9.0e6 / tot["cycles"], 1)
    out["random_mean_cycles"] = float(np.mean([v["total"]["cycles"] for k, v in
                                               out["inputs"].items() if k != "real"]))
    return out


def _engine_eta(c, x, core):
    """The engine alone on the keyword spotter's beats (the real input, every DOT back to
    back, the input always valid): eta (``golden.queued_dot.efficiency``) of today's engine
    (``max(1, ceil(nnz / M))`` a beat) and of the carry-over engine's model (queues of
    ``QUEUE_DEPTH``, lookaside reach 1 and ``QUEUE_LOOKASIDE``, and ``QUEUE_LOOKASIDE`` with
    ``borrow="nearest"``; issue 25; the model's, not its RTL's)."""
    from sparq.golden.graph_compiler import engine_stream
    from sparq.golden.queued_dot import efficiency, queued_cycles
    from sparq.golden.sparse_dot import beat_cycles

    lanes, slots = core["lanes"], core["slots"]
    _log("kws: the engine alone on the real input's beats (today's and the carry-over model)")
    nz, last = engine_stream(c, x, lanes=lanes)
    eff, n = int(nz.sum()), len(nz)
    today = int(beat_cycles(nz.sum(1), lanes=lanes, slots=slots).sum())
    out = dict(beats=n, dots=int(last.sum()), effectual=eff, today_cycles=today,
               eta_today=round(efficiency(today, eff, n, slots=slots), 4))
    for look in sorted({1, QUEUE_LOOKASIDE}):
        q = queued_cycles(nz, last, lanes=lanes, slots=slots, depth=QUEUE_DEPTH,
                          lookaside=look).cycles
        out[f"queued_look{look}_cycles"] = q
        out[f"eta_queued_look{look}"] = round(efficiency(q, eff, n, slots=slots), 4)
    q = queued_cycles(nz, last, lanes=lanes, slots=slots, depth=QUEUE_DEPTH,
                      lookaside=QUEUE_LOOKASIDE, borrow="nearest").cycles
    out[f"queued_look{QUEUE_LOOKASIDE}_nearest_cycles"] = q
    out[f"eta_queued_look{QUEUE_LOOKASIDE}_nearest"] = round(efficiency(q, eff, n,
                                                                         slots=slots), 4)
    return out


SECTIONS = {"requant": bench_requant, "sparse_dot": bench_sparse_dot, "mulbins": bench_mulbins,
            "predicate": bench_predicate, "delta": bench_delta, "sim_speed": bench_sim_speed,
            "kws": bench_kws}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sections", nargs="*", help=f"sections (default: all of {list(SECTIONS)})")
    args = ap.parse_args(argv)
    REPORTS.mkdir(parents=True, exist_ok=True)
    out = REPORTS / "bench.json"
    report = json.loads(out.read_text()) if out.exists() else {}
    for name in args.sections or SECTIONS:
        if name not in SECTIONS:
            ap.error(f"unknown section {name!r}; known: {', '.join(SECTIONS)}")
        t0 = time.time()
        report[name] = SECTIONS[name]()
        _log(f"{name} done in {time.time() - t0:.0f} s")
        out.write_text(json.dumps(report, indent=1) + "\n")
    _log(f"wrote {out}")


if __name__ == "__main__":
    main()
