"""Small made-up GGUF files and GGUF repos for the test hub: real headers (file type, chat
template, context length, tokens, split keys) over a tiny tensor."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFWriter

from mreg.registry.formats.gguf import FILE_TYPES
from tests.testhub import HubRepo
from tests.testhub.repos import FileSource

FILE_TYPE_IDS = {name: number for number, name in FILE_TYPES.items()}
TOKENS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "a", "b", "c"]


def gguf_bytes(file_type: str | None = "Q4_K_M", chat_template: str | None = None, *, arch: str = "llama",
               context_length: int = 4096, license: str | None = None, size_label: str | None = None,
               split: tuple[int, int] | None = None, tokens: Sequence[str] = TOKENS, seed: int = 0) -> bytes:
    """A GGUF file: `general.file_type`, an optional chat template, a vocabulary, one small tensor.

    ``split=(number, count)`` makes it part ``number`` (from 1) of a split set; ``seed`` varies the
    tensor so that otherwise equal files differ.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.gguf"
        w = GGUFWriter(path, arch)
        w.add_name("made up")
        if file_type is not None:
            w.add_file_type(FILE_TYPE_IDS[file_type])
        if size_label is not None:
            w.add_size_label(size_label)
        if license is not None:
            w.add_license(license)
        w.add_context_length(context_length)
        w.add_block_count(2)
        w.add_tokenizer_model("gpt2")
        w.add_token_list(list(tokens))
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        if chat_template is not None:
            w.add_chat_template(chat_template)
        if split is not None:
            w.add_uint16("split.no", split[0] - 1)
            w.add_uint16("split.count", split[1])
            w.add_int32("split.tensors.count", split[1])
        w.add_tensor("token_embd.weight", np.full((4, 32), seed + (split or (0, 0))[0], np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


def gguf_repo(repo_id: str, files: Mapping[str, FileSource], *, base_model: str | None = None, downloads: int = 0,
              tags: Sequence[str] = ("gguf",), **info: Any) -> HubRepo:
    """A GGUF repo on the test hub, tagged `base_model:quantized:<base_model>` when given one."""
    all_tags = [*tags, *([f"base_model:quantized:{base_model}"] if base_model else [])]
    repo = HubRepo(repo_id, owner=repo_id.partition("/")[0],
                   info={"tags": all_tags, "downloads": downloads, "library_name": "gguf", **info})
    repo.commit(files, message="add gguf files")
    return repo


def quant_files(stem: str, labels: Sequence[str], template: str | None = None) -> dict[str, bytes]:
    """One GGUF per label, named `<stem>-<label>.gguf`, with the header's file type matching."""
    return {f"{stem}-{label}.gguf": gguf_bytes(label.removeprefix("UD-").replace("_XL", "_M"), template, seed=i)
            for i, label in enumerate(labels)}


def split_files(stem: str, label: str, count: int, folder: str = "") -> dict[str, bytes]:
    """A split set `<folder><stem>-<label>-0000N-of-0000M.gguf`."""
    return {f"{folder}{stem}-{label}-{n:05d}-of-{count:05d}.gguf": gguf_bytes(label, split=(n, count))
            for n in range(1, count + 1)}
