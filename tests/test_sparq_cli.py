"""The sparq command: compile a .tflite MLP and run it on the core model (LiteRT-checked)."""

import numpy as np

from golden import digits_model
from golden.data import digits_split
from sim import sparq_cli


def test_compile_and_run(tmp_path, capsys):
    model = str(digits_model.TEMPLATE)
    assert sparq_cli.main(["compile", model, "-o", str(tmp_path / "out")]) == 0
    listing = (tmp_path / "out" / "program.s").read_text()
    assert "SETP" in listing and "HALT" in listing
    _, x_test, _, _ = digits_split()
    np.save(tmp_path / "x.npy", x_test[:12])
    assert sparq_cli.main(["run", model, str(tmp_path / "x.npy"), "--out",
                           str(tmp_path / "y.npy")]) == 0
    out = capsys.readouterr().out
    assert "every layer equals LiteRT" in out and "cycles per input" in out
    assert np.load(tmp_path / "y.npy").shape == (12, 10)


def test_errors(tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((2, 5), np.float32))
    model = str(digits_model.TEMPLATE)
    assert sparq_cli.main(["run", model, str(tmp_path / "bad.npy")]) == 2
    assert "inputs have 5 features, the model takes 64" in capsys.readouterr().err
    conv = str(digits_model.TEMPLATE.with_name("digits_mlp_conv1x1.tflite"))
    assert sparq_cli.main(["compile", conv, "-o", str(tmp_path / "o")]) == 2
    assert "CONV_2D" in capsys.readouterr().err
    assert sparq_cli.main(["run", str(tmp_path / "missing.tflite"),
                           str(tmp_path / "bad.npy")]) == 2
