"""``make sim-blocks``: every block's co-simulation against its golden model, and a table.

Each configuration of ``hw.export``
that has a testbench runs on the default simulator (``SIM`` overrides) with the full vector
set; the table lists vectors checked, mismatches and cycles; build/reports/blocks.json keeps
it.
Exits non-zero if any block mismatches or fails.
"""

import argparse
import json
import os
import sys
import time

from sparq.sim.runner import BUILD, default_simulator, run
from sparq.spec.configs import CONFIGS

# configuration prefix -> (testbench module, vectors)
TESTBENCHES = {"requant_": ("tb_requant", 20_000), "sparse_dot_": ("tb_sparse_dot", 5_000),
               "queued_dot_": ("tb_queued_dot", 3_000),
               "sequencer_small": ("tb_sequencer", 2_000)}
SEED = int(os.environ.get("SPARQ_SEED", "20261123"))


def testbench_for(name):
    for prefix, tb in TESTBENCHES.items():
        if name.startswith(prefix):
            return tb
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="configurations (default: all with a testbench)")
    args = ap.parse_args(argv)
    sim = default_simulator()
    names = args.names or [n for n in CONFIGS if testbench_for(n)]
    print(f"[sim] simulator {sim}; seed {SEED}; {len(names)} configurations", flush=True)
    rows, failed = [], []
    for k, name in enumerate(names, 1):
        tb, vectors = testbench_for(name)
        t0 = time.time()
        print(f"[sim] ({k}/{len(names)}) {name}: {vectors} vectors ...", flush=True)
        try:
            rep = run(name, tb, sim=sim, vectors=vectors, seed=SEED)
        except AssertionError as e:
            failed.append(name)
            rep = dict(vectors=vectors, mismatches="FAILED", cycles="-", error=str(e))
        rep["seconds"] = round(time.time() - t0, 1)
        rows.append(dict(rep, block=name, simulator=sim))
    header = ("block", "simulator", "vectors", "mismatches", "cycles", "results/cycle")
    table = [header] + [(r["block"], r["simulator"], str(r["vectors"]), str(r["mismatches"]),
                         str(r["cycles"]), str(r.get("results_per_cycle", "-")))
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for n, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print("cycles: requant_* = cycles until the last result under random valid/ready; "
          "sparse_dot_* = the engine's busy counter (checked equal to the cycle model); "
          "sequencer_* = busy cycles over all programs (vectors = random programs)")
    out = BUILD / "reports" / "blocks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"[sim] wrote {out}")
    if failed:
        print(f"[sim] FAILED: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
