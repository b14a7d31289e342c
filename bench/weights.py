"""The big file the download benchmarks serve from the test hub: one per size, generated once and kept."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.testhub import Blob, generated_file

REPO_ID = "bench/big-model"
FILENAME = "weights.bin"
SEED = 20240601


def weights(cache_dir: Path, size: int) -> tuple[Path, Blob]:
    """The file of ``size`` pseudo-random bytes under ``cache_dir`` (generated the first time) and its Blob."""
    source = cache_dir / f"weights-{size}.bin"
    print(f"generating/reusing {source} ...", file=sys.stderr)
    return source, Blob.from_file(generated_file(source, size, seed=SEED))
