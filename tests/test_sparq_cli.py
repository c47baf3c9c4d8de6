"""The sparq command: compile a .tflite MLP and run it on the core model and the RTL
(LiteRT-checked)."""

import re

import numpy as np
import pytest

from sparq.golden import digits_model
from sparq.golden.data import digits_split
from sparq.sim import kws_run, sparq_cli
from sparq.sim.runner import simulator_available


def test_compile_and_run(tmp_path, capsys):
    model = str(digits_model.TEMPLATE)
    assert sparq_cli.main(["compile", model, "-o", str(tmp_path / "out")]) == 0
    listing = (tmp_path / "out" / "program.s").read_text()
    assert "SETP" in listing and "HALT" in listing
    _, x_test, _, _ = digits_split()
    np.save(tmp_path / "x.npy", x_test[:12])
    assert sparq_cli.main(["run", model, str(tmp_path / "x.npy"), "--out",
                           str(tmp_path / "new" / "y.npy")]) == 0  # its folder is made
    out = capsys.readouterr().out
    assert "every layer equals LiteRT" in out and "cycles per input" in out
    assert np.load(tmp_path / "new" / "y.npy").shape == (12, 10)


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
    nan = np.zeros((3, 64), np.float32)
    nan[2, 5] = np.nan
    for arr, said in ((nan, "1 values that are not finite numbers (the first at row 2, "
                            "feature 5)"),
                      (np.zeros((2, 64), np.int64), "inputs are int64: give float inputs"),
                      (np.zeros((0, 64), np.float32), "not of shape (0, 64)"),
                      (np.zeros((2, 64, 1), np.float32), "not of shape (2, 64, 1)")):
        np.save(tmp_path / "in.npy", arr)
        assert sparq_cli.main(["run", model, str(tmp_path / "in.npy")]) == 2
        assert said in capsys.readouterr().err
    (tmp_path / "file").write_text("not a folder")
    assert sparq_cli.main(["compile", model, "-o", str(tmp_path / "file" / "o")]) == 2
    assert "cannot make the output folder" in capsys.readouterr().err
    for out, said in ((tmp_path, "is a folder; give a file name"),
                      (tmp_path / "file" / "y.npy", "cannot make the folder of --out")):
        assert sparq_cli.main(["run", model, str(tmp_path / "in.npy"), "--out", str(out)]) == 2
        assert said in capsys.readouterr().err


def test_files_that_are_not_models(tmp_path, capsys):
    """Not a .tflite file, and a .tflite file damaged in 300 ways (cut short, or a few bytes
    overwritten; fixed seed): each is refused with exit 2 and a message, or read."""
    np.save(tmp_path / "x.npy", np.zeros((1, 64), np.float32))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    assert sparq_cli.main(["compile", str(junk), "-o", str(tmp_path / "o")]) == 2
    assert "not a .tflite file" in capsys.readouterr().err
    good = digits_model.TEMPLATE.read_bytes()
    rng = np.random.default_rng(7)
    print("damaged-file seed 7")
    refused = {"cut": 0, "overwritten": 0}
    for k in range(300):
        kind = "cut" if k % 2 else "overwritten"
        b = bytearray(good[:rng.integers(8, len(good))] if k % 2 else good)
        for _ in range(0 if k % 2 else rng.integers(1, 6)):
            b[rng.integers(8, len(b))] = rng.integers(0, 256)
        junk.write_bytes(bytes(b))
        code = sparq_cli.main(["compile", str(junk), "-o", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert code in (0, 2), (kind, code)
        assert (err.startswith("sparq: error: ") and str(junk) in err) if code else not err, err
        refused[kind] += code == 2
    print(refused)
    assert refused["cut"] == 150 and 0 < refused["overwritten"] < 150, refused


def test_the_ice40_configuration(tmp_path, capsys):
    """``--config core_ice40``: 4 lanes, so a 64-input row is two DOTs (15 and 1 beats); its
    16 blocks are more than the block predicates, which the error says how to avoid."""
    model = str(digits_model.TEMPLATE)
    _, x_test, _, _ = digits_split()
    np.save(tmp_path / "x.npy", x_test[:6])
    assert sparq_cli.main(["run", model, str(tmp_path / "x.npy"), "--config",
                           "core_ice40"]) == 2
    err = capsys.readouterr().err
    assert "16 input blocks" in err and "(try --no-predicates)" in err
    assert sparq_cli.main(["compile", model, "-o", str(tmp_path / "o"), "--config",
                           "core_ice40", "--no-predicates"]) == 0
    listing = (tmp_path / "o" / "program.s").read_text()
    assert "beats=15" in listing and "beats=1\n" in listing
    assert sparq_cli.main(["run", model, str(tmp_path / "x.npy"), "--config", "core_ice40",
                           "--no-predicates"]) == 0
    assert "every layer equals LiteRT" in capsys.readouterr().out


@pytest.mark.cocotb
@pytest.mark.skipif(not simulator_available("icarus"), reason="needs Icarus (iverilog)")
def test_run_on_the_rtl(tmp_path, capsys):
    """``sparq run --rtl`` (Icarus, 3 images): the RTL's outputs and cycles per input are
    the core model's, and every layer equals LiteRT."""
    model = str(digits_model.TEMPLATE)
    _, x_test, _, _ = digits_split()
    np.save(tmp_path / "x.npy", x_test[:3])
    assert sparq_cli.main(["run", model, str(tmp_path / "x.npy"), "--out",
                           str(tmp_path / "model.npy")]) == 0
    by_model = capsys.readouterr().out
    assert sparq_cli.main(["run", model, str(tmp_path / "x.npy"), "--rtl", "--sim", "icarus",
                           "--out", str(tmp_path / "rtl.npy")]) == 0
    by_rtl = capsys.readouterr().out
    assert "every layer equals LiteRT" in by_rtl
    assert np.array_equal(np.load(tmp_path / "rtl.npy"), np.load(tmp_path / "model.npy"))

    def cycles(out):
        return re.search(r"cycles per input: ([0-9.]+) \((RTL|core model)\)", out).groups()

    assert cycles(by_rtl) == (cycles(by_model)[0], "RTL"), (by_rtl, by_model)


KWS_DIR = digits_model.TEMPLATE.parent / "mlperf_tiny"


def test_keyword_spotter_on_the_core_model(tmp_path, capsys):
    """A convolutional graph picks a configuration with the convolution extensions: every
    op checked against LiteRT, the class and the core model's cycles printed; compile
    writes the listing and the layout (the RTL run: ``test_keyword_spotter_on_the_rtl``)."""
    model = str(KWS_DIR / "kws_ref_model.tflite")
    inputs = str(KWS_DIR / "kws_input.npy")
    assert sparq_cli.main(["run", model, inputs, "--out", str(tmp_path / "y.npy")]) == 0
    out = capsys.readouterr().out
    assert "every op equals LiteRT" in out and "classes: [5]" in out
    assert re.search(r"cycles per input: \d+\.\d \(core model, core_kws", out)
    assert np.load(tmp_path / "y.npy").shape == (1, 12)
    assert sparq_cli.main(["run", model, inputs, "--config", "core"]) == 2
    assert "has no convolution extensions" in capsys.readouterr().err
    assert sparq_cli.main(["compile", model, "-o", str(tmp_path / "k")]) == 0
    assert "SETG" in (tmp_path / "k" / "program.s").read_text()
    assert "op 12: SOFTMAX on the host" in capsys.readouterr().out
    np.save(tmp_path / "short.npy", np.zeros((2, 100), np.float32))
    assert sparq_cli.main(["run", model, str(tmp_path / "short.npy")]) == 2
    assert "not rows of the model's input (49, 10, 1)" in capsys.readouterr().err
    mlp = str(digits_model.TEMPLATE)
    assert sparq_cli.main(["compile", mlp, "-o", str(tmp_path / "m"), "--config",
                           "core_kws"]) == 2
    assert "core_kws runs convolutional graphs" in capsys.readouterr().err


@pytest.mark.long
@pytest.mark.skipif(not simulator_available("verilator"), reason="needs Verilator")
def test_keyword_spotter_on_the_rtl(tmp_path, capsys, monkeypatch):
    """``sparq run kws_ref_model.tflite inputs.npy --rtl``: 20 inputs on core_kws's RTL
    (Verilator), every op read back and equal to the golden model's and LiteRT's reference
    kernels', the cycles of the whole program and of each op run alone the core model's;
    the real input is class 5. (18 M simulated cycles: the model is built with Verilator's
    own C++ optimization, not the tests' quick -O0 builds.)"""
    monkeypatch.setenv("SPARQ_VERILATOR_OPT", "")
    seed = 20261207
    print(f"seed {seed}")
    xq = kws_run.inputs(np.random.default_rng(seed), 16, structured=True)
    np.save(tmp_path / "x.npy", xq)
    code = sparq_cli.main(["run", str(KWS_DIR / "kws_ref_model.tflite"),
                           str(tmp_path / "x.npy"), "--rtl", "--out", str(tmp_path / "y.npy")])
    out, err = capsys.readouterr()
    print(out)
    print(err)  # (the MISMATCH lines, if any)
    assert code == 0
    assert f"every op equals LiteRT's reference kernels on {len(xq)} inputs (RTL)" in out
    assert "the RTL equals the golden model on every op" in out
    assert np.load(tmp_path / "y.npy")[0].argmax() == 5
    assert re.search(r"cycles per input: \d+\.\d \(RTL, core_kws", out)
