"""Shared pytest set-up: which simulators the cocotb tests use, printed in the header, and
the two tiers of the suite.

Tier 1 (``make test``, a few minutes) is every test but the long ones; tier 2 (``make
test-long``: ``-m "(long or gate) and not deep"``) is the long ones: the gate-level
re-simulations of synthesized netlists (marker ``gate``), the whole-core runs marked
``long``, and the other simulator's runs of the block testbenches beyond one configuration
per block (``OTHER_SIMULATOR_TIER1``); ``make formal`` alone runs the proofs marked
``deep``. ``.ci/run`` runs both tiers.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

from sparq.sim.runner import SIMULATORS, default_simulator, simulator_available

SEED = int(os.environ.get("SPARQ_SEED", "20261123"))
# the tests' Verilator runs are short: their models compiled without C++ optimization build
# in about half the time (sim.runner.verilator_cxx_opt)
os.environ.setdefault("SPARQ_VERILATOR_OPT", "-O0")

# No test may fail from the machine's load: hypothesis' per-example deadline and its
# too-slow health check (data generation timed in wall-clock seconds) are off everywhere.
# And the same examples on every run and machine: derandomized (a fixed seed), no example
# database carried over from earlier runs.
settings.register_profile("sparq", deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sparq")


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


# the block configurations whose testbench tier 1 also runs on the second simulator; the
# second simulator's runs of every other configuration are tier 2
OTHER_SIMULATOR_TIER1 = {"sparse_dot_N16_M4", "requant_tflite"}


def pytest_collection_modifyitems(config, items):
    """Mark the second simulator's runs of the block testbenches as ``long`` (tier 2), but
    for the configurations in ``OTHER_SIMULATOR_TIER1``."""
    main = default_simulator()
    for item in items:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        name = params.get("name")
        if params.get("sim", main) != main and name and name not in OTHER_SIMULATOR_TIER1:
            item.add_marker(pytest.mark.long)


def sim_params():
    return [pytest.param(s, full, id=s, marks=pytest.mark.cocotb)
            for s, full in cocotb_simulators()]
