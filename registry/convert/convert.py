"""Converting a model folder into a GGUF file: plan, write to a temp name, rename on success."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mreg.registry.errors import StoreError
from mreg.registry.convert.mixes import Mix
from mreg.registry.convert.plan import plan_conversion
from mreg.registry.convert.writing import ConvertProgress, NullConvertProgress, write_gguf


def convert_folder(folder: Path, mix: Mix, out: Path, *, name: str, repo_url: str | None = None,
                   progress: ConvertProgress = NullConvertProgress()) -> Path:
    """Write the model in ``folder`` as a GGUF of ``mix`` to ``out`` (replaced only when complete)."""
    plan = plan_conversion(folder, mix, name, repo_url)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_gguf(plan, tmp, progress)
        os.replace(tmp, out)
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
