"""Run-time activation zero points (SETL): an MLP whose input is not a [0, 1] image (input
zero point 7, hidden layers at -128 after their ReLU) compiled for the ECP5 ``core``, whose
programs start at -128; every layer against LiteRT's reference kernels, through the core
model and on the RTL (cycles as the core model predicts)."""

import numpy as np
import pytest

from sparq.golden import compiler, isa
from sparq.golden import core as golden_core
from sparq.golden.litert_model import read_dense_layers, run_reference
from sparq.spec.configs import CONFIGS
from tests.conftest import SEED
from tests.tflite_builder import fc_chain

WIDTHS = (40, 32, 16, 10)  # 58 channels of the core's 64
INPUT_ZP = 7


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The model file, its layers, and 24 int8 inputs: random, all at the zero point,
    saturated low and high, alternating extremes."""
    seed = SEED + 23
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("zp") / "mlp_zp7.tflite"
    path.write_bytes(fc_chain(rng, WIDTHS, input_scale=0.05, input_zero_point=INPUT_ZP))
    layers = read_dense_layers(path)
    xq = np.concatenate([rng.integers(-128, 128, (20, WIDTHS[0])),
                         np.full((1, WIDTHS[0]), INPUT_ZP), np.full((1, WIDTHS[0]), -128),
                         np.full((1, WIDTHS[0]), 127),
                         np.where(np.arange(WIDTHS[0]) % 2, 127, -128)[None]]).astype(np.int8)
    return path, layers, xq


def test_the_model_has_two_zero_points(model):
    _, layers, _ = model
    assert [lay.input_zero_point for lay in layers] == [INPUT_ZP, -128, -128]


@pytest.mark.parametrize("predicate_blocks", [True, False])
def test_core_model_bitexact_with_litert(model, predicate_blocks):
    path, layers, xq = model
    c = compiler.compile_for_core(layers, CONFIGS["core"][1], predicate_blocks=predicate_blocks)
    setl = [isa.decode(w) for w in c.program if isa.decode(w).op == "SETL"]
    assert [s.in_zp for s in setl] == [INPUT_ZP, -128]  # before layer 0, before layer 1
    assert c.cfg.x_zero_point == -128  # the core's: what a program starts with
    ref = run_reference(path, xq)
    for n, row in enumerate(xq):
        cycles, m = golden_core.predict_cycles(c, row, **CONFIGS["core"][1])
        for k in range(len(layers)):
            assert np.array_equal(c.layer_output(m.x, k), ref[k][n]), (n, k)
        assert cycles > m.cycles
    # the padding lanes of the input block hold its zero point: the XZERO predicates of an
    # all-zero-point input hold, and every DOT of layer 0 is predicated off
    m = golden_core.run_image(c, np.full(WIDTHS[0], INPUT_ZP))
    first = [on for pc, _, on in m.trace if isa.decode(c.program[pc]).op == "DOT"
             and isa.decode(c.program[pc]).xaddr < c.outputs[0][0]]
    assert len(first) == (3 * WIDTHS[1] if predicate_blocks else WIDTHS[1])
    assert not any(first) if predicate_blocks else all(first)


def test_a_single_zero_point_would_be_wrong(model):
    """The check can fail: compiled as if every layer had the hidden layers' zero point
    (no SETL), layer 0 differs from LiteRT."""
    path, layers, xq = model
    c = compiler.compile_for_core(layers, CONFIGS["core"][1], predicate_blocks=False)
    c.program = [w for w in c.program if isa.decode(w).op != "SETL"]
    ref = run_reference(path, xq[:4])
    m = golden_core.run_image(c, xq[0])
    assert not np.array_equal(c.layer_output(m.x, 0), ref[0][0])


@pytest.mark.cocotb
def test_rtl_core_bitexact_with_litert_and_the_model(model):
    from sparq.sim.core_run import run_core

    path, layers, xq = model
    rows = xq[[0, 1, 2, 20, 21, 22, 23]]
    c = compiler.compile_for_core(layers, CONFIGS["core"][1])
    ref = run_reference(path, rows)
    res, _ = run_core("core", c, rows, seed=SEED, tag="zp")
    for n, r in enumerate(res):
        for k in range(len(layers)):
            assert np.array_equal(r["layers"][k], ref[k][n]), (n, k)
        cycles, _ = golden_core.predict_cycles(c, rows[n], **CONFIGS["core"][1])
        assert r["cycles"] == cycles, (n, r["cycles"], cycles)
    print(f"{len(rows)} inputs x {len(layers)} layers equal to LiteRT; cycles "
          f"{[r['cycles'] for r in res]} as predicted")
