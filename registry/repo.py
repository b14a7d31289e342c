"""Repository identities: ``org/name`` plus a repo type, validated before they touch a path or a URL."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mreg.registry.errors import UsageError

REPO_TYPES = ("model", "dataset")
_SEGMENT = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_NO_RUNS = r"(?!.*(?:--|\.\.))"
NAME_PATTERN = f"^{_NO_RUNS}{_SEGMENT}$"
"""One segment of a repo id, as the Hub accepts it (a regular expression that Python and JSON Schema read alike)."""
REPO_ID_PATTERN = f"^{_NO_RUNS}{_SEGMENT}(?:/{_SEGMENT})?$"
"""A repo id: ``name`` or ``org/name``."""
_REPO_ID = re.compile(REPO_ID_PATTERN)
_BAD_REVISION = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^/|/$|(?:^|/)\.|\.lock(?:/|$)|\.$|^@$")
"""What git never allows in a ref name (``git check-ref-format``): control characters, spaces, ``~^:?*[\\``,
``..``, ``@{``, empty or dot-led components, a trailing ``.`` or ``.lock``, ``@`` alone."""
MAX_REVISION = 255


def check_revision(revision: str) -> str:
    """``revision`` when it can name a branch, tag or commit; UsageError (before it goes anywhere) otherwise."""
    if not revision or len(revision) > MAX_REVISION or _BAD_REVISION.search(revision):
        raise UsageError(f"invalid revision {revision[:MAX_REVISION]!r}: not a branch, tag or commit name")
    return revision


@dataclass(frozen=True, order=True)
class RepoRef:
    """A repository on a hub: its type (``model`` or ``dataset``) and its id (``org/name``)."""

    repo_type: str
    repo_id: str

    @classmethod
    def parse(cls, repo_id: str, repo_type: str = "model") -> "RepoRef":
        """Validate ``repo_id`` (``name`` or ``org/name``); raise UsageError for anything else."""
        if repo_type not in REPO_TYPES:
            raise UsageError(f"unknown repo type {repo_type!r}: use one of {', '.join(REPO_TYPES)}")
        if not _REPO_ID.fullmatch(repo_id):  # not match: "$" also matches before a final newline
            raise UsageError(f"invalid repo id {repo_id!r}: expected 'org/name' of letters, digits, '-', '_' or '.'")
        return cls(repo_type, repo_id)

    @property
    def api_segment(self) -> str:
        """The plural used in API routes: ``models`` or ``datasets``."""
        return f"{self.repo_type}s"

    @property
    def cache_name(self) -> str:
        """The folder name the Hugging Face cache uses: ``models--org--name``."""
        return f"{self.repo_type}s--" + self.repo_id.replace("/", "--")

    def __str__(self) -> str:
        return self.repo_id if self.repo_type == "model" else f"{self.repo_type}s/{self.repo_id}"
