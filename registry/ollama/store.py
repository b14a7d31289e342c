"""Writing a model straight into Ollama's store, as `ollama create` would, with no Ollama running.

    $OLLAMA_MODELS/blobs/sha256-<hex>                                      layers and config, by content sha256
    $OLLAMA_MODELS/manifests/registry.ollama.ai/<namespace>/<model>/<tag>  the manifest (Docker v2 schema)

The GGUF layer is the blob mreg already holds, cloned (copy-on-write) or else hard-linked into Ollama's
blobs (copied when the two stores are on different filesystems; ``registry.exports``) under the sha256
mreg verified when it downloaded it: nothing is fetched or hashed again. A hard link shares mreg's
read-only inode, which is safe: Ollama only reads blobs, and `ollama rm` unlinks its own name. Every
file goes to a temp name and is renamed into place, the manifest last, so Ollama never lists a model
whose blobs are not all there.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mreg.registry.errors import StoreError, UsageError
from mreg.registry.exports import place
from mreg.registry.ollama.modelfile import ModelFacts, Modelfile
from mreg.registry.repo import RepoRef

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.ollama.image."
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def models_dir(env: Mapping[str, str] | None = None) -> Path:
    """Ollama's store: ``$OLLAMA_MODELS``, default ``~/.ollama/models``."""
    env = os.environ if env is None else env
    configured = env.get("OLLAMA_MODELS")
    return Path(configured).expanduser() if configured else Path.home() / ".ollama" / "models"


@dataclass(frozen=True)
class OllamaName:
    """A model name as Ollama spells it: ``[namespace/]model[:tag]`` on registry.ollama.ai."""

    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> "OllamaName":
        path, _, tag = text.strip().partition(":")
        namespace, _, model = path.rpartition("/")
        name = cls(namespace or DEFAULT_NAMESPACE, model, tag or DEFAULT_TAG)
        if not all(_PART.match(part) for part in (name.namespace, name.model, name.tag)) or "/" in namespace:
            raise UsageError(f"invalid Ollama model name {text!r}: expected [namespace/]model[:tag] of letters, "
                             f"digits, '_', '-' or '.'")
        return name

    def __str__(self) -> str:
        prefix = "" if self.namespace == DEFAULT_NAMESPACE else f"{self.namespace}/"
        return f"{prefix}{self.model}:{self.tag}"

    def manifest_path(self, root: Path) -> Path:
        return root / "manifests" / DEFAULT_HOST / self.namespace / self.model / self.tag


def default_name(repo: RepoRef) -> OllamaName:
    """The name a repo gets in Ollama: its name in lower case, without a `-GGUF` suffix."""
    model = re.sub(r"[-_.]gguf$", "", repo.repo_id.rpartition("/")[2], flags=re.I).lower()
    return OllamaName.parse(model or "model")


@dataclass(frozen=True)
class OllamaModel:
    """A model written into Ollama's store."""

    name: OllamaName
    manifest_path: Path
    manifest: dict[str, Any]
    config: dict[str, Any]


def _layer(media_type: str, digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": size}


class _Blobs:
    """Ollama's blob folder: content-addressed files written atomically."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.dir / f"sha256-{sha256}"

    def put_bytes(self, media_type: str, data: bytes) -> dict[str, Any]:
        sha = hashlib.sha256(data).hexdigest()
        dest = self.path(sha)
        if not (dest.is_file() and dest.stat().st_size == len(data)):
            _write_atomically(dest, data)
        return _layer(media_type, sha, len(data))

    def put_file(self, media_type: str, source: Path, sha256: str) -> dict[str, Any]:
        """Clone or hard-link ``source`` (whose content has this sha256) in, or copy it across filesystems.

        A symlink (a snapshot file) is followed: Linux's link(2) would link the symlink itself."""
        source = source.resolve()
        size = source.stat().st_size
        dest = self.path(sha256)
        if not (dest.is_file() and dest.stat().st_size == size):
            place(source, dest)
        return _layer(media_type, sha256, size)

def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        with tmp.open("xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def write_model(root: Path, name: OllamaName, gguf: Path, gguf_sha256: str, modelfile: Modelfile,
                facts: ModelFacts) -> OllamaModel:
    """Write the model into the Ollama store at ``root``: the GGUF (``gguf``, whose content has sha256
    ``gguf_sha256``), its template, system prompt, parameters and license layers, the config, and
    last the manifest."""
    try:
        blobs = _Blobs(root)
        layers = [blobs.put_file(LAYER_TYPE + "model", gguf, gguf_sha256)]
        for kind, text in (("template", modelfile.template), ("system", modelfile.system)):
            if text is not None:
                layers.append(blobs.put_bytes(LAYER_TYPE + kind, text.encode()))
        if modelfile.options():
            layers.append(blobs.put_bytes(LAYER_TYPE + "params", _json(modelfile.options())))
        if modelfile.license is not None:
            layers.append(blobs.put_bytes(LAYER_TYPE + "license", modelfile.license.encode()))
        family = facts.architecture or ""
        config = {
            "model_format": "gguf",
            "model_family": family,
            "model_families": [family] if family else [],
            "model_type": facts.model_type or "",
            "file_type": facts.file_type or "",
            "architecture": _GOARCH.get(platform.machine().lower(), platform.machine().lower()),
            "os": {"win32": "windows"}.get(sys.platform, sys.platform),
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        }
        config_layer = blobs.put_bytes(CONFIG_TYPE, _json(config))
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config_layer, "layers": layers}
        path = name.manifest_path(root)
        _write_atomically(path, _json(manifest))
    except OSError as exc:
        raise StoreError(f"cannot write {name} into the Ollama store {root}: {exc.strerror or exc}") from exc
    return OllamaModel(name=name, manifest_path=path, manifest=manifest, config=config)
