"""The Hugging Face Hub protocol, client side."""

from .client import FileLocation, HubClient, RemoteFile, RepoInfo, RetryPolicy

__all__ = ["FileLocation", "HubClient", "RemoteFile", "RepoInfo", "RetryPolicy"]
