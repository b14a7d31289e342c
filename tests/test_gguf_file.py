"""The tests' fast GGUF reader (``tests.gguf_file``) gives what gguf.GGUFReader gives: every key's types and
contents, every tensor's name, type, shape and data, on a file with every value type and on a real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFReader

from tests.gguf_file import GGUFFile
from tests.test_formats import SMOLLM, write_gguf


def _agree(path: Path, flattened: tuple[str, ...] = ()) -> GGUFFile:
    ours, ref = GGUFFile(path), GGUFReader(path)
    assert list(ours.fields) == [key for key in ref.fields if not key.startswith("GGUF.")]
    for key, field in ours.fields.items():
        if key not in flattened:  # GGUFReader flattens nested arrays
            assert (field.types, field.contents()) == (ref.fields[key].types, ref.fields[key].contents()), key
    assert len(ours.tensors) == len(ref.tensors)
    for mine, theirs in zip(ours.tensors, ref.tensors):
        assert (mine.name, mine.tensor_type, mine.shape) == (theirs.name, theirs.tensor_type,
                                                             tuple(int(n) for n in theirs.shape))
        assert mine.data.dtype == theirs.data.dtype and mine.data.shape == theirs.data.shape, mine.name
        assert np.array_equal(mine.data, theirs.data) and mine.data.tobytes() == theirs.data.tobytes(), mine.name
    return ours


def test_every_value_type_and_tensor_kind_as_gguf_reader_has_them(tmp_path: Path) -> None:
    ours = _agree(write_gguf(tmp_path / "small.gguf"), flattened=("t.nested",))
    assert ours.fields["t.nested"].contents() == [[1, 2], [3]]
    assert ours.fields["t.u64"].contents() == 2**63 + 5 and ours.fields["t.str"].contents() == "ünïcode ✓"
    assert {t.tensor_type.name for t in ours.tensors} == {"F32", "F16", "Q8_0"}


def test_a_real_model_as_gguf_reader_has_it() -> None:
    ours = _agree(SMOLLM)
    assert len(ours.fields["tokenizer.ggml.tokens"].contents()) == 49152
