"""ModelScope's model API, client side."""

from mreg.registry.modelscope.client import Listings, ModelScopeClient
from mreg.registry.modelscope.urls import DEFAULT_ENDPOINT

__all__ = ["DEFAULT_ENDPOINT", "Listings", "ModelScopeClient"]
