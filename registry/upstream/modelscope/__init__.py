"""ModelScope's model API, client side."""

from mreg.registry.upstream.modelscope.client import Listings, ModelScopeClient
from mreg.registry.upstream.modelscope.urls import DEFAULT_ENDPOINT

__all__ = ["DEFAULT_ENDPOINT", "Listings", "ModelScopeClient"]
