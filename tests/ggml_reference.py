"""ggml's own quantizer, ``ggml_quantize_chunk`` from llama-cpp-python's libggml-base, called through ctypes.

The reference the numpy quantizers in ``registry.convert.quantize`` are checked against. The library is
found by the ``llama_cpp`` package's install folder (not imported: the package is not needed as a module).
"""

from __future__ import annotations

import ctypes
import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType


@cache
def _lib() -> ctypes.CDLL:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("llama-cpp-python is not installed (its libggml-base is the quantizer reference)")
    path = Path(list(spec.submodule_search_locations)[0]) / "lib" / "libggml-base.so"
    lib = ctypes.CDLL(str(path))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return lib


def ggml_quantize(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """``data`` (float32, shape (..., n)) quantized by ggml in one single-threaded call, as uint8 (..., row bytes)."""
    lib = _lib()
    src = np.ascontiguousarray(data, dtype=np.float32)
    n_per_row = src.shape[-1]
    nrows = src.size // n_per_row if n_per_row else 0
    block_size, _ = GGML_QUANT_SIZES[qtype]
    if n_per_row % block_size:
        raise ValueError(f"row length {n_per_row} is not a multiple of {qtype.name}'s block size {block_size}")
    row_size = lib.ggml_row_size(int(qtype), n_per_row)
    dst = np.zeros((nrows, row_size), dtype=np.uint8)
    lib.ggml_quantize_init(int(qtype))
    written = lib.ggml_quantize_chunk(int(qtype), src.ctypes.data, dst.ctypes.data, 0, nrows, n_per_row, None)
    assert written == dst.size, (written, dst.size)
    return dst.reshape(*src.shape[:-1], row_size)
