"""``sparq-delta``: train, make, apply, inspect and verify constrained delta updates.

Exit codes: 0 success; 1 the delta or model was refused (the message says why; nothing was
changed); 2 bad usage or unreadable input files.
"""

import argparse
import pathlib
import sys
import time

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def _say(msg):
    print(f"sparq-delta: {msg}", file=sys.stderr, flush=True)


def _read(path, what):
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as e:
        raise _Usage(f"cannot read the {what} {path}: {e.strerror}") from None


class _Usage(Exception):
    pass


def _out(path, what):
    """The output file ``path``, its folder made; refused before any work is done if it is a
    folder or its folder cannot be made."""
    p = pathlib.Path(path)
    if p.is_dir():
        raise _Usage(f"the {what} {path} is a folder")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _Usage(f"cannot make the folder of the {what} {path}: {e.strerror}") from None
    return p


def _private_key(path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        return load_pem_private_key(_read(path, "signing key"), password=None)
    except ValueError as e:
        raise _Usage(f"{path} is not a PEM private key: {e}") from None


def _public_key(path):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return load_pem_public_key(_read(path, "public key"))
    except ValueError as e:
        raise _Usage(f"{path} is not a PEM public key: {e}") from None


def cmd_keygen(args):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    priv = _out(args.out, "private key")
    pub = _out(priv.with_suffix(".pub"), "public key")
    for p in (priv, pub):
        if p.exists() and not args.force:
            raise _Usage(f"{p} exists (use --force to overwrite)")
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    priv.chmod(0o600)
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    print(f"wrote {priv} (private, keep it secret) and {pub} (public, for the endpoints)")
    return EXIT_OK


def cmd_train(args):
    """Base and updated models of a scenario, as model files."""
    from .. import mlp
    from . import train
    from .model_file import save_model

    base_out, new_out = _out(args.base_out, "base model"), _out(args.new_out, "new model")
    t0 = time.time()
    _say(f"scenario {args.scenario}: training the base model ...")
    sc = train.scenario(args.scenario, seed=args.seed)
    base_acc = sc.accuracy(sc.base)
    _say(f"base model: test accuracy {base_acc:.2f}% ({time.time() - t0:.1f} s); "
         f"fine-tuning (k={args.k}, score={args.score}, bits={args.bits}, step={args.step}, "
         f"l1={args.l1}) ...")
    try:
        new_w = train.constrained_update(sc.base, sc.x_train, sc.y_train, k=args.k,
                                         bits=args.bits, step=args.step, l1=args.l1,
                                         score=args.score, epochs=args.epochs, seed=args.seed)
    except ValueError as e:
        raise _Usage(str(e)) from None
    new = mlp.with_weights(sc.base, new_w)
    changed = train.changed_count(new_w, mlp.weights(sc.base))
    save_model(sc.base, base_out, counter=args.counter)
    save_model(new, new_out, counter=args.counter + 1)
    print(f"base {args.base_out}: accuracy {base_acc:.2f}%, counter {args.counter}")
    print(f"new  {args.new_out}: accuracy {sc.accuracy(new):.2f}%, counter "
          f"{args.counter + 1}, {changed} weights changed ({time.time() - t0:.1f} s)")
    return EXIT_OK


def cmd_make(args):
    from .fileformat import make_delta

    key = _private_key(args.sign) if args.sign else None
    data = make_delta(_read(args.old, "old model"), _read(args.new, "new model"),
                      signing_key=key)
    out = _out(args.out, "delta file")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    print(f"wrote {args.out}: {len(data)} bytes{' (signed)' if key else ''}")
    return EXIT_OK


def _describe(delta, size):
    lines = [f"sparq delta (format {delta.version}), {size} bytes, "
             f"{'signed' if delta.signed else 'unsigned'}",
             f"  base   SHA-256 {delta.base_sha256.hex()}",
             f"  target SHA-256 {delta.target_sha256.hex()}",
             f"  counter        {delta.counter}",
             f"  changes        {delta.changed} elements in {len(delta.tensors)} tensors"]
    for t in delta.tensors:
        lines.append(f"    {t.name:32s} {t.dtype.name:7s} {str(list(t.shape)):12s} "
                     f"{t.indices.size:6d} changed, max |diff| "
                     f"{int(abs(t.diffs).max()) if t.diffs.size else 0}")
    return "\n".join(lines)


def cmd_inspect(args):
    from .fileformat import parse_delta

    data = _read(args.delta, "delta")
    print(_describe(parse_delta(data), len(data)))
    return EXIT_OK


def cmd_verify(args):
    from .apply import verify_delta
    from .fileformat import parse_delta

    key = _public_key(args.pubkey) if args.pubkey else None
    data = _read(args.delta, "delta")
    if args.model:
        _read(args.model, "model")
        delta = verify_delta(args.model, data, public_key=key,
                             require_signature=args.require_signature)
        print(f"OK: {args.delta} applies to {args.model} (counter -> {delta.counter})")
    else:
        delta = parse_delta(data, public_key=key, require_signature=args.require_signature)
        print(f"OK: {args.delta} is well formed{' and signed by the key' if key else ''}")
    return EXIT_OK


def cmd_apply(args):
    from .apply import apply_delta

    key = _public_key(args.pubkey) if args.pubkey else None
    data = _read(args.delta, "delta")
    _read(args.model, "model")
    delta = apply_delta(args.model, data, public_key=key,
                        require_signature=args.require_signature)
    print(f"updated {args.model}: {delta.changed} elements changed, counter {delta.counter}")
    return EXIT_OK


def parser():
    ap = argparse.ArgumentParser(
        prog="sparq-delta", description="Constrained delta updates of sparq models "
        "(safetensors int8 models; see docs/delta.md).",
        epilog="exit codes: 0 success, 1 refused (nothing changed), 2 usage or I/O error")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train a scenario's base model and a constrained update")
    p.add_argument("--scenario", choices=("more_data", "shift"), default="more_data")
    p.add_argument("--k", type=int, default=150, help="at most K weights change (default 150)")
    p.add_argument("--score", choices=("change", "gradient", "iterative"), default="change",
                   help="how the K weights are chosen (default change; iterative: shrink the "
                   "mask of a full fine-tune in rounds, retraining each time)")
    p.add_argument("--bits", type=int, default=None, help="|change| <= 2**BITS - 1")
    p.add_argument("--step", type=int, default=1,
                   help="every change a multiple of STEP (a power of two 2**s saves s bits "
                   "per changed weight in the delta)")
    p.add_argument("--l1", type=float, default=0.0, help="L1 penalty on the change")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--counter", type=int, default=1, help="the base model's version counter")
    p.add_argument("--base-out", default="base.safetensors")
    p.add_argument("--new-out", default="new.safetensors")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("make", help="make the delta from an old to a new model")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("-o", "--out", required=True, help="the delta file to write")
    p.add_argument("--sign", metavar="KEY.pem", help="sign with this Ed25519 private key")
    p.set_defaults(func=cmd_make)

    p = sub.add_parser("apply", help="verify a delta and update a model file atomically")
    p.add_argument("model")
    p.add_argument("delta")
    p.add_argument("--pubkey", metavar="KEY.pub", help="require a signature by this key")
    p.add_argument("--require-signature", action="store_true")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("inspect", help="print a delta's header and tensor table")
    p.add_argument("delta")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("verify", help="check a delta (and that it applies to MODEL)")
    p.add_argument("delta")
    p.add_argument("--model", help="also check that it applies to this model")
    p.add_argument("--pubkey", metavar="KEY.pub", help="require a signature by this key")
    p.add_argument("--require-signature", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("keygen", help="make an Ed25519 key pair (OUT and OUT.pub)")
    p.add_argument("out", help="the private key file to write (PEM)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_keygen)
    return ap


def main(argv=None):
    from .fileformat import DeltaError
    from .model_file import ModelFileError

    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except _Usage as e:
        _say(f"error: {e}")
        return EXIT_USAGE
    except (DeltaError, ModelFileError) as e:
        _say(f"refused: {e}")
        return EXIT_REFUSED
    except OSError as e:  # a write that failed after the checks (disk full, permissions)
        _say(f"error: cannot write {e.filename}: {e.strerror}")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
