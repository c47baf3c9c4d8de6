"""Quantized MLPs as safetensors files.

Tensors per layer ``k`` (``layers.{k}.``): ``weight`` int8 (out, in), ``bias`` int32 (out,),
``weight_scale`` float32 (out,), ``input_scale``/``output_scale`` float32 (1,),
``input_zero_point``/``output_zero_point`` int32 (1,), ``act_range`` int32 (2,) (the fused
activation's clamp). Metadata: ``format`` = ``sparq-mlp``, ``format_version`` = ``1``,
``counter`` = the model's version counter (a decimal integer; delta updates only move it
forward).

``dump`` writes canonical bytes, so a model's SHA-256 is a function of its contents and
counter: a safetensors file whose JSON header has sorted keys and no spaces (padded with
spaces to a multiple of 8 bytes), with the tensors' data in name order. (The safetensors
package's own writer orders the metadata differently from call to call.) Any safetensors
reader reads it.
"""

import hashlib
import json
import struct

import numpy as np

from ..litert_model import DenseLayer

FORMAT = "sparq-mlp"
FORMAT_VERSION = "1"


class ModelFileError(ValueError):
    """A model file that is not a readable sparq model; the message says what is wrong."""


def sha256(data):
    return hashlib.sha256(data).digest()


def layers_to_tensors(layers):
    t = {}
    for k, lay in enumerate(layers):
        p = f"layers.{k}."
        t[p + "weight"] = np.ascontiguousarray(lay.w, np.int8)
        t[p + "bias"] = np.asarray(lay.bias, np.int32)
        t[p + "weight_scale"] = np.asarray(lay.weight_scales, np.float32)
        t[p + "input_scale"] = np.array([lay.input_scale], np.float32)
        t[p + "input_zero_point"] = np.array([lay.input_zero_point], np.int32)
        t[p + "output_scale"] = np.array([lay.output_scale], np.float32)
        t[p + "output_zero_point"] = np.array([lay.output_zero_point], np.int32)
        t[p + "act_range"] = np.array([lay.act_min, lay.act_max], np.int32)
    return t


def tensors_to_layers(t):
    layers, k = [], 0
    while f"layers.{k}.weight" in t:
        p = f"layers.{k}."
        try:
            layers.append(DenseLayer(
                op="FULLY_CONNECTED", w=t[p + "weight"], bias=t[p + "bias"],
                input_scale=float(t[p + "input_scale"][0]),
                input_zero_point=int(t[p + "input_zero_point"][0]),
                weight_scales=t[p + "weight_scale"], output_scale=float(t[p + "output_scale"][0]),
                output_zero_point=int(t[p + "output_zero_point"][0]),
                act_min=int(t[p + "act_range"][0]), act_max=int(t[p + "act_range"][1]),
                output_tensor=-1))
        except (KeyError, IndexError) as e:
            raise ModelFileError(f"layer {k}: tensor {e} is missing or empty") from None
        k += 1
    if not layers:
        raise ModelFileError("no layers.0.weight tensor: not a sparq model")
    return layers


_ST_DTYPES = {"int8": "I8", "int16": "I16", "int32": "I32", "float32": "F32"}


def dump(tensors, counter):
    """Canonical safetensors bytes of ``tensors`` with version ``counter``."""
    if not (isinstance(counter, int) and 0 <= counter < 1 << 64):
        raise ModelFileError(f"counter must be an integer in [0, 2**64), not {counter!r}")
    header = {"__metadata__": {"counter": str(counter), "format": FORMAT,
                               "format_version": FORMAT_VERSION}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype.name not in _ST_DTYPES:
            raise ModelFileError(f"tensor {name}: dtype {a.dtype} is not supported")
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"data_offsets": [offset, offset + len(raw)],
                        "dtype": _ST_DTYPES[a.dtype.name], "shape": list(a.shape)}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def parse(data):
    """``(tensors, counter)`` from model file bytes; raises ModelFileError."""
    from safetensors.numpy import load

    meta = read_metadata(data)
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"not a {FORMAT} v{FORMAT_VERSION} file (metadata {meta})")
    try:
        counter = int(meta["counter"])
    except (KeyError, ValueError):
        raise ModelFileError(f"bad or missing version counter {meta.get('counter')!r}") \
            from None
    try:
        tensors = load(bytes(data))
    except Exception as e:  # safetensors raises its own error types
        raise ModelFileError(f"unreadable safetensors data: {e}") from None
    return tensors, counter


def read_metadata(data):
    if len(data) < 8:
        raise ModelFileError(f"{len(data)} bytes: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ModelFileError(f"header length {n} exceeds the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as e:
        raise ModelFileError(f"the safetensors header is not JSON: {e}") from None
    return header.get("__metadata__", {}) if isinstance(header, dict) else {}


def save_model(layers, path, counter=0):
    """Write ``layers`` with version ``counter``; returns the bytes written."""
    data = dump(layers_to_tensors(layers), counter)
    with open(path, "wb") as f:
        f.write(data)
    return data


def load_model(path):
    """``(layers, counter)`` of a model file."""
    with open(path, "rb") as f:
        tensors, counter = parse(f.read())
    return tensors_to_layers(tensors), counter
