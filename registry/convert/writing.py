"""Writing a planned GGUF: header, keys and tensor infos first (every shape and type is known), then
each tensor's data, read and quantized a slab of rows at a time, with the alignment padding.

Memory stays near one slab (`SLAB_BYTES` of float32 rows) plus its quantized bytes: source pages
are read through the memory map and released after each slab.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from mreg.registry.convert.plan import Plan, PlannedTensor
from mreg.registry.convert.quantize import quantize
from mreg.registry.convert.source import SourceTensor, TensorReader, to_float32

SLAB_BYTES = 64 * 1024 * 1024
"""float32 bytes of source rows quantized at once."""


class ConvertProgress(Protocol):
    """What a conversion reports while it writes (the CLI draws bars from it)."""

    def start(self, tensors: int, nbytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def tensor_done(self, name: str) -> None: ...


class NullConvertProgress:
    def start(self, tensors: int, nbytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def tensor_done(self, name: str) -> None:
        pass


def write_gguf(plan: Plan, path: Path, progress: ConvertProgress = NullConvertProgress(),
               threads: int | None = None) -> None:
    """Write ``plan`` to ``path`` (a new file; the caller renames it into place), quantizing on
    ``threads`` threads (default: one per CPU)."""
    threads = threads or os.cpu_count() or 1
    writer = plan.writer
    for t in plan.tensors:
        writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=t.qtype)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    alignment = writer.data_alignment
    progress.start(len(plan.tensors), plan.nbytes)
    with open(path, "ab") as out, TensorReader() as reader:
        out.write(bytes(-out.tell() % alignment))
        for t in plan.tensors:
            for chunk in _slabs(t, reader, threads):
                out.write(chunk)
                progress.advance(len(chunk))
            out.write(bytes(-t.nbytes % alignment))
            progress.tensor_done(t.name)
        out.flush()


def _slabs(t: PlannedTensor, reader: TensorReader, threads: int) -> Iterator[memoryview]:
    """The tensor's bytes in slabs of whole rows (a stacked tensor: each expert's rows in turn)."""
    if t.values is not None:
        yield memoryview(quantize(t.values.reshape(-1, t.shape[-1]), t.qtype, threads=threads)).cast("B")
        return
    for source in t.experts or (t.source,):
        assert source is not None
        yield from _source_slabs(t, source, reader, threads)


def _source_slabs(t: PlannedTensor, source: SourceTensor, reader: TensorReader, threads: int) -> Iterator[memoryview]:
    """One source tensor's rows (in ``t.row_order`` when given), quantized to ``t.qtype`` a slab at a time."""
    rows = reader.rows(source)
    step = max(1, SLAB_BYTES // (4 * t.shape[-1]))
    for first in range(0, len(rows), step):
        last = min(first + step, len(rows))
        if t.row_order is None:
            block = rows[first:last]
            span = (first, last)
        else:
            picked = t.row_order[first:last]
            block = rows[picked]
            span = (int(picked.min()), int(picked.max()) + 1)
        yield memoryview(quantize(to_float32(block, source.info.dtype, t.shift), t.qtype, threads=threads)).cast("B")
        reader.release(source, *span)
