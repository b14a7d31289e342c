"""How inspections and search hits are shown: JSON for scripts, short text for people."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mreg.registry.units import human_count, human_size

if TYPE_CHECKING:  # types only: `mreg search` shows hits without loading the inspectors
    from mreg.registry.catalog.search import SearchHit
    from mreg.registry.inspect.repo import FileInspection, Inspection

GGUF_FIELDS = ("architecture", "name", "context_length", "file_type", "quantization_version", "block_count",
               "embedding_length", "head_count", "head_count_kv", "tokenizer_model", "bos_token", "eos_token",
               "bos_token_id", "eos_token_id", "chat_template", "split_no", "split_count", "split_tensors_count")


def _file_json(f: FileInspection, with_tensors: bool) -> dict[str, Any]:
    h = f.header
    data: dict[str, Any] = {"path": f.path, "size": f.size, "format": h.format, "tensor_count": h.tensor_count,
                            "parameters": h.parameters, "dtypes": dict(h.dtypes), "header_bytes": h.header_bytes,
                            "gguf": {k: h.gguf.get(k) for k in GGUF_FIELDS} if h.gguf else None}
    if h.error:
        data["error"] = h.error
    if with_tensors:
        data["tensors"] = [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "offset": t.offset,
                            "nbytes": t.nbytes} for t in f.tensors]
    return data


def inspection_json(report: Inspection, with_tensors: bool) -> dict[str, Any]:
    shape = report.shape
    return {
        "repo": report.repo.repo_id, "commit": report.commit, "architecture": report.architecture,
        "parameters": {"total": report.parameters, "by_dtype": report.by_dtype},
        "context_length": shape.context_length if shape else None,
        "memory": {"weights_plus_kv_cache": report.memory, "kv_cache": shape.kv_cache_bytes if shape else None},
        "files": [_file_json(f, with_tensors) for f in report.files],
        "fetch": {"requests": report.requests, "bytes": report.bytes},
    }


def inspection_text(report: Inspection, with_tensors: bool) -> list[str]:
    lines = [f"{report.repo}@{report.commit[:12]}",
             f"  architecture: {report.architecture or 'unknown'}",
             f"  parameters:   {human_count(report.parameters)} ({report.parameters:,})"
             + (" — " + ", ".join(f"{d} {human_count(n)}" for d, n in report.by_dtype.items()) if report.by_dtype else "")]
    if report.shape:
        lines.append(f"  context:      {report.shape.context_length:,} tokens "
                     f"(KV cache {human_size(report.shape.kv_cache_bytes)} at F16)")
    if report.parameters:
        lines.append("  memory:       " + ", ".join(f"{q} {human_size(b)}" for q, b in report.memory.items())
                     + " (weights + KV cache)")
    for f in report.files:
        h = f.header
        if h.error:
            lines.append(f"  {f.path}: unreadable header: {h.error}")
            continue
        quant = h.gguf.get("file_type") if h.gguf else "/".join(h.dtypes)
        lines.append(f"  {f.path}  {human_size(f.size)}  {h.format} {quant}  {h.tensor_count} tensors, "
                     f"{human_count(h.parameters or 0)} params")
        if h.gguf and h.gguf.get("context_length"):
            lines.append(f"    gguf: {h.gguf.get('architecture')}, context {h.gguf['context_length']:,}, "
                         f"{h.gguf.get('block_count')} blocks, tokenizer {h.gguf.get('tokenizer_model')}"
                         + (", chat template" if h.gguf.get("chat_template") else ""))
        if with_tensors:
            lines.extend(f"    {t.name}  {t.dtype}  {list(t.shape)}" for t in f.tensors)
    if report.requests:
        lines.append(f"  read {human_size(report.bytes)} in {report.requests} ranged requests")
    return lines


def hit_text(hit: SearchHit) -> str:
    return (f"{str(hit.repo):50} {hit.architecture or '-':24} {human_count(hit.parameters):>8}  "
            f"{','.join(hit.formats) or '-':16} {','.join(hit.quants)}")
