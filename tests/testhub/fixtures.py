"""Pytest fixtures for the test hub; `tests/conftest.py` does `from tests.testhub.fixtures import *`.

- `test_hub`: a fresh, started TestHub per test (faults and stats clean) serving the MiniLM and
  SmolLM2 repos, with the tokens of `TOKENS`.
- `hf_env`: the real huggingface_hub client (in this process and in subprocesses through the
  environment) pointed at `test_hub`, with a fresh HF_HOME/cache, no saved token, xet disabled.
- `test_modelscope`: a fresh TestModelScope serving the same two repos, tokens of `MS_TOKENS`.
- `ms_env`: the real `modelscope` client pointed at `test_modelscope` (fresh cache and home, no token).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .repos import minilm_repo, smollm_repo
from .modelscope import TestModelScope
from .server import TestHub

__all__ = ["MS_TOKENS", "TOKENS", "HfEnv", "MsEnv", "hf_env", "ms_env", "test_hub", "test_modelscope"]

TOKENS = {"hf_test_alice": "alice", "hf_test_bob": "bob", "hf_test_owner": "owner"}
"""Bearer token → user name, as `test_hub` knows them."""


@pytest.fixture
def test_hub() -> Iterator[TestHub]:
    """A fresh TestHub serving MiniLM and SmolLM2; stopped after the test."""
    with TestHub(tokens=TOKENS) as hub:
        hub.add_repo(minilm_repo())
        hub.add_repo(smollm_repo())
        yield hub


@dataclass(frozen=True)
class HfEnv:
    """What `hf_env` set up."""

    hub: TestHub
    home: Path
    cache_dir: Path


@pytest.fixture
def hf_env(test_hub: TestHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HfEnv:
    """Point huggingface_hub at `test_hub` (env for subprocesses, constants for this process)."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    cache_dir = home / "hub"
    cache_dir.mkdir(parents=True)
    env = {
        "HF_ENDPOINT": test_hub.endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache_dir),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    patched = {
        "ENDPOINT": test_hub.endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": test_hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(cache_dir),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_OFFLINE": False,
    }
    for name, value in patched.items():
        monkeypatch.setattr(constants, name, value)
    return HfEnv(test_hub, home, cache_dir)


MS_TOKENS = {"ms_test_alice": "alice", "ms_test_owner": "owner"}
"""ModelScope access token → user name, as `test_modelscope` knows them."""


@pytest.fixture
def test_modelscope() -> Iterator[TestModelScope]:
    """A fresh TestModelScope serving MiniLM and SmolLM2 (the same repos as `test_hub`)."""
    with TestModelScope(tokens=MS_TOKENS) as hub:
        hub.add_repo(minilm_repo())
        hub.add_repo(smollm_repo())
        yield hub


@dataclass(frozen=True)
class MsEnv:
    """What `ms_env` set up."""

    hub: TestModelScope
    home: Path
    cache_dir: Path


@pytest.fixture
def ms_env(test_modelscope: TestModelScope, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MsEnv:
    """Point the `modelscope` client (here and in subprocesses) at `test_modelscope`, fresh cache, no token."""
    home, cache_dir = tmp_path / "ms_home", tmp_path / "ms_cache"
    home.mkdir()
    cache_dir.mkdir()
    env = {
        "MODELSCOPE_ENDPOINT": test_modelscope.endpoint,
        "MODELSCOPE_CACHE": str(cache_dir),
        "MODELSCOPE_HOME": str(home),
        "MODELSCOPE_CREDENTIALS_PATH": str(home / "credentials"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("MODELSCOPE_API_TOKEN", "MODELSCOPE_DOMAIN", "MODELSCOPE_PREFER_AI_SITE"):
        monkeypatch.delenv(name, raising=False)
    from modelscope_hub import config

    monkeypatch.setattr(config, "_default_config", None)  # the client caches the environment it first saw
    return MsEnv(test_modelscope, home, cache_dir)
