"""Shared pytest fixtures."""

from tests.testhub.fixtures import *  # noqa: F401,F403  (test_hub, hf_env)
