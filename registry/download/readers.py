"""Reading a partial file while its download writes it: which bytes are there, and asking for some first.

A download given ``Readers`` binds them to its parts (``TransferState.parts``, in file order) and calls
``changed`` whenever bytes land. A reader asks ``written_from(pos)`` how far the bytes from ``pos`` are
written without a gap, and says ``want(pos)`` when it waits there: the download fetches those bytes next.
No byte is verified before the download returns. On a store replicas share, ``local`` frees the bytes already in
the bucket from the partial file (``holes.LocalBytes``): a reader reads below its ``freed`` from the bucket.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable

from mreg.registry.download.holes import LocalBytes
from mreg.registry.download.state import Part


class Readers:
    """The readers' side of one download's partial file."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self._on_change = on_change
        self._parts: list[Part] = []
        self._want: Callable[[int], None] | None = None
        self._early: list[int] = []
        """Where readers waited before the download bound them (it fetches those first)."""
        self.local = LocalBytes()
        """The partial file's bytes on disk and where readers read them (a fill of the shared store frees them)."""

    def bind(self, parts: list[Part], want: Callable[[int], None]) -> None:
        """Follow ``parts`` (the download's own list, kept in file order); ``want`` fetches from a position first."""
        self._parts, self._want = parts, want
        for pos in self._early:
            want(pos)
        self._early.clear()
        self.changed()

    def changed(self) -> None:
        """Bytes landed (the download calls this)."""
        self._on_change()

    def written_from(self, pos: int) -> int:
        """The end of the bytes written without a gap from ``pos`` (``pos`` itself when byte ``pos`` is not)."""
        index = bisect_right(self._parts, pos, key=lambda part: part.offset) - 1
        end = pos
        for part in self._parts[max(index, 0):]:
            written = part.offset + part.done
            if part.offset > end or written <= end:
                break
            end = written
            if not part.complete:
                break
        return end

    def want(self, pos: int) -> None:
        """A reader waits for byte ``pos``: have the download fetch it next (once it runs)."""
        if self._want is None:
            self._early.append(pos)
        else:
            self._want(pos)
