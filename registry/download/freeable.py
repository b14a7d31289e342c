"""Which bytes of a partial file may be freed from local disk (sans I/O: offsets in, ranges out).

On a store replicas share (#13), the bytes of a fill are safe in the bucket once committed, so a replica need
not keep them on disk: ``Freeable`` says which ranges of its partial file to free (punch out), given how far the
bytes are ``safe`` (committed, and read by nothing of the download any more) and where the local readers are.
The ``freed`` point only moves forward: below it, a reader reads the bucket, not the disk. It stays at most
``keep`` bytes behind the safe point, at the slowest reader still reading from disk within that distance (so
readers close behind keep reading the file). A read in flight pins its own range only: that range is freed
once the read is over. The bytes on disk are then those from ``freed`` on, plus the ranges of reads in flight.
"""

from __future__ import annotations

Range = tuple[int, int]
"""Bytes [start, end) of the file."""


class Freeable:
    """The freed region of one partial file and the readers that read it from disk; see the module docstring."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.freed = 0
        """Bytes below it are not read from disk any more (they are freed, or will be once no read pins them)."""
        self._safe = 0
        self._readers: dict[int, int] = {}
        """Each reader's next position."""
        self._reading: dict[int, Range] = {}
        """Each reader's read in flight."""
        self._pending: list[Range] = []
        """Ranges below ``freed`` not freed yet: reads in flight pin them."""
        self._ids = 0

    def on_disk(self, pos: int) -> bool:
        """Whether a reader may read byte ``pos`` from disk (else: from the bucket)."""
        return pos >= self.freed

    def enter(self, pos: int) -> int:
        """A reader starts at ``pos``; its id."""
        self._ids += 1
        self._readers[self._ids] = pos
        return self._ids

    def move(self, reader: int, pos: int) -> list[Range]:
        """``reader`` goes on from ``pos``; the ranges to free now."""
        self._readers[reader] = pos
        return self._advance()

    def leave(self, reader: int) -> list[Range]:
        """``reader`` is done; the ranges to free now."""
        self._readers.pop(reader, None)
        self._reading.pop(reader, None)
        return self._advance()

    def pin(self, reader: int, start: int, end: int) -> None:
        """``reader`` reads bytes [start, end) from disk (``start`` must be ``on_disk``): they stay until ``unpin``."""
        assert self.on_disk(start), (start, self.freed)
        self._readers[reader] = start
        self._reading[reader] = (start, end)

    def unpin(self, reader: int, pos: int) -> list[Range]:
        """``reader``'s read ended, and it goes on from ``pos``; the ranges to free now."""
        self._reading.pop(reader, None)
        return self.move(reader, pos)

    def safe(self, upto: int) -> list[Range]:
        """The bytes below ``upto`` are safe elsewhere and read by nothing else here; the ranges to free now."""
        self._safe = max(self._safe, upto)
        return self._advance()

    def gone(self, upto: int) -> list[Range]:
        """The bytes below ``upto`` are safe elsewhere and not (all) on disk: no reader may read them from disk;
        the ranges to free now."""
        self._safe = max(self._safe, upto)
        self._free_to(upto)
        return self._advance()

    def _advance(self) -> list[Range]:
        behind = min((pos for pos in self._readers.values() if pos >= self.freed), default=self._safe)
        self._free_to(min(self._safe, max(behind, self._safe - self.keep)))
        return self._take()

    def _free_to(self, upto: int) -> None:
        if upto > self.freed:
            self._pending.append((self.freed, upto))
            self.freed = upto

    def _take(self) -> list[Range]:
        """The pending ranges no read pins (they are freed now); the rest stays pending."""
        free, pinned = self._pending, sorted(self._reading.values())
        for start, end in pinned:
            free = [piece for a, b in free for piece in ((a, min(b, start)), (max(a, end), b)) if piece[0] < piece[1]]
        self._pending = [(max(a, start), min(b, end)) for a, b in self._pending for start, end in pinned
                         if max(a, start) < min(b, end)]
        return free
