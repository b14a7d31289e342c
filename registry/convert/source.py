"""A Hugging Face model folder as the converter reads it: config.json and the safetensors tensors,
memory-mapped and read one at a time as float32."""

from __future__ import annotations

import json
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mreg.registry.errors import FormatError
from mreg.registry.formats.events import TensorInfo
from mreg.registry.formats.safetensors import parse_index
from mreg.registry.inspect.reading import parse_local

_FLOAT_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


@dataclass(frozen=True)
class SourceTensor:
    """One tensor of the folder: its file and header entry (shape in numpy order)."""

    file: Path
    info: TensorInfo

    @property
    def shape(self) -> tuple[int, ...]:
        return self.info.shape


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file of the model folder; FormatError when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"cannot read {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise FormatError(f"{path.name} is not a JSON object")
    return data


def safetensors_files(folder: Path) -> list[Path]:
    """The folder's weight files: the shards its index names, else every top-level ``*.safetensors``."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / name for name in parse_index(index.read_bytes()).shards]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FormatError(f"{folder} has no safetensors files to convert")
    return files


def list_tensors(folder: Path) -> dict[str, SourceTensor]:
    """Every tensor of the folder's safetensors by name (headers only; no weights are read)."""
    tensors: dict[str, SourceTensor] = {}
    for path in safetensors_files(folder):
        header = parse_local(path, name=path.name)
        for info in header.tensors:
            if info.name in tensors:
                raise FormatError(f"tensor {info.name} is in both {tensors[info.name].file.name} and {path.name}")
            if info.dtype not in _FLOAT_DTYPES:
                raise FormatError(f"{path.name}: tensor {info.name} is {info.dtype}; only F32, F16 and BF16 "
                                  f"weights can be converted")
            tensors[info.name] = SourceTensor(path, info)
    return tensors


class TensorReader:
    """Reads tensors as float32 arrays from memory-mapped files (one map per file, kept open)."""

    def __init__(self) -> None:
        self._maps: dict[Path, mmap.mmap] = {}

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(self, *exc: object) -> None:
        for mapped in self._maps.values():
            try:
                mapped.close()
            except BufferError:  # an array still views it: the map closes when that array goes
                pass
        self._maps.clear()

    def _map(self, path: Path) -> mmap.mmap:
        if path not in self._maps:
            with open(path, "rb") as f:
                self._maps[path] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._maps[path]

    def rows(self, tensor: SourceTensor) -> np.ndarray:
        """The tensor as a 2-D array of rows in its stored dtype (a view of the map; BF16 as uint16)."""
        info = tensor.info
        dtype = np.dtype(_FLOAT_DTYPES[info.dtype])
        raw = np.frombuffer(self._map(tensor.file), dtype=dtype, count=info.nbytes // dtype.itemsize,
                            offset=info.offset)
        return raw.reshape(-1, info.shape[-1] if info.shape else 1)

    def release(self, tensor: SourceTensor, first_row: int, last_row: int) -> None:
        """Let the kernel drop the mapped pages of rows ``[first_row, last_row)`` (they were read)."""
        info = tensor.info
        rows = int(np.prod(info.shape[:-1], dtype=np.int64)) if len(info.shape) > 1 else 1
        row = info.nbytes // max(rows, 1)
        start = info.offset + first_row * row
        end = info.offset + last_row * row
        start -= start % mmap.PAGESIZE
        if end > start:
            self._map(tensor.file).madvise(mmap.MADV_DONTNEED, start, end - start)


def to_float32(block: np.ndarray, dtype: str, shift: float = 0.0) -> np.ndarray:
    """Stored values (F32, F16, or BF16 as uint16) as float32, plus ``shift`` added as llama.cpp's
    converter adds it: in float16 for F16 values, in float32 for the others."""
    if dtype == "BF16":
        values = (block.astype(np.uint32) << 16).view(np.float32)
    elif dtype == "F16" and shift:
        return (block + np.float16(shift)).astype(np.float32)
    else:
        values = block.astype(np.float32)
    return values + np.float32(shift) if shift else values
