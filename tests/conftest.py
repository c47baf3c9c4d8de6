"""Shared pytest set-up: which simulators the cocotb tests use, printed in the header."""

import os

import pytest

from sim.runner import SIMULATORS, default_simulator, simulator_available

SEED = int(os.environ.get("SPARQ_SEED", "20261123"))
# the tests' Verilator runs are short: their models compiled without C++ optimization build
# in about half the time (sim.runner.verilator_cxx_opt)
os.environ.setdefault("SPARQ_VERILATOR_OPT", "-O0")


def cocotb_simulators():
    """[(simulator, full)]: the default simulator with the full vector set; the other one,
    when available and SIM is not set, with a smaller set (CI covers both this way)."""
    main = default_simulator()
    sims = [(main, True)]
    if not os.environ.get("SIM"):
        sims += [(s, False) for s in SIMULATORS if s != main and simulator_available(s)]
    return sims


def pytest_report_header(config):
    sims = ", ".join(f"{s} ({'full' if full else 'smaller'} set)"
                     for s, full in cocotb_simulators())
    return [f"sparq: cocotb simulators: {sims}; seed {SEED} (SPARQ_SEED overrides)"]


def sim_params():
    return [pytest.param(s, full, id=s, marks=pytest.mark.cocotb)
            for s, full in cocotb_simulators()]
