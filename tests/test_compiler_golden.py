"""golden.compiler: compiled MLP programs are bit-exact, predicate the right ops, and the
variable-length loop predicates off the steps past the sequence's length."""

import numpy as np
import pytest

from sparq.golden import compiler, digits_model, isa, mlp
from sparq.golden import core as golden_core
from sparq.golden import sequencer as golden_sequencer
from sparq.golden.data import digits_split
from sparq.golden.litert_model import read_dense_layers, run_reference
from tests.conftest import SEED

FIXTURE = digits_model.TEMPLATE


@pytest.fixture(scope="module")
def digits():
    layers = read_dense_layers(FIXTURE)
    x_train, x_test, _, _ = digits_split()
    return layers, mlp.quantize_input(layers, x_test), mlp.quantize_input(layers, x_train)


@pytest.mark.parametrize("predicate_blocks, calibrate, dead, accs",
                         [(False, False, False, 4), (True, False, False, 2),
                          (True, True, True, 3), (False, False, False, 1)])
def test_compiled_mlp_is_bit_exact_on_litert(digits, predicate_blocks, calibrate, dead, accs):
    layers, xq, xt = digits
    c = compiler.compile_mlp(layers, predicate_blocks=predicate_blocks, dead_channels=dead,
                             calibration=xt[:300] if calibrate else None, accs=accs)
    used = {isa.decode(w).acc for w in c.program if isa.decode(w).op in ("LDB", "DOT")}
    assert used == set(range(accs))
    images = 24
    ref = run_reference(FIXTURE, xq[:images])
    for n in range(images):
        m = golden_core.run_image(c, xq[n])
        for k in range(len(layers)):
            assert np.array_equal(c.layer_output(m.x, k), ref[k][n]), (n, k)
    assert m.halted and m.executed + m.predicated_off == len(m.trace)


def test_block_predicates_skip_exactly_the_all_zero_blocks(digits):
    layers, xq, xt = digits
    c = compiler.compile_mlp(layers, calibration=xt[:300])
    m = golden_core.run_image(c, xq[0])
    # count the zero blocks of each layer's (stored) input directly
    zero_blocks = 0
    for k, lay in enumerate(layers):
        a, n = c.inputs if k == 0 else c.outputs[k - 1]
        beats = -(-n // c.cfg.lanes)
        blk = m.x[a:a + beats * c.cfg.lanes].reshape(beats, c.cfg.lanes)
        zero_blocks += int((blk == c.cfg.x_zero_point).all(axis=1).sum()) * lay.w.shape[0]
    assert zero_blocks > 0 and m.predicated_off == zero_blocks


def test_dead_channels_are_skipped(digits):
    layers, xq, _ = digits
    dead = [0, 5, 31]
    w = layers[0].w.copy()
    w[dead] = 0
    model = mlp.with_weights(layers, [w] + [lay.w for lay in layers[1:]])
    c = compiler.compile_mlp(model, predicate_blocks=False, dead_channels=True)
    m = golden_core.run_image(c, xq[3])
    ref = mlp.run_int8(model, xq[3:4])
    for k in range(3):
        assert np.array_equal(c.layer_output(m.x, k), ref[k][0])
    assert m.predicated_off == len(dead)  # one LOOP (its whole DOT body) per dead channel
    skipped_dots = len(dead)  # one DOT per row without block predicates
    total_dots = sum(lay.w.shape[0] for lay in model)
    dots = sum(1 for pc, _, on in m.trace if on and isa.decode(c.program[pc]).op == "DOT")
    assert dots == total_dots - skipped_dots


def test_engine_cost_model(digits):
    layers, xq, _ = digits
    c = compiler.compile_mlp(layers, predicate_blocks=False)
    dense = golden_core.run_image(c, xq[0], golden_core.engine_cost(lanes=16, slots=4,
                                                                  skip=False))
    plain = golden_core.run_image(c, xq[0])
    # one DOT per row of b beats: 4 cycles a dense beat, against one for the whole DOT
    extra = sum(lay.w.shape[0] * (4 * -(-lay.w.shape[1] // 16) - 1) for lay in layers)
    assert dense.cycles == plain.cycles + extra
    sparse = golden_core.run_image(c, xq[0], golden_core.engine_cost(lanes=16, slots=4))
    assert plain.cycles <= sparse.cycles < dense.cycles


def test_variable_length_loop_predicates_off_the_missing_steps():
    rng = np.random.default_rng(SEED)
    layer = read_dense_layers(FIXTURE)[2]  # 16 -> 10
    steps, length = 6, 4
    c, block = compiler.compile_sequence(layer, steps)
    zp = layer.input_zero_point
    x = np.full(c.cfg.x_depth, zp, np.int64)
    seq = rng.integers(-128, 128, (length, 16))
    for t in range(length):
        x[t * block:t * block + 16] = seq[t]
        x[t * block + 16] = zp + 1  # present
    m = golden_sequencer.new_machine(c.cfg, c.params, x)
    golden_sequencer.run(m, c.program)
    out0 = c.outputs[0][0]
    want = mlp.run_int8([layer], seq)[0]
    got = m.x[out0:out0 + steps * 10].reshape(steps, 10)
    assert np.array_equal(got[:length], want)
    assert np.all(got[length:] == zp)  # never written
    body = 1 + 3 * 10
    assert m.predicated_off == (steps - length) * (body - 1)
    assert m.cycles == 1 + steps * (body + 2) + 1  # LOOP, bodies (SETP 3 cycles), HALT


def test_compile_errors(digits):
    layers, _, _ = digits
    with pytest.raises(ValueError, match="layer 1 takes 16 inputs, layer 0 gives 32"):
        compiler.compile_mlp([layers[0], layers[2]])
    with pytest.raises(ValueError, match="needs .* channels; the machine has .* 8"):
        compiler.compile_mlp(layers, channels=8)
    with pytest.raises(ValueError, match="more than the 6 block predicates"):
        compiler.compile_mlp(layers, lanes=8)
    with pytest.raises(ValueError, match="accs must be 1, 2, 3 or 4 .* not 5"):
        compiler.compile_mlp(layers, accs=5)
