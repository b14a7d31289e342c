"""ModelScope's model API, client side."""

from .client import Listings, ModelScopeClient
from .urls import DEFAULT_ENDPOINT

__all__ = ["DEFAULT_ENDPOINT", "Listings", "ModelScopeClient"]
