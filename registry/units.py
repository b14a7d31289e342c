"""Sizes and counts as people read them: ``1.5 GB``, ``134.52M``."""

from __future__ import annotations


def human_size(n: float) -> str:
    """Bytes in decimal units (kB = 1000 B), one decimal above bytes."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_count(n: int) -> str:
    """A count with a K/M/B/T suffix and two decimals (parameters: ``134.52M``)."""
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
