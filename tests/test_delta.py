"""golden.delta: exact round trips, every tampered delta refused with the model untouched,
replays and downgrades refused, atomic apply under injected faults, the sparq-delta CLI."""

import re
import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sparq.golden import mlp, trained
from sparq.golden.delta import apply as dapply
from sparq.golden.delta import cli, fileformat, model_file, train
from sparq.golden.delta.fileformat import DeltaError, make_delta, parse_delta
from tests.conftest import SEED


@pytest.fixture(scope="module")
def models():
    """(old bytes, new bytes): the int8 digits model and a 150-weight constrained update."""
    base = trained.load("int8")
    sc = train.Scenario("shift", base, *_shifted())
    new = mlp.with_weights(base, train.constrained_update(base, sc.x_train, sc.y_train, k=150,
                                                          epochs=5))
    return (model_file.dump(model_file.layers_to_tensors(base), 1),
            model_file.dump(model_file.layers_to_tensors(new), 2))


def _shifted():
    from sparq.golden.data import digits_split
    x_train, x_test, y_train, y_test = digits_split()
    return (train.shift_images(x_train, seed=1), y_train, train.shift_images(x_test, seed=2),
            y_test)


KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@st.composite
def tensor_pairs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    old, new = {}, {}
    for k in range(draw(st.integers(1, 4))):
        dtype = draw(st.sampled_from([np.int8, np.int32, np.int16]))
        shape = tuple(draw(st.lists(st.integers(1, 40), min_size=1, max_size=3)))
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -(1 << 20)), min(info.max, 1 << 20)
        a = rng.integers(lo, hi + 1, shape).astype(dtype)
        b = a.copy()
        frac = draw(st.sampled_from([0.0, 0.01, 0.3, 1.0]))
        m = rng.random(shape) < frac
        b[m] = rng.integers(lo, hi + 1, int(m.sum())).astype(dtype)
        old[f"t{k}"], new[f"t{k}"] = a, b
    old["scale"] = new["scale"] = rng.random(3).astype(np.float32)
    return old, new


@settings(max_examples=300, deadline=None)
@given(tensor_pairs(), st.booleans(), st.sampled_from(fileformat.READABLE))
def test_round_trip_is_exact(pair, signed, version):
    old, new = pair
    ob, nb = model_file.dump(old, 7), model_file.dump(new, 8)
    data = make_delta(ob, nb, signing_key=KEY if signed else None, version=version)
    d = parse_delta(data, public_key=KEY.public_key() if signed else None)
    assert fileformat.apply_to_bytes(ob, d) == nb
    want = sum(int((old[k] != new[k]).sum()) for k in old)
    assert d.changed == want and d.counter == 8 and d.signed == signed
    assert d.version == version and data[4] == version


def _body(data):
    import zstandard
    plen = fileformat.HEADER.unpack_from(data)[6]
    return zstandard.ZstdDecompressor().decompress(
        data[fileformat.HEADER.size:fileformat.HEADER.size + plen])


def test_rice_coded_indices_and_shifted_differences():
    """Sparse changes that are multiples of 32: version 2 writes Rice-coded gaps (coding 3)
    and 3-bit differences shifted by 5; version 1 writes varint gaps and 8-bit differences.
    Both read back exactly; version 2 is the smaller."""
    rng = np.random.default_rng(SEED)
    a = rng.integers(-100, 101, (32, 64)).astype(np.int8)
    b = a.copy()
    idx = np.sort(rng.choice(a.size, 150, replace=False))
    b.flat[idx] = np.where(a.flat[idx] > 0, a.flat[idx] - 96, a.flat[idx] + 64)
    ob, nb = model_file.dump({"w": a}, 1), model_file.dump({"w": b}, 2)
    v1, v2 = make_delta(ob, nb, version=1), make_delta(ob, nb)
    body = _body(v2)
    # tensor count, name length, "w", dtype, rank, 32, 64, then 150 (a 2-byte varint) and the
    # index coding; at the end the width and the shift, then 150 x 3 bits (57 bytes)
    assert body[:10] == b"\x01\x01w\x00\x02\x20\x40\x96\x01" + bytes([fileformat.codec.RICE])
    assert body[-59:-57] == bytes([3, 5])
    for data in (v1, v2):
        d = parse_delta(data)
        assert d.tensors[0].indices.tolist() == idx.tolist()
        assert fileformat.apply_to_bytes(ob, d) == nb
    print(f"150 changes of 2,048: version 1 {len(v1)} bytes, version 2 {len(v2)} bytes")
    assert len(v2) + 20 < len(v1)


def test_malformed_rice_streams_are_refused():
    from sparq.golden.delta import codec
    idx = np.array([1, 3, 4, 9, 12, 20, 21, 27, 30, 38, 45, 46, 50, 61, 63, 70, 77, 80, 91])
    n = idx.size
    out = bytearray()
    codec.encode_indices(out, idx, 256)
    assert out[0] == codec.RICE
    gaps = np.diff(np.concatenate([[-1], idx])) - 1
    used = len(codec.rice_bits(gaps, out[1]))
    assert len(out) == 2 + (used + 7) // 8 and used % 8  # the last byte has padding bits
    assert codec.decode_indices(codec.Reader(out), n, 256, "t").tolist() == idx.tolist()
    with pytest.raises(codec.DecodeError, match="end early"):
        codec.decode_indices(codec.Reader(out[:-1]), n, 256, "t")
    with pytest.raises(codec.DecodeError, match="outside the tensor's 80 elements"):
        codec.decode_indices(codec.Reader(out), n, 80, "t")
    bad = bytearray(out)
    bad[-1] |= 0x80
    with pytest.raises(codec.DecodeError, match="padding bits"):
        codec.decode_indices(codec.Reader(bad), n, 256, "t")
    bad = bytearray(out)
    bad[1] = 16
    with pytest.raises(codec.DecodeError, match="Rice parameter 16"):
        codec.decode_indices(codec.Reader(bad), n, 256, "t")
    with pytest.raises(codec.DecodeError, match="unknown index coding 3"):
        codec.decode_indices(codec.Reader(out), n, 256, "t", rice=False)


def test_model_file_round_trip(models):
    old, _ = models
    tensors, counter = model_file.parse(old)
    assert model_file.dump(tensors, counter) == old and counter == 1
    layers = model_file.tensors_to_layers(tensors)
    base = trained.load("int8")
    assert all(np.array_equal(a.w, b.w) and a.act_min == b.act_min
               for a, b in zip(layers, base, strict=True))


def _mutations(data, rng, n):
    """``n`` corrupted copies of ``data``: bit flips, byte changes, truncations, insertions,
    deletions and appended bytes (each differs from ``data``)."""
    out = []
    while len(out) < n:
        kind = rng.integers(0, 6)
        b = bytearray(data)
        if kind == 0:  # flip 1-3 bits
            for _ in range(rng.integers(1, 4)):
                i = int(rng.integers(0, len(b)))
                b[i] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # random byte
            i = int(rng.integers(0, len(b)))
            b[i] = (b[i] + int(rng.integers(1, 256))) % 256
        elif kind == 2:  # truncate
            b = b[:int(rng.integers(0, len(b)))]
        elif kind == 3:  # insert
            i = int(rng.integers(0, len(b) + 1))
            b[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 5)), dtype=np.uint8))
        elif kind == 4:  # delete
            i = int(rng.integers(0, len(b)))
            del b[i:i + int(rng.integers(1, 5))]
        else:  # append
            b += bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        if bytes(b) != data:
            out.append(bytes(b))
    return out


@pytest.mark.parametrize("signed", [False, True])
def test_tampered_deltas_are_refused_and_change_nothing(models, tmp_path, signed):
    old, new = models
    data = make_delta(old, new, signing_key=KEY if signed else None)
    path = tmp_path / "model.safetensors"
    path.write_bytes(old)
    rng = np.random.default_rng(SEED + signed)
    print(f"seed {SEED + signed}")
    reasons = {}
    for bad in _mutations(data, rng, 5_000):
        with pytest.raises(DeltaError) as e:
            dapply.apply_delta(path, bad, public_key=KEY.public_key() if signed else None)
        msg = str(e.value)
        assert msg
        kind = re.sub(r"\d+|b'.*'", "N", msg)[:45]
        reasons[kind] = reasons.get(kind, 0) + 1
    assert path.read_bytes() == old
    assert list(tmp_path.iterdir()) == [path]
    print(f"{'signed' if signed else 'unsigned'}: 5,000 refused; reasons {reasons}")
    dapply.apply_delta(path, data, public_key=KEY.public_key() if signed else None)
    assert path.read_bytes() == new


def test_wrong_base_replay_and_downgrade(models, tmp_path):
    old, new = models
    path = tmp_path / "m.safetensors"
    path.write_bytes(old)
    d12 = make_delta(old, new)
    dapply.apply_delta(path, d12)
    with pytest.raises(DeltaError, match="not this delta's base"):  # replayed
        dapply.apply_delta(path, d12)
    # a third model, then the 1 -> 2 delta again (a downgrade attempt of a different kind)
    tensors, _ = model_file.parse(new)
    newer = model_file.dump(tensors, 3)
    dapply.apply_delta(path, make_delta(new, newer))
    with pytest.raises(DeltaError, match="not this delta's base"):
        dapply.apply_delta(path, d12)
    # a delta to a lower counter cannot be made, and a forged one is refused
    with pytest.raises(DeltaError, match="counter 2 must be above the old one's 3"):
        make_delta(newer, new)
    assert path.read_bytes() == newer
    forged = _forge_counter(make_delta(newer, model_file.dump(tensors, 4)), 3)
    with pytest.raises(DeltaError, match="replay or a downgrade"):
        dapply.apply_delta(path, forged)
    assert path.read_bytes() == newer


def _forge_counter(data, counter):
    """Rewrite an unsigned delta's counter and recompute its check bytes (as a forger can)."""
    h = fileformat.HEADER
    fields = list(h.unpack_from(data))
    fields[5] = counter
    end = h.size + fields[6]
    body = h.pack(*fields) + data[h.size:end]
    return body + model_file.sha256(body)[:fileformat.CHECK_BYTES]


def test_signature_policy(models):
    old, new = models
    unsigned = make_delta(old, new)
    with pytest.raises(DeltaError, match="not signed"):
        parse_delta(unsigned, public_key=KEY.public_key())
    with pytest.raises(DeltaError, match="not signed"):
        parse_delta(unsigned, require_signature=True)
    other = Ed25519PrivateKey.from_private_bytes(bytes(32))
    with pytest.raises(DeltaError, match="does not verify"):
        parse_delta(make_delta(old, new, signing_key=other), public_key=KEY.public_key())


def test_structure_changes_cannot_be_made(models):
    old, _ = models
    tensors, _ = model_file.parse(old)
    t = dict(tensors)
    t["layers.0.weight_scale"] = t["layers.0.weight_scale"] * 2
    with pytest.raises(DeltaError, match="quantization parameters"):
        make_delta(old, model_file.dump(t, 2))
    t = dict(tensors)
    t["layers.0.weight"] = t["layers.0.weight"][:, :10]
    with pytest.raises(DeltaError, match="a delta keeps the structure"):
        make_delta(old, model_file.dump(t, 2))


class _Fail(dapply.Ops):
    """Ops that raise OSError at the ``at``-th step."""

    def __init__(self, at):
        self.at, self.n = at, 0

    def _step(self):
        self.n += 1
        if self.n == self.at:
            raise OSError(f"injected fault at step {self.at}")

    def open_tmp(self, path):
        self._step()
        return super().open_tmp(path)

    def write(self, f, data):
        self._step()
        half = len(data) // 2  # a torn write: half the data, then the fault
        f.write(data[:half])
        self._step()
        f.write(data[half:])

    def fsync(self, f):
        self._step()
        super().fsync(f)

    def close(self, f):
        self._step()
        super().close(f)

    def rename(self, src, dst):
        self._step()
        super().rename(src, dst)

    def fsync_dir(self, path):
        self._step()
        super().fsync_dir(path)


def test_a_fault_at_every_write_step_leaves_old_or_new(models, tmp_path):
    old, new = models
    data = make_delta(old, new)
    steps = 7  # open, write (two halves), fsync, close, rename, fsync_dir
    outcomes = []
    for at in range(1, steps + 1):
        path = tmp_path / f"m{at}.safetensors"
        path.write_bytes(old)
        with pytest.raises(OSError, match=f"step {at}"):
            dapply.apply_delta(path, data, ops=_Fail(at))
        now = path.read_bytes()
        assert now in (old, new), f"a mix after a fault at step {at}"
        outcomes.append("new" if now == new else "old")
        if now == old:  # the update can simply be retried
            dapply.apply_delta(path, data)
            assert path.read_bytes() == new
        assert sorted(p.name for p in tmp_path.iterdir() if "tmp" in p.name) == []
    assert outcomes == ["old"] * 6 + ["new"]  # only the directory fsync comes after rename


def test_a_stale_temporary_file_is_replaced(models, tmp_path):
    old, new = models
    path = tmp_path / "m.safetensors"
    path.write_bytes(old)
    (tmp_path / ".m.safetensors.sparq-delta.tmp").write_bytes(b"half an update")
    dapply.apply_delta(path, make_delta(old, new))
    assert path.read_bytes() == new


def test_cli(models, tmp_path, capsys):
    old, new = models
    (tmp_path / "old.st").write_bytes(old)
    (tmp_path / "new.st").write_bytes(new)
    (tmp_path / "dev.st").write_bytes(old)
    run = lambda *a: cli.main([str(x) for x in a])  # noqa: E731
    assert run("keygen", tmp_path / "k.pem") == 0
    assert run("make", tmp_path / "old.st", tmp_path / "new.st", "-o", tmp_path / "u.spqd",
               "--sign", tmp_path / "k.pem") == 0
    assert run("inspect", tmp_path / "u.spqd") == 0
    out = capsys.readouterr().out
    assert "signed" in out and "layers.0.weight" in out and "counter        2" in out
    assert run("verify", tmp_path / "u.spqd", "--model", tmp_path / "dev.st", "--pubkey",
               tmp_path / "k.pub") == 0
    assert run("apply", tmp_path / "dev.st", tmp_path / "u.spqd", "--pubkey",
               tmp_path / "k.pub") == 0
    assert (tmp_path / "dev.st").read_bytes() == new
    capsys.readouterr()
    assert run("apply", tmp_path / "dev.st", tmp_path / "u.spqd") == 1  # replay
    assert "refused: the model is not this delta's base" in capsys.readouterr().err
    assert run("apply", tmp_path / "nope.st", tmp_path / "u.spqd") == 2
    assert "cannot read the model" in capsys.readouterr().err
    bad = bytearray((tmp_path / "u.spqd").read_bytes())
    bad[100] ^= 4
    (tmp_path / "bad.spqd").write_bytes(bytes(bad))
    assert run("verify", tmp_path / "bad.spqd") == 1
    assert "refused" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run("--help")
    assert e.value.code == 0 and "exit codes" in capsys.readouterr().out


def test_cli_output_paths(models, tmp_path, capsys, monkeypatch):
    """Outputs go into folders made for them; an output that cannot be written is refused,
    by name, before any work (train does not train first)."""
    old, new = models
    (tmp_path / "old.st").write_bytes(old)
    (tmp_path / "new.st").write_bytes(new)
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    run = lambda *a: cli.main([str(x) for x in a])  # noqa: E731
    assert run("keygen", tmp_path / "keys" / "k.pem") == 0
    assert (tmp_path / "keys" / "k.pub").exists()
    assert run("make", tmp_path / "old.st", tmp_path / "new.st",
               "-o", tmp_path / "out" / "u.spqd") == 0
    assert (tmp_path / "out" / "u.spqd").stat().st_size > 0
    capsys.readouterr()
    assert run("make", tmp_path / "old.st", tmp_path / "new.st", "-o", tmp_path / "folder") == 2
    assert f"the delta file {tmp_path / 'folder'} is a folder" in capsys.readouterr().err
    assert run("keygen", tmp_path / "file" / "k.pem") == 2
    assert "cannot make the folder of the private key" in capsys.readouterr().err

    def no_training(*a, **k):
        raise AssertionError("trained before checking its outputs")

    monkeypatch.setattr(train, "scenario", no_training)
    assert run("train", "--base-out", tmp_path / "b.st",
               "--new-out", tmp_path / "file" / "n.st") == 2
    assert "cannot make the folder of the new model" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "file", "folder", "keys", "new.st", "old.st", "out"]


def test_model_file_errors():
    with pytest.raises(model_file.ModelFileError, match="too short"):
        model_file.parse(b"abc")
    with pytest.raises(model_file.ModelFileError, match="exceeds the file"):
        model_file.parse(struct.pack("<Q", 99) + b"{}")
    with pytest.raises(model_file.ModelFileError, match="not a sparq-mlp"):
        from safetensors.numpy import save
        model_file.parse(save({"a": np.zeros(2, np.int8)}))


def test_malformed_payloads_with_valid_check_bytes_are_refused(models, tmp_path):
    """A forger who recompresses a corrupted body and recomputes the check bytes gets past
    the integrity check; the parser and the hashes must still refuse, with a DeltaError."""
    import zstandard

    old, new = models
    data = make_delta(old, new)
    h = fileformat.HEADER
    fields = list(h.unpack_from(data))
    body = zstandard.ZstdDecompressor().decompress(data[h.size:h.size + fields[6]])
    path = tmp_path / "m.safetensors"
    path.write_bytes(old)
    rng = np.random.default_rng(SEED)
    kinds = {}
    for bad in _mutations(body, rng, 2_000):
        payload = zstandard.ZstdCompressor(write_checksum=True).compress(bad)
        fields[6] = len(payload)
        head = h.pack(*fields) + payload
        forged = head + model_file.sha256(head)[:fileformat.CHECK_BYTES]
        with pytest.raises(DeltaError) as e:
            dapply.apply_delta(path, forged)
        kind = str(e.value).split(":")[0][:30]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert path.read_bytes() == old
    print(f"2,000 forged payloads refused: {kinds}")


def test_constraints_combine():
    sc = train.Scenario("shift", trained.load("int8"), *_shifted())
    base_w = mlp.weights(sc.base)
    new = train.constrained_update(sc.base, sc.x_train[:400], sc.y_train[:400], k=60, bits=3,
                                   l1=0.05, epochs=4)
    d = [n.astype(int) - b for n, b in zip(new, base_w, strict=True)]
    assert 0 < train.changed_count(new, base_w) <= 60
    assert max(int(abs(x).max()) for x in d) <= 7
    # keep_zeros: a pruned model stays pruned (half the weights zeroed here)
    pruned_w = [np.where(np.arange(w.size).reshape(w.shape) % 2 == 0, 0, w) for w in base_w]
    pruned = mlp.with_weights(sc.base, pruned_w)
    for score in ("change", "gradient"):
        kept = train.constrained_update(pruned, sc.x_train[:400], sc.y_train[:400], k=60,
                                        epochs=4, score=score, keep_zeros=True)
        assert 0 < train.changed_count(kept, pruned_w) <= 60
        assert all(((k == 0) | (p != 0)).all() for k, p in zip(kept, pruned_w, strict=True))
    with pytest.raises(ValueError, match="bits must be an integer in"):
        train.constrained_update(sc.base, sc.x_train[:10], sc.y_train[:10], bits=9)
    with pytest.raises(ValueError, match="k must be an integer in"):
        train.constrained_update(sc.base, sc.x_train[:10], sc.y_train[:10], k=-1)
    with pytest.raises(ValueError, match="unknown scenario 'rain'"):
        train.scenario("rain")


def _stored_widths(data):
    """(width, shift) of each tensor's differences in a version 2 delta, read from its body."""
    from sparq.golden.delta import codec
    r = codec.Reader(_body(data))
    out = []
    for _ in range(r.varint("count")):
        r.take(r.varint("name length"), "name")
        r.u8("dtype")
        size = int(np.prod([r.varint("dim") for _ in range(r.u8("rank"))]))
        n = r.varint("changes")
        codec.decode_indices(r, n, size, "t")
        width, shift = r.u8("width"), r.u8("shift")
        r.take((n * width + 7) // 8, "diffs")
        out.append((width, shift))
    r.done()
    return out


def test_iterative_mask_on_a_coarse_grid():
    """score="iterative" with step 32 and bits 7: at most k changes, each a non-zero multiple
    of 32 of at most 127 (so at most 3 x 32); the delta file stores them shifted by 5, in at
    most 3 bits."""
    sc = train.Scenario("shift", trained.load("int8"), *_shifted())
    base_w = mlp.weights(sc.base)
    new = train.constrained_update(sc.base, sc.x_train[:400], sc.y_train[:400], k=80,
                                   score="iterative", step=32, bits=7, epochs=4, rounds=2)
    d = np.concatenate([(n.astype(int) - b).ravel() for n, b in zip(new, base_w, strict=True)])
    assert 0 < np.count_nonzero(d) <= 80
    assert not (d % 32).any() and np.abs(d).max() <= 127
    old_b = model_file.dump(model_file.layers_to_tensors(sc.base), 1)
    new_b = model_file.dump(model_file.layers_to_tensors(mlp.with_weights(sc.base, new)), 2)
    data = make_delta(old_b, new_b)
    widths = _stored_widths(data)
    print(f"{np.count_nonzero(d)} changes, {len(data)} bytes, (width, shift) {widths}")
    assert widths and all(w <= 3 and s == 5 for w, s in widths)
    assert fileformat.apply_to_bytes(old_b, parse_delta(data)) == new_b


def test_bad_constraints_are_named():
    sc = train.Scenario("shift", trained.load("int8"), *_shifted())
    x, y = sc.x_train[:50], sc.y_train[:50]
    with pytest.raises(ValueError, match="score must be one of .* not 'best'"):
        train.constrained_update(sc.base, x, y, k=5, score="best")
    with pytest.raises(ValueError, match="rounds must be a positive integer, not 0"):
        train.constrained_update(sc.base, x, y, k=5, score="iterative", rounds=0)
    with pytest.raises(ValueError, match="^step must be an integer in \\[1, 254\\], not 0"):
        train.constrained_update(sc.base, x, y, k=5, step=0, epochs=1)
    with pytest.raises(ValueError, match=r"^l1 must be a number >= 0 .*, not -1.0"):
        train.constrained_update(sc.base, x, y, k=5, l1=-1.0)
    with pytest.raises(ValueError, match="^epochs must be an integer >= 0, not -2"):
        train.constrained_update(sc.base, x, y, k=5, epochs=-2)
    w = mlp.weights(sc.base)
    lo = [np.full(v.shape, -127) for v in w]
    hi = [np.full(v.shape, 127) for v in w]
    off = mlp.with_weights(sc.base, [v // 2 * 2 + 1 if i == 0 else v for i, v in enumerate(w)])
    with pytest.raises(ValueError, match="not on the anchor's grid of step 2"):
        mlp.fine_tune(off, x, y, lo=lo, hi=hi, step=2, anchor=[v // 2 * 2 for v in w], epochs=1)
