"""Downloading files: many Range connections per file, from one or several sources, resumable, verified."""

from mreg.registry.download.readers import Readers
from mreg.registry.download.hasher import Hashed
from mreg.registry.download.transfer import Downloaded, FileSpec, Source, Tuning, download_file, download_from

__all__ = ["Downloaded", "FileSpec", "Hashed", "Readers", "Source", "Tuning", "download_file", "download_from"]
