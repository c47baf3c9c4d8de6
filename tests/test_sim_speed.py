"""The core testbench's speed figures (``sim.tb_core``'s report, ``sim.core_run.throughput``)
on a couple of digits images on the default simulator: present and consistent. No
assertion on the speed itself: it depends on the machine and on its load
(``make bench`` section ``sim_speed`` measures it, docs/simulation.md)."""

import time

import numpy as np
import pytest

from sparq.golden import compiler, mlp, trained
from sparq.golden.data import digits_split
from sparq.sim.core_run import run_core, throughput
from tests.conftest import SEED


def _digits(n):
    layers = trained.load("sparse")
    _, x_test, _, _ = digits_split()
    xq = mlp.quantize_input(layers, x_test[:n])
    return layers, xq, compiler.compile_mlp(layers, predicate_blocks=False, prog_depth=512)


@pytest.mark.cocotb
def test_report_has_consistent_speed_figures():
    layers, xq, prog = _digits(2)
    before = time.time()
    res, rep = run_core("core", prog, xq, seed=SEED, tag="speedtest")
    golden = mlp.run_int8(layers, xq)
    for n, r in enumerate(res):  # the testbench's wait for the busy core changes nothing
        assert all(np.array_equal(r["layers"][k], golden[k][n]) for k in range(len(golden)))
    assert rep["images"] == 2
    assert rep["core_cycles"] == sum(r["cycles"] for r in res) > 0
    assert rep["clock_cycles"] >= rep["core_cycles"]
    assert rep["wall_seconds"] > 0
    assert 0 <= rep["busy_wall_seconds"] <= rep["wall_seconds"]
    # the test started after the build, and its body took at most the run's whole time
    assert before <= rep["started_at"] <= time.time() - rep["wall_seconds"] + 0.01
    t = throughput(rep)
    assert set(t) == {"clock_cycles", "wall_seconds", "cycles_per_second"}
    assert t["clock_cycles"] == rep["clock_cycles"] and t["wall_seconds"] == rep["wall_seconds"]
    assert t["cycles_per_second"] == pytest.approx(rep["clock_cycles"] / rep["wall_seconds"],
                                                   rel=1e-3)


@pytest.mark.cocotb
def test_a_core_busy_too_long_is_named():
    """The wait for the core (one trigger on ``busy`` falling, bounded in simulated time)
    still gives up, with the core's state, when the core stays busy too long."""
    _, xq, prog = _digits(1)
    with pytest.raises(AssertionError, match=r"the core was still busy after 40 cycles: "
                                             r"executed \d+, engine cycles \d+"):
        run_core("core", prog, xq, seed=SEED, tag="speedtimeout", max_cycles=40)
