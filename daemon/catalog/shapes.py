"""The catalog API's JSON shapes (``daemon/catalog/openapi.py`` describes them), built from ``registry.catalog.overview``.

The catalog page renders these same dicts, so the page and the API never disagree.
"""

from __future__ import annotations

from typing import Any

from mreg.registry.catalog import FileRecord, HeaderRecord, MirrorJob, RepoSummary, TensorPage
from mreg.registry.catalog.overview import RepoDetail, RepoOverview
from mreg.registry.gguf.quants import QuantSet
from mreg.registry.repo import RepoRef

GGUF_HIGHLIGHTS = ("architecture", "name", "file_type", "context_length", "block_count", "embedding_length",
                   "head_count", "head_count_kv", "tokenizer_model", "bos_token", "eos_token")
"""The GGUF metadata the detail shows (the chat template comes separately)."""


def mirror_json(job: MirrorJob | None) -> dict[str, Any] | None:
    """A repo's mirror status: its job's state and progress (the job's globs and errors are in the
    admin-guarded ``/v1/jobs``)."""
    if job is None:
        return None
    return {"status": job.status, "revision": job.revision, "every": job.every, "bytes_done": job.bytes_done,
            "bytes_total": job.bytes_total, "commit": job.commit,
            "last_sync": job.last_sync.isoformat() if job.last_sync else None,
            "next_sync": job.next_sync.isoformat() if job.next_sync else None}


def repo_json(item: RepoOverview, job: MirrorJob | None) -> dict[str, Any]:
    """One repo of ``GET /v1/repos``: its newest revision, what its headers say, its mirror status."""
    return {**revision_json(item.summary), "architecture": item.architecture, "parameters": item.parameters,
            "formats": item.formats, "quants": item.quants, "mirror": mirror_json(job)}


def revision_json(summary: RepoSummary) -> dict[str, Any]:
    return {"repo": summary.repo.repo_id, "repo_type": summary.repo.repo_type, "commit": summary.commit,
            "refs": list(summary.refs), "complete": summary.complete, "files": summary.files, "size": summary.size,
            "stored_files": summary.stored_files, "stored_size": summary.stored_size,
            "updated_at": summary.updated_at.isoformat(),
            "last_used": summary.last_used.isoformat() if summary.last_used else None, "pinned": summary.pinned,
            "mirrored": summary.mirrored}


def header_json(header: HeaderRecord) -> dict[str, Any]:
    """What a weights file's indexed header says (``error`` when it could not be read)."""
    return {"format": header.format, "tensor_count": header.tensor_count, "parameters": header.parameters,
            "dtypes": dict(header.dtypes), "header_bytes": header.header_bytes,
            "quant": header.gguf.get("file_type") if header.gguf else None, "error": header.error}


def file_json(record: FileRecord, header: HeaderRecord | None) -> dict[str, Any]:
    return {"path": record.path, "size": record.size, "stored": record.state == "complete", "git_oid": record.git_oid,
            "lfs_sha256": record.lfs_sha256, "sha256": record.sha256,
            "header": header_json(header) if header is not None else None}


def files_json(repo: RepoRef, commit: str, files: list[FileRecord], headers: tuple[HeaderRecord, ...]) -> dict[str, Any]:
    """``GET /v1/repos/{repo}/files``."""
    by_path = {h.path: h for h in headers}
    return {"repo": repo.repo_id, "repo_type": repo.repo_type, "commit": commit,
            "files": [file_json(f, by_path.get(f.path)) for f in files]}


def quant_json(quant: QuantSet, stored: set[str]) -> dict[str, Any]:
    return {"name": quant.name, "label": quant.label, "files": list(quant.files), "size": quant.size,
            "complete": quant.complete, "stored": all(path in stored for path in quant.files)}


def usage(repo: RepoRef, base_url: str) -> dict[str, str]:
    """Commands that fetch the repo through this mirror (a model's Modelfile comes from its GGUF, or
    from a GGUF repo quantized from it)."""
    if repo.repo_type != "model":
        flag = f" --repo-type {repo.repo_type}"
        return {"hf_download": f"HF_ENDPOINT={base_url} hf download {repo.repo_id}{flag}",
                "mreg_pull": f"HF_ENDPOINT={base_url} mreg pull {repo.repo_id}{flag}"}
    return {"hf_download": f"HF_ENDPOINT={base_url} hf download {repo.repo_id}",
            "mreg_pull": f"HF_ENDPOINT={base_url} mreg pull {repo.repo_id}",
            "mreg_modelfile": f"HF_ENDPOINT={base_url} mreg modelfile {repo.repo_id} -o Modelfile",
            "modelfile_url": f"{base_url}/v1/repos/{repo.repo_id}/modelfile"}


def detail_json(detail: RepoDetail, job: MirrorJob | None, base_url: str) -> dict[str, Any]:
    """``GET /v1/repos/{repo}``: the revision asked for, in full, with the repo's revisions."""
    item = detail.overview
    repo = item.summary.repo
    gguf = next((h.gguf for h in detail.headers if h.gguf), None)
    stored = {f.path for f in detail.files if f.state == "complete"}
    return {
        **repo_json(item, job),
        "parameters_by_dtype": item.by_dtype,
        "tensors_by_dtype": detail.tensor_counts,
        "context_length": detail.shape.context_length if detail.shape else None,
        "memory": detail.memory,
        "gguf": {key: gguf.get(key) for key in GGUF_HIGHLIGHTS} if gguf else None,
        "chat_template": gguf.get("chat_template") if gguf else None,
        "quant_sets": [quant_json(q, stored) for q in detail.quant_sets],
        "revisions": [revision_json(r) for r in detail.revisions],
        "usage": usage(repo, base_url),
    }


def tensors_json(repo: RepoRef, commit: str, path: str | None, page: TensorPage, offset: int,
                 limit: int) -> dict[str, Any]:
    """``GET /v1/repos/{repo}/tensors``: one page; ``next_offset`` is null on the last."""
    following = offset + len(page.tensors)
    return {"repo": repo.repo_id, "repo_type": repo.repo_type, "commit": commit, "path": path, "total": page.total,
            "offset": offset, "limit": limit, "next_offset": following if following < page.total else None,
            "tensors": [{"path": file, "name": t.name, "dtype": t.dtype, "shape": list(t.shape), "offset": t.offset,
                         "nbytes": t.nbytes} for file, t in page.tensors]}
