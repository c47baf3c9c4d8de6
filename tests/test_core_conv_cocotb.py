"""The convolution core's Verilog under cocotb (``sim/tb_core.py``): random convolution
programs (``sim.seq_stim.conv_case``) on ``core_conv_small``, each loaded with its weights
(delta records), parameters and activations, run, and read back: every activation and the
cycle count must be golden's (``golden.sequencer``) and the core model's."""

import json

import numpy as np
import pytest

from sparq.golden import core as golden_core
from sparq.golden import sequencer as golden_sequencer
from sparq.sim import seq_stim
from sparq.sim.core_run import weight_records
from sparq.sim.runner import BUILD, run
from sparq.spec.configs import CONFIGS
from tests.conftest import SEED, sim_params

NAME = "core_conv_small"


def _job(case):
    """``tb_core``'s job for one case: its program and activations as the single image."""
    prm, cfg = case.params, case.cfg
    w = np.zeros(cfg.w_depth, np.int64)
    w[:prm.w.size] = prm.w
    params = [dict(ch=c, p=dict(bias=int(prm.bias[c]), multiplier=int(prm.multiplier[c]),
                                shift=int(prm.shift[c]), output_zero_point=int(prm.out_zp[c]),
                                act_min=int(prm.act_min[c]), act_max=int(prm.act_max[c])))
              for c in range(len(prm.bias))]
    return dict(records=weight_records(np.zeros_like(w), w), params=params,
                program=[dict(addr=a, word=int(v)) for a, v in enumerate(case.program)],
                images=[[int(v) for v in case.x_init]], read=list(range(cfg.x_depth)))


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
    folder = BUILD / "given" / "core" / f"{NAME}-{sim}"
    folder.mkdir(parents=True, exist_ok=True)
    cycles = 0
    for n, case in enumerate(_cases(rng, 6 if full else 3)):
        job_file, out_file = folder / "job.json", folder / "results.json"
        job_file.write_text(json.dumps(_job(case)))
        out_file.unlink(missing_ok=True)
        run(NAME, "tb_core", sim=sim, vectors=1, seed=SEED + n, idle=0.2, stall=0.0,
            tag="random", extra=dict(core_file=str(job_file), outputs_file=str(out_file)))
        got, = json.loads(out_file.read_text())
        want, _ = seq_stim.expected(case)
        assert got["outputs"] == want["x"], n
        model, _ = golden_core.predict_program_cycles(
            case.cfg, case.params, case.program, case.x_init,
            **{k: v for k, v in core.items() if k not in vars(case.cfg)})
        assert got["cycles"] == model, (n, got["cycles"], model)
        assert got["executed"] == want["executed"], n
        cycles += got["cycles"]
    print(f"{NAME} on {sim}: {n + 1} programs, {cycles} cycles, as golden")
