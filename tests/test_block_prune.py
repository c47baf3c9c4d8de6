"""golden.block_prune: the block mask, the pruning schedule during float training, and the
structure of the block-pruned int8 model (every beat of the core's engine at one cycle)."""

import numpy as np
import pytest

from sparq.golden import block_prune, mlp
from sparq.golden.data import digits_split
from sparq.golden.sparse_dot import beat_cycles
from tests.conftest import SEED


def test_block_mask_keeps_the_largest_per_block():
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    w = rng.normal(size=(5, 40))
    act = rng.uniform(0, 1, 40)
    mask = block_prune.block_mask(w, 3, 16, act)
    score = np.abs(w) * act
    for j in range(0, 40, 16):
        blk = mask[:, j:j + 16]
        assert (blk.sum(axis=1) == min(3, blk.shape[1])).all()
        for o in range(5):  # every kept weight scores at least as high as every dropped one
            s = score[o, j:j + 16]
            assert s[blk[o]].min() >= s[~blk[o]].max()


@pytest.mark.parametrize("keep", [-1, 17, 2.5])
def test_block_mask_rejects_bad_keep(keep):
    with pytest.raises(ValueError, match="keep must be an integer"):
        block_prune.block_mask(np.ones((2, 16)), keep, 16)


def test_pruned_training_has_the_block_structure():
    x, _, y, _ = digits_split()
    params = mlp.train_float(x[:400], y[:400], (32, 16, 10), epochs=30, seed=SEED % 1000,
                             prune=block_prune.schedule((4, 4, 8), 16, start=2, stop=12,
                                                        every=2))
    for (w, _), keep in zip(params, (4, 4, 8), strict=True):
        for j in range(0, w.shape[1], 16):
            assert ((w[:, j:j + 16] != 0).sum(axis=1) <= keep).all()
    # so every beat of the first two layers costs the engine one cycle (16 lanes, 4 slots)
    nnz = (params[0][0] != 0).reshape(32, 4, 16).sum(axis=2)
    assert (beat_cycles(nnz.ravel(), lanes=16, slots=4) == 1).all()


def test_sparse_int8_picks_by_validation_and_checks_keeps():
    x_fit, x_val, y_fit, y_val = *digits_split()[:1], None, None, None
    with pytest.raises(ValueError, match="keeps has 2 entries"):
        block_prune.sparse_int8(x_fit, y_fit, x_val, y_val, keeps=(4, 4))
    x, _, y, _ = digits_split()
    best = block_prune.sparse_int8(x[:500], y[:500], x[500:700], y[500:700], seeds=(0, 1),
                                   epochs=20, fine_tune_epochs=2)
    assert len(best.history) == 2
    assert best.val_accuracy == max(a for _, a in best.history)
    for lay, keep in zip(best.layers, (4, 4, 8), strict=True):
        nz = (lay.w != 0).reshape(lay.w.shape[0], -1, 16).sum(axis=2)
        assert (nz <= keep).all()
