"""Telling every process on one store that a repo was removed from under it.

The CLI and any number of daemons share one store and catalog. A daemon keeps what it learnt in memory
(refs, commit listings, which files are stored); ``mreg rm`` makes that memory wrong. So ``rm`` replaces
the marker file ``<home>/removals`` (a new inode each time), and a process that caches what the store
holds keeps a ``RemovalWatch`` and forgets its memory when the marker changed: one ``stat`` per request.

Memory dropped this way is only a cache: whatever the catalog and the store say afterwards is asked again.
A request already past the check when ``rm`` ran finds out where it writes (see
``daemon.serving.commits``: a revision missing from the catalog is recorded again).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mreg.registry.blobs.local import os_errors

MARKER = "removals"


def note_removal(home: Path) -> None:
    """Replace ``home``'s removal marker, so every ``RemovalWatch`` on it sees a change."""
    marker = Path(home) / MARKER
    tmp = marker.with_name(f".{MARKER}.{secrets.token_hex(6)}")
    with os_errors("removal marker", marker.parent):
        try:
            tmp.write_text(secrets.token_hex(8))
            os.replace(tmp, marker)
        finally:
            tmp.unlink(missing_ok=True)


class RemovalWatch:
    """Whether a removal happened on one store since this watch last looked."""

    def __init__(self, home: Path) -> None:
        self._marker = Path(home) / MARKER
        self._seen = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = self._marker.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def changed(self) -> bool:
        """True once after each removal (the first call after it), else False."""
        now = self._identity()
        if now == self._seen:
            return False
        self._seen = now
        return True
