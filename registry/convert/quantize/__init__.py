"""TEMP quantize shim: the 32-block types through `gguf.quants`; K-quants come with the kquants branch."""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType, quants

_SUPPORTED = frozenset({
    GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16, GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q5_0, GGMLQuantizationType.Q5_1,
})


def quantize(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """The ggml bytes of float32 rows ``data`` in ``qtype``."""
    if qtype not in _SUPPORTED:
        raise NotImplementedError(f"{qtype.name} quantization is not available yet")
    out = quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)
    return out.view(np.uint8) if out.dtype != np.uint8 else out
