"""Generate Verilog and port metadata for every block configuration the project ships.

``python -m sparq.hw.export [--out build/verilog] [NAME ...]`` writes, per configuration,
``NAME.v`` and ``NAME.json``: the block, its ``params``, the component metadata
(``metadata.as_json()``, every port) and the bit layout of each struct payload, which the
cocotb drivers use to pack and unpack beats.

Set ``AMARANTH_USE_YOSYS=builtin`` (the Makefile does) for byte-identical output everywhere.
"""

import argparse
import json
import os
import pathlib

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data

from sparq.spec import configs as spec_configs

from .core import Core
from .delta_apply import DeltaApply
from .queued_dot import QueuedDotProduct
from .requant import Requantizer
from .sequencer import Sequencer
from .sparse_dot import SparseDotProduct
from .verilog_merge import merge

BLOCKS = {"Requantizer": Requantizer, "SparseDotProduct": SparseDotProduct,
          "QueuedDotProduct": QueuedDotProduct,
          "Sequencer": Sequencer, "DeltaApply": DeltaApply, "Core": Core}
# name -> (component class, keyword parameters), from spec.configs
CONFIGS = {name: (BLOCKS[block], params) for name, (block, params) in spec_configs.CONFIGS.items()}


def layout_fields(layout, prefix=""):
    """Flatten a data layout to ``{dotted.name: {offset, width, signed}}``."""
    fields = {}
    if isinstance(layout, data.Layout):
        for name, field in layout:
            sub = layout_fields(field.shape, f"{prefix}{name}.")
            for k, v in sub.items():
                fields[k] = dict(v, offset=v["offset"] + field.offset)
        return fields
    shape = Shape.cast(layout)
    return {prefix.rstrip("."): dict(offset=0, width=shape.width, signed=shape.signed)}


def payload_layouts(component):
    """The flattened payload layout of every stream port of ``component``."""
    out = {}
    for name, member in component.signature.members.items():
        if member.is_signature and "payload" in member.signature.members:
            shape = member.signature.members["payload"].shape
            out[name] = layout_fields(shape) if isinstance(shape, data.Layout) else \
                {"": layout_fields(shape)[""]}
    return out


def build(name, cls=None, params=None):
    """Elaborate configuration ``name`` (or ``cls(**params)``); return (verilog, meta)."""
    if cls is None:
        cls, params = CONFIGS[name]
    block = cls(**params)
    meta = dict(block=cls.__name__, name=name, params=block.params,
                ports=block.metadata.as_json(), payloads=payload_layouts(block))
    # one concatenation per wire that Yosys drives part by part: the same netlist, and Icarus
    # simulates it about 20x faster (hw.verilog_merge)
    text = merge(verilog.convert(block, name=name, emit_src=False))
    return text, meta


def write(name, out_dir, cls=None, params=None):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text, meta = build(name, cls, params)
    # write-then-rename: parallel test workers may generate and read the same files
    for suffix, content in ((".json", json.dumps(meta, indent=1) + "\n"), (".v", text)):
        tmp = out_dir / f".{name}{suffix}.{os.getpid()}"
        tmp.write_text(content)
        os.replace(tmp, out_dir / f"{name}{suffix}")
    return out_dir / f"{name}.v"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"configurations (default: all of {list(CONFIGS)})")
    ap.add_argument("--out", default="build/verilog", help="output folder")
    args = ap.parse_args(argv)
    for name in args.names or CONFIGS:
        if name not in CONFIGS:
            ap.error(f"unknown configuration {name!r}; known: {', '.join(CONFIGS)}")
        print(f"wrote {write(name, args.out)}")


if __name__ == "__main__":
    main()
