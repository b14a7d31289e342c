"""Shared pytest fixtures."""

from tests.postgres import catalog_url, empty_url, module_catalog_url, pg_url, postgres  # noqa: F401  (the catalog databases)
from tests.seaweed import s3_env, s3_url, seaweed  # noqa: F401  (the S3 server)
from tests.backends import backend, local_backend  # noqa: F401  (embedded or PostgreSQL + S3)
from tests.testhub.fixtures import *  # noqa: F401,F403  (test_hub, hf_env)
