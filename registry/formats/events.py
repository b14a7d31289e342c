"""What the sans-I/O header parsers say, and the input buffer they share.

A parser is driven by a loop that knows how to fetch bytes (a local pread, a ranged GET):

    while not isinstance(event := parser.next_event(), HeaderParsed):
        parser.receive_data(event.offset, fetch(event.offset, event.length))

`receive_data(offset, b"")` tells the parser the file ends at `offset`. Feeding data that leaves
a gap after what the parser has, or data after the end of the file, is a caller bug (ValueError);
a malformed file is the file's fault (`registry.errors.FormatError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

COMPACT_AFTER = 64 * 1024
"""Consumed bytes are dropped from a buffer once there are at least this many (and half of it)."""


@dataclass(frozen=True)
class NeedBytes:
    """The parser needs the bytes at `offset`: at least `length` of them are wanted (more are welcome)."""

    offset: int
    length: int


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: `dtype` is a safetensors dtype (``BF16``) or a ggml type (``Q4_K``); `offset` is
    absolute in the file; GGUF shapes are in ggml order (row length first), as gguf.GGUFReader has them."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True)
class HeaderParsed:
    """A whole header: tensor data starts at `header_end`; tensors are in file order."""

    format: Literal["safetensors", "gguf"]
    header_end: int
    metadata: Mapping[str, Any]
    tensors: tuple[TensorInfo, ...]


class ReceiveBuffer:
    """Bytes received so far, contiguous from absolute offset `base`; tracks the end of the file."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.base = 0
        self.eof = False

    @property
    def end(self) -> int:
        """Absolute offset just past the last byte received."""
        return self.base + len(self.data)

    def receive(self, offset: int, data: bytes) -> None:
        """Append `data` found at `offset` (overlap with what is held is skipped); b"" means end of file."""
        if not data:
            self.eof = True
            return
        if self.eof:
            raise ValueError("data received after the end of the file")
        if offset < 0 or offset > self.end:
            raise ValueError(f"data at offset {offset} leaves a gap: the parser holds bytes up to {self.end}")
        skip = self.end - offset
        if skip < len(data):
            self.data += memoryview(data)[skip:]

    def discard_before(self, pos: int) -> None:
        """Forget bytes before absolute `pos` when that frees enough to be worth the copy."""
        drop = pos - self.base
        if drop >= COMPACT_AFTER and drop * 2 >= len(self.data):
            del self.data[:drop]
            self.base = pos
