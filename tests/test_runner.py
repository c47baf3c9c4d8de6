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
