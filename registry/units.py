"""Sizes, counts, intervals and rates as people read and write them: ``1.5 GB``, ``134.52M``, ``6h``, ``50M``."""

from __future__ import annotations

import re

from mreg.registry.errors import UsageError

_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_BYTES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}


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


def parse_interval(text: str) -> float:
    """Seconds from ``90``, ``45s``, ``30m``, ``6h``, ``1d`` or ``2w`` (decimals allowed: ``1.5h``)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    seconds = float(match[1]) * _SECONDS[match[2] or "s"] if match else 0.0
    if seconds <= 0:
        raise UsageError(f"invalid interval {text!r}: use a positive number with s, m, h, d or w, like 6h")
    return seconds


def _bytes(text: str, per_second: bool) -> float:
    suffix = r"b?(?:/s)?" if per_second else r"b?"
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?" + suffix + r"\s*", text.lower())
    return float(match[1]) * _BYTES[(match[2] or "").upper()] if match else 0.0


def parse_size(text: str) -> int:
    """Bytes from ``500G``, ``300MB``, ``1.5T``, ``64Gi`` or ``1000000`` (K/M/G/T are powers of 1000, Ki… of 1024)."""
    size = int(_bytes(text, per_second=False))
    if size <= 0:
        raise UsageError(f"invalid size {text!r}: use bytes like 500G, 300MB or 64Gi")
    return size


def parse_rate(text: str) -> float:
    """Bytes per second from ``50M``, ``1.5G``, ``800K``, ``64Mi`` or ``1000000`` (an optional ``/s`` or ``B``)."""
    rate = _bytes(text, per_second=True)
    if rate <= 0:
        raise UsageError(f"invalid bandwidth {text!r}: use bytes per second like 50M, 1.5G or 800K")
    return rate
