"""Downloading files: many Range connections per file, resumable across processes, verified."""

from .transfer import FileSpec, Tuning, download_file

__all__ = ["FileSpec", "Tuning", "download_file"]
