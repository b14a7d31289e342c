"""What an architecture whose conversion differs from Llama's provides: its own hyperparameter keys,
tokenizer, tensors to leave out or add, and norm weights stored with an offset."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from gguf import GGUFWriter


class Family(Protocol):
    """The conversion hooks of one model family (Gemma 2, Gemma 3, Phi-3, ...)."""

    def add_hparams(self, writer: GGUFWriter, config: Mapping[str, Any]) -> None:
        """Every hyperparameter key the family's llama.cpp converter writes (replaces the Llama ones)."""

    def add_vocab(self, writer: GGUFWriter, folder: Path, config: Mapping[str, Any]) -> None:
        """The tokenizer keys."""

    def skips(self, hf_name: str) -> bool:
        """Whether llama.cpp's converter leaves this Hugging Face tensor out."""

    def norm_shift(self, gguf_name: str) -> float:
        """What llama.cpp adds to the tensor's values (in the source's float type), 0.0 for nothing."""

    def extra_tensors(self, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """float32 tensors the converter makes from the config, by GGUF name."""
