"""A GGUF reader for the tests that compare whole files: every key's value types and contents and every
tensor's name, type, shape and bytes, as ``gguf.GGUFReader`` gives them (``test_gguf_file`` checks that it
agrees with it), at a fraction of its cost.

gguf-py's reader makes a numpy view per array element: it takes ~10–40 s to open a file with a 128k-token
vocabulary (its tokens and merges), and the slow comparisons open dozens of them. This one decodes numeric
arrays with one ``numpy.frombuffer`` and strings with ``struct``. Little-endian files only (all the tests write).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

_SCALARS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}
_PLAIN_TENSORS = {
    GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16, GGMLQuantizationType.F64: np.float64,
    GGMLQuantizationType.I8: np.int8, GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
    GGMLQuantizationType.I64: np.int64,
}
"""Tensor types GGUFReader gives as typed arrays in the tensor's shape; the others as rows of raw bytes."""


@dataclass(frozen=True)
class Field:
    """One key's value: ``types`` as GGUFReader's ``ReaderField.types`` (``[ARRAY, STRING]`` for a list of strings)."""

    types: list[GGUFValueType]
    value: Any

    def contents(self) -> Any:
        return self.value


@dataclass(frozen=True)
class Tensor:
    name: str
    tensor_type: GGMLQuantizationType
    shape: tuple[int, ...]
    """In ggml order (row length first), as GGUFReader has it."""
    data: np.ndarray


class GGUFFile:
    """A GGUF file's keys (``fields``) and ``tensors``, read at once."""

    def __init__(self, path: Path | str) -> None:
        with open(path, "rb") as file:
            self._buf = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        if self._buf[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        self._pos = 8  # past the magic and the version
        n_tensors, n_keys = self._unpack("<Q"), self._unpack("<Q")
        self.fields: dict[str, Field] = {}
        for _ in range(n_keys):
            key = self._string()
            self.fields[key] = self._field(GGUFValueType(self._unpack("<I")))
        infos = [(self._string(), *self._tensor_info()) for _ in range(n_tensors)]
        alignment = self.fields["general.alignment"].value if "general.alignment" in self.fields else 32
        start = self._pos + -self._pos % alignment
        self.tensors = [self._tensor(name, shape, kind, start + offset) for name, shape, kind, offset in infos]

    def _unpack(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self._buf, self._pos)[0]
        self._pos += struct.calcsize(fmt)
        return value

    def _string(self) -> str:
        size = self._unpack("<Q")
        text = self._buf[self._pos:self._pos + size].decode("utf-8")
        self._pos += size
        return text

    def _field(self, kind: GGUFValueType) -> Field:
        if kind == GGUFValueType.STRING:
            return Field([kind], self._string())
        if kind != GGUFValueType.ARRAY:
            return Field([kind], self._unpack(_SCALARS[kind]))
        item, count = GGUFValueType(self._unpack("<I")), self._unpack("<Q")
        if item in _SCALARS:
            dtype = np.dtype(_SCALARS[item])
            values = np.frombuffer(self._buf, dtype, count, self._pos).tolist()
            self._pos += dtype.itemsize * count
            return Field([kind, item], values)
        if item == GGUFValueType.STRING:
            return Field([kind, item], self._strings(count))
        items = [self._field(item) for _ in range(count)]  # nested arrays
        return Field([kind, *(items[0].types if items else [item])], [f.value for f in items])

    def _strings(self, count: int) -> list[str]:
        buf, pos, size_at, strings = self._buf, self._pos, struct.Struct("<Q").unpack_from, []
        for _ in range(count):
            (size,) = size_at(buf, pos)
            strings.append(buf[pos + 8:pos + 8 + size].decode("utf-8"))
            pos += 8 + size
        self._pos = pos
        return strings

    def _tensor_info(self) -> tuple[tuple[int, ...], GGMLQuantizationType, int]:
        dims = self._unpack("<I")
        shape = struct.unpack_from(f"<{dims}Q", self._buf, self._pos)
        self._pos += 8 * dims
        return shape, GGMLQuantizationType(self._unpack("<I")), self._unpack("<Q")

    def _tensor(self, name: str, shape: tuple[int, ...], kind: GGMLQuantizationType, at: int) -> Tensor:
        count = int(np.prod(shape))
        if kind in _PLAIN_TENSORS:
            data = np.frombuffer(self._buf, _PLAIN_TENSORS[kind], count, at).reshape(shape[::-1])
        else:
            block, size = GGML_QUANT_SIZES[kind]
            data = np.frombuffer(self._buf, np.uint8, count // block * size, at)
            data = data.reshape(*shape[:0:-1], shape[0] // block * size)
        return Tensor(name, kind, shape, data)
