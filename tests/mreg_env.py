"""The `mreg_env` fixture (a pytest plugin: `pytest_plugins = ("tests.mreg_env",)`): MREG_HOME,
HF_ENDPOINT and OLLAMA_MODELS under the test's tmp_path, pointed at `test_hub`; no token, online."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.testhub import TestHub


@pytest.fixture
def mreg_env(test_hub: TestHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment `mreg` runs in (also set in os.environ for the test)."""
    env = {"HF_ENDPOINT": test_hub.endpoint, "MREG_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf"),
           "OLLAMA_MODELS": str(tmp_path / "ollama")}
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "MREG_DATABASE_URL", "HF_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
