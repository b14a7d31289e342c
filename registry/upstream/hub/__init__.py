"""The Hugging Face Hub protocol, client side."""

from mreg.registry.upstream.hub.client import FileLocation, HubClient, ModelHit, RemoteFile, RepoInfo, RetryPolicy

__all__ = ["FileLocation", "HubClient", "ModelHit", "RemoteFile", "RepoInfo", "RetryPolicy"]
