"""Blobs by sha256 behind one interface (``BlobStore``), with the local disk as its first implementation."""

from mreg.registry.blobs.interface import BlobInfo, BlobStore, LocalBlobPaths, PartialFill, holds
from mreg.registry.blobs.local import LocalBlobStore

__all__ = ["BlobInfo", "BlobStore", "LocalBlobPaths", "LocalBlobStore", "PartialFill", "holds"]
