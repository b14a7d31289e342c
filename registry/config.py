"""Where mreg keeps things and which hub it talks to, read from the environment once.

Follows ecosystem conventions: ``MREG_HOME`` (default ``$XDG_CACHE_HOME/mreg``),
``MREG_DATABASE_URL`` (default: SQLite inside ``MREG_HOME``), ``MREG_STORE`` (the blob store: default the
local one in ``MREG_HOME``, or ``s3://BUCKET[/PREFIX]``), ``HF_ENDPOINT``, ``HF_TOKEN`` and the
token file huggingface_hub saves, ``HF_HUB_OFFLINE``; and where mreg's config file is (XDG_CONFIG_HOME).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mreg.registry.errors import CatalogError, UsageError

DEFAULT_ENDPOINT = "https://huggingface.co"
DATABASE_URL_VARIABLE = "MREG_DATABASE_URL"
CATALOG_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
"""The database drivers the catalog runs on, as a database URL names them (before ``://``)."""
DRIVERS_HINT = f"mreg's drivers: {' or '.join(f'{driver}://' for driver in CATALOG_DRIVERS)}"
STORE_VARIABLE = "MREG_STORE"
_TRUE = {"1", "true", "yes", "on"}


def _cache_root(env: os._Environ[str] | dict[str, str]) -> Path:
    xdg = env.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def config_path(env: Mapping[str, str]) -> Path:
    """mreg's config file: ``$XDG_CONFIG_HOME/mreg/config.toml`` (default ``~/.config``)."""
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "mreg" / "config.toml"


def read_config_file(path: Path) -> dict[str, Any]:
    """The config file's tables (empty when there is none); UsageError, one line, if it cannot be read."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}".splitlines()[0]) from None


def saved_hf_token_path(env: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """The file where ``hf auth login`` saves the token (``HF_TOKEN_PATH``, else ``$HF_HOME/token``)."""
    env = os.environ if env is None else env
    if env.get("HF_TOKEN_PATH"):
        return Path(env["HF_TOKEN_PATH"]).expanduser()
    hf_home = env.get("HF_HOME")
    base = Path(hf_home).expanduser() if hf_home else _cache_root(env) / "huggingface"
    return base / "token"


def resolve_token(explicit: str | None, env: os._Environ[str] | dict[str, str] | None = None) -> str | None:
    """The token to send to the hub: ``--token``, then ``HF_TOKEN``, then huggingface_hub's saved token."""
    env = os.environ if env is None else env
    for candidate in (explicit, env.get("HF_TOKEN"), env.get("HUGGING_FACE_HUB_TOKEN")):
        if candidate and candidate.strip():
            return candidate.strip()
    try:
        saved = saved_hf_token_path(env).read_text().strip()
    except OSError:
        return None
    return saved or None


def check_catalog_driver(url: str) -> None:
    """Raise CatalogError unless ``url`` names one of ``CATALOG_DRIVERS``, without the database layer: a command
    that opens the catalog only after downloading (``mreg pull``) says so before it starts. Only the driver is
    shown (the rest of a URL may hold a password)."""
    driver = url.partition("://")[0] if "://" in url else ""
    if driver not in CATALOG_DRIVERS:
        named = f"names the driver {driver!r}" if driver else "names no driver (DRIVER://...)"
        raise CatalogError(f"the catalog's database URL {named}: {DRIVERS_HINT}")


@dataclass(frozen=True)
class Settings:
    """Everything mreg reads from the environment."""

    home: Path
    database_url: str
    endpoint: str
    offline: bool
    store: str | None = None
    """Where blobs live: None for the local store in ``home``, else ``s3://BUCKET[/PREFIX]``."""

    @classmethod
    def from_env(cls, env: os._Environ[str] | dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env["MREG_HOME"]).expanduser() if env.get("MREG_HOME") else _cache_root(env) / "mreg"
        database_url = env.get(DATABASE_URL_VARIABLE) or f"sqlite+aiosqlite:///{home / 'catalog.db'}"
        endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        offline = env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
        store = env.get(STORE_VARIABLE, "").strip() or None
        return cls(home=home, database_url=database_url, endpoint=endpoint, offline=offline, store=store)

    def with_database_url(self, database_url: str | None) -> "Settings":
        """These settings with the catalog at ``database_url`` instead (unchanged when it is None or empty)."""
        return dataclasses.replace(self, database_url=database_url) if database_url else self

    def with_store(self, store: str | None) -> "Settings":
        """These settings with blobs in ``store`` instead (unchanged when it is None or empty)."""
        return dataclasses.replace(self, store=store.strip()) if store and store.strip() else self
