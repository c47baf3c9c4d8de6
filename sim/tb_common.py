"""What every cocotb testbench shares: its configuration, clock and reset, and its report.

The runner (``sim.runner.run``, in sim/runner.py) hands the configuration over in the
environment variable ``SPARQ_TB`` as JSON: ``meta`` (the path of the block's JSON from
hw.export), ``vectors``, ``seed``, ``idle``, ``stall`` and ``report`` (where the testbench
writes its figures), plus the keys its ``extra`` adds, which the testbenches read when
present: ``vectors_file`` (tb_requant: a JSON list of given input vectors), ``beats_file``
(tb_sparse_dot: given beats), ``program_file`` (tb_sequencer: a given program),
``core_file`` (tb_core: the job, required) and ``outputs_file`` (where the testbench saves
the DUT's outputs: .npy from tb_requant and tb_sequencer, JSON from tb_core).
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge


def config():
    """The configuration from ``SPARQ_TB``, with ``block`` added: the block's JSON read from
    ``meta`` (its ``params``' ``bins`` keyed by int widths again)."""
    cfg = json.loads(os.environ["SPARQ_TB"])
    with open(cfg["meta"]) as f:
        cfg["block"] = json.load(f)
    params = cfg["block"]["params"]
    if params.get("bins"):  # JSON keys are strings; the widths are ints
        params["bins"] = {int(k): v for k, v in params["bins"].items()}
    return cfg


def rng_for(cfg, salt=0):
    """A NumPy generator seeded with the configuration's ``seed`` plus ``salt`` (logged)."""
    seed = int(cfg["seed"]) + salt
    cocotb.log.info("stimulus seed %d (SPARQ_TB seed %d)", seed, cfg["seed"])
    return np.random.default_rng(seed)


CLOCK_NS = 10  # the testbenches' clock period


async def start(dut, cycles=3):
    """Start a 100 MHz clock (``CLOCK_NS``) on ``dut.clk``, hold ``dut.rst`` high for
    ``cycles`` rising edges, then release it and return after one more rising edge."""
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def report(cfg, **figures):
    """Merge ``figures`` into the JSON report file ``cfg["report"]`` (a key given again
    replaces the earlier value)."""
    path = cfg["report"]
    old = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    old.update(figures)
    with open(path, "w") as f:
        json.dump(old, f, indent=1)
