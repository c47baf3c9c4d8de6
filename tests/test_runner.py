"""sim.runner's settings: the Verilator models' C++ optimization level."""

import pytest

from sparq.sim import runner


def test_verilator_opt_levels(monkeypatch):
    monkeypatch.setenv("SPARQ_VERILATOR_OPT", "-O0")
    assert runner.verilator_cxx_opt() == "-O0"
    monkeypatch.setenv("SPARQ_VERILATOR_OPT", "-O3x")
    with pytest.raises(ValueError, match="'-O3x'"):
        runner.verilator_cxx_opt()
    monkeypatch.delenv("SPARQ_VERILATOR_OPT")
    assert runner.verilator_cxx_opt() == ""


def test_verilator_makeflags_replace_only_the_levels(monkeypatch):
    monkeypatch.setenv("MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O2")
    assert runner._verilator_makeflags("-O0").split() == [
        "CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0"]
    assert runner._verilator_makeflags("") == "CFG_CXXFLAGS_PCH_I=-include"
    monkeypatch.setenv("MAKEFLAGS", "-k")  # the include flag is added where it was missing
    assert runner._verilator_makeflags("") == "-k CFG_CXXFLAGS_PCH_I=-include"


def test_run_graph_beside_returns_both_and_raises_either(monkeypatch):
    """``graph_run.run_graph_beside``: both results; the RTL run's exception; the golden
    model's, with the RTL's as its cause when both fail (none is lost)."""
    from sparq.sim import graph_run

    def rtl_ok(name, c, rows, **kw):
        return [name, len(rows)], {"kw": kw}

    def rtl_fails(name, c, rows, **kw):
        raise RuntimeError("the RTL run failed")

    def golden_fails():
        raise ValueError("the golden model failed")

    monkeypatch.setattr(graph_run, "run_graph", rtl_ok)
    assert graph_run.run_graph_beside(lambda: "golden", "cfg", None, [1, 2], sim="x") == \
        ("golden", (["cfg", 2], {"kw": {"sim": "x"}}))
    with pytest.raises(ValueError, match="golden model failed") as e:
        graph_run.run_graph_beside(golden_fails, "cfg", None, [1])
    assert e.value.__cause__ is None
    monkeypatch.setattr(graph_run, "run_graph", rtl_fails)
    with pytest.raises(RuntimeError, match="the RTL run failed"):
        graph_run.run_graph_beside(lambda: "golden", "cfg", None, [1])
    with pytest.raises(ValueError, match="golden model failed") as e:
        graph_run.run_graph_beside(golden_fails, "cfg", None, [1])
    assert isinstance(e.value.__cause__, RuntimeError)
