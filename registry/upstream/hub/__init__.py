"""The Hugging Face Hub protocol, client side."""

from mreg.registry.upstream.hub.client import HubClient, ModelHit

__all__ = ["HubClient", "ModelHit"]
