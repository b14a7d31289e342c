"""Which upstreams mreg pulls from, in which order, with which token.

Upstreams come from ``MREG_UPSTREAMS`` (a comma-separated priority list of ``name=kind+URL``, kind
``hf`` or ``modelscope``), else from the ``[[upstreams]]`` tables of mreg's config file
(``$XDG_CONFIG_HOME/mreg/config.toml``), else they are the Hub at ``HF_ENDPOINT`` then ModelScope at
``MODELSCOPE_ENDPOINT``. A token comes from the upstream's config entry, or from the usual variable
(``HF_TOKEN`` / ``MODELSCOPE_API_TOKEN``) but only for the upstream at that kind's usual endpoint,
so no token reaches a host it was not given for.

    source = "auto"            # the default --source: hf, modelscope or auto
    start_timeout = 10         # seconds an upstream may take to answer before auto moves on
    [[upstreams]]
    name = "mirror"
    kind = "hf"
    url = "https://hf-mirror.com"
    token = "hf_..."           # optional
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mreg.registry.config import DEFAULT_ENDPOINT as HF_DEFAULT_ENDPOINT
from mreg.registry.config import config_path, read_config_file, resolve_token
from mreg.registry.errors import UsageError
from mreg.registry.upstream.modelscope.urls import DEFAULT_ENDPOINT as MS_DEFAULT_ENDPOINT

KINDS = ("hf", "modelscope")
SOURCES = ("hf", "modelscope", "auto")
SCHEMES = {"hf://": "hf", "ms://": "modelscope", "modelscope://": "modelscope"}
DEFAULT_START_TIMEOUT = 10.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Env = Mapping[str, str]


@dataclass(frozen=True)
class Upstream:
    """One place repos can be pulled from."""

    name: str
    kind: str
    url: str
    token: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """How messages name it: ``name (kind+URL)``."""
        return f"{self.name} ({self.kind}+{self.url})"


@dataclass(frozen=True)
class UpstreamConfig:
    """The upstreams in priority order, the default source and the slow-start limit."""

    upstreams: tuple[Upstream, ...]
    source: str = "hf"
    start_timeout: float = DEFAULT_START_TIMEOUT

    def select(self, source: str) -> list[Upstream]:
        """The upstreams a pull with ``source`` may use, in order (``auto``: all of them)."""
        chosen = [u for u in self.upstreams if source == "auto" or u.kind == source]
        if not chosen:
            raise UsageError(f"no {source} upstream is configured (see MREG_UPSTREAMS)")
        return chosen


def _check_url(url: str, where: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise UsageError(f"{where}: {url!r} is not an http(s) URL")
    return url.rstrip("/")


def _upstream(name: str, kind: str, url: str, where: str, token: str | None = None) -> Upstream:
    if not _NAME.match(name):
        raise UsageError(f"{where}: upstream name {name!r} must be letters, digits, '.', '_' or '-'")
    if kind not in KINDS:
        raise UsageError(f"{where}: unknown upstream kind {kind!r} (use {' or '.join(KINDS)})")
    return Upstream(name, kind, _check_url(url, where), token)


def _unique(upstreams: list[Upstream], where: str) -> tuple[Upstream, ...]:
    names = [u.name for u in upstreams]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise UsageError(f"{where}: upstream name {duplicate!r} is used twice")
    return tuple(upstreams)


def parse_upstreams(text: str) -> tuple[Upstream, ...]:
    """Parse ``MREG_UPSTREAMS`` (``name=kind+URL,...``); anything malformed is a UsageError."""
    upstreams = []
    for item in text.split(","):
        entry = item.strip()
        name, eq, rest = entry.partition("=")
        kind, plus, url = rest.partition("+")
        if not eq or not plus or not name.strip() or not url.strip():
            raise UsageError(f"MREG_UPSTREAMS: {entry!r} is not name=kind+URL "
                             f"(e.g. hf=hf+https://huggingface.co,ms=modelscope+https://modelscope.cn)")
        upstreams.append(_upstream(name.strip(), kind.strip(), url.strip(), "MREG_UPSTREAMS"))
    return _unique(upstreams, "MREG_UPSTREAMS")


def parse_serve_upstream(text: str) -> tuple[str, str]:
    """``(kind, URL)`` of ``mreg serve --upstream [KIND+]URL`` (kind ``hf`` when none is given)."""
    kind, plus, url = text.strip().partition("+")
    if not plus or kind not in KINDS:
        kind, url = "hf", text.strip()
    return kind, _check_url(url, "--upstream")


def _config_upstreams(data: dict[str, Any], where: str) -> tuple[Upstream, ...]:
    entries = data.get("upstreams", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UsageError(f"{where}: 'upstreams' must be an array of tables ([[upstreams]])")
    upstreams = []
    for entry in entries:
        values = {k: entry.get(k) for k in ("name", "kind", "url", "token")}
        if not all(isinstance(values[k], str) for k in ("name", "kind", "url")) or not isinstance(
                values["token"], (str, type(None))):
            raise UsageError(f"{where}: every [[upstreams]] needs string name, kind and url (and an optional token)")
        upstreams.append(_upstream(values["name"], values["kind"], values["url"], where, values["token"] or None))
    return _unique(upstreams, where)


def _with_env_token(upstream: Upstream, env: Env, hf_endpoint: str, ms_endpoint: str) -> Upstream:
    """Give an upstream without a configured token the usual variable's, if it is that kind's usual host."""
    if upstream.token is not None:
        return upstream
    if upstream.kind == "hf" and upstream.url == hf_endpoint:
        return Upstream(upstream.name, upstream.kind, upstream.url, resolve_token(None, dict(env)))
    if upstream.kind == "modelscope" and upstream.url == ms_endpoint:
        token = (env.get("MODELSCOPE_API_TOKEN") or "").strip() or None
        return Upstream(upstream.name, upstream.kind, upstream.url, token)
    return upstream


def _endpoints(env: Env) -> tuple[str, str]:
    """The usual endpoints: ``HF_ENDPOINT``'s and ``MODELSCOPE_ENDPOINT``'s (or their defaults)."""
    return (_check_url(env.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT, "HF_ENDPOINT"),
            _check_url(env.get("MODELSCOPE_ENDPOINT") or MS_DEFAULT_ENDPOINT, "MODELSCOPE_ENDPOINT"))


def _listed(env: Env, data: dict[str, Any], path: Path) -> tuple[Upstream, ...]:
    """The upstreams ``MREG_UPSTREAMS`` lists, else the config file's (none: an empty tuple)."""
    if env.get("MREG_UPSTREAMS", "").strip():
        return parse_upstreams(env["MREG_UPSTREAMS"])
    return _config_upstreams(data, str(path))


def load(env: Env | None = None) -> UpstreamConfig:
    """The upstream configuration from the environment and the config file."""
    env = os.environ if env is None else env
    path = config_path(env)
    data = read_config_file(path)
    hf_endpoint, ms_endpoint = _endpoints(env)
    upstreams = _listed(env, data, path) or (
        Upstream("hf", "hf", hf_endpoint), Upstream("modelscope", "modelscope", ms_endpoint))
    source = env.get("MREG_SOURCE") or data.get("source", "hf")
    if source not in SOURCES:
        raise UsageError(f"{path}: source must be one of {', '.join(SOURCES)}, not {source!r}")
    start_timeout = data.get("start_timeout", DEFAULT_START_TIMEOUT)
    if isinstance(start_timeout, bool) or not isinstance(start_timeout, (int, float)) or start_timeout <= 0:
        raise UsageError(f"{path}: start_timeout must be a positive number of seconds")
    upstreams = tuple(_with_env_token(u, env, hf_endpoint, ms_endpoint) for u in upstreams)
    return UpstreamConfig(upstreams, source, float(start_timeout))


def serve_upstreams(options: Sequence[str], env: Env | None = None) -> tuple[Upstream, ...]:
    """The daemon's upstreams in priority order: its ``--upstream [KIND+]URL`` options (named by kind:
    ``hf``, ``hf-2``…), else ``MREG_UPSTREAMS``, else the config file's, else the Hub at ``HF_ENDPOINT``
    alone. Tokens as for pulls: ``HF_TOKEN`` / ``MODELSCOPE_API_TOKEN`` only to that kind's usual endpoint."""
    env = os.environ if env is None else env
    hf_endpoint, ms_endpoint = _endpoints(env)
    if options:
        given = [parse_serve_upstream(option) for option in options]
        kinds = [kind for kind, _ in given]
        upstreams = _unique([Upstream(kind if kinds[:i].count(kind) == 0 else f"{kind}-{kinds[:i].count(kind) + 1}",
                                      kind, url) for i, (kind, url) in enumerate(given)], "--upstream")
    else:
        path = config_path(env)
        upstreams = _listed(env, read_config_file(path), path) or (Upstream("hf", "hf", hf_endpoint),)
    return tuple(_with_env_token(u, env, hf_endpoint, ms_endpoint) for u in upstreams)


def split_source(repo_id: str) -> tuple[str | None, str]:
    """(source named by a ``hf://`` / ``ms://`` prefix or None, the repo id without it)."""
    for scheme, kind in SCHEMES.items():
        if repo_id.startswith(scheme):
            return kind, repo_id[len(scheme):]
    if "://" in repo_id:
        raise UsageError(f"unknown source in {repo_id!r}: use hf://ORG/NAME or ms://ORG/NAME")
    return None, repo_id


def with_token(upstreams: Sequence[Upstream], token: str | None, kind: str) -> list[Upstream]:
    """``--token`` given on the command line goes to the upstreams of ``kind`` only."""
    if token is None or not token.strip():
        return list(upstreams)
    return [Upstream(u.name, u.kind, u.url, token.strip()) if u.kind == kind else u for u in upstreams]
