"""The convolution core's Verilog under cocotb (``sim/tb_core.py``): random convolution
programs (``sim.seq_stim.conv_case``) on ``core_conv_small``, each loaded with its weights
(delta records), parameters and activations, run, and read back: every activation and the
cycle count must be golden's (``golden.sequencer``) and the core model's."""

import numpy as np
import pytest

from sparq.golden import core as golden_core
from sparq.golden import sequencer as golden_sequencer
from sparq.sim import seq_stim
from sparq.sim.core_run import make_job, run_job
from sparq.spec.configs import CONFIGS
from tests.conftest import SEED, sim_params

NAME = "core_conv_small"


def _cases(rng, n):
    """``n`` random convolution programs that run without an error (the testbench's core
    must not raise its error flag; the error paths are tests/test_core_rtl.py's)."""
    machine = {k: v for k, v in CONFIGS[NAME][1].items()
               if k in golden_sequencer.MachineConfig.__dataclass_fields__}
    cases = []
    while len(cases) < n:
        case = seq_stim.conv_case(rng, bad_rate=0.0, **machine)
        if seq_stim.expected(case)[1] is None:
            cases.append(case)
    return cases


@pytest.mark.parametrize("sim, full", sim_params())
def test_conv_core_random_programs(sim, full):
    rng = np.random.default_rng(SEED + 6)
    print(f"seed {SEED + 6}")
    core = CONFIGS[NAME][1]
    cycles = 0
    for n, case in enumerate(_cases(rng, 6 if full else 3)):
        job = make_job(case.params, case.cfg.w_depth, [case.program],
                       [[dict(program=0, read=list(range(case.cfg.x_depth)))]], [case.x_init])
        ((got,),), _ = run_job(NAME, job, sim=sim, seed=SEED + n, tag="random")
        want, _ = seq_stim.expected(case)
        assert got["outputs"] == want["x"], n
        model, _ = golden_core.predict_program_cycles(
            case.cfg, case.params, case.program, case.x_init,
            **{k: v for k, v in core.items() if k not in vars(case.cfg)})
        assert got["cycles"] == model, (n, got["cycles"], model)
        assert got["executed"] == want["executed"], n
        cycles += got["cycles"]
    print(f"{NAME} on {sim}: {n + 1} programs, {cycles} cycles, as golden")
