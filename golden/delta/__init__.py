"""Constrained delta updates of a quantized model (US10699190 / US10817783).

- ``model_file``: models as safetensors files (int8 weights, int32 biases, quantization
  parameters, a monotonic version counter in the metadata), canonical bytes, SHA-256;
- ``fileformat``: the delta file (docs/delta.md, byte by byte): make, parse, verify;
- ``apply``: verify and apply a delta to a model file atomically;
- ``train``: constrained fine-tuning and the two update scenarios;
- ``cli``: the ``sparq-delta`` command.
"""

from .fileformat import DeltaError, make_delta, parse_delta  # noqa: F401
from .model_file import ModelFileError, load_model, save_model  # noqa: F401
