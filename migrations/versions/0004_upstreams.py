"""Upstreams: which upstream (by its configured name) each revision and file came from.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(sa.Column("upstream", text_column(64), nullable=True))
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("upstream", text_column(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_column("upstream")
    with op.batch_alter_table("revisions") as batch:
        batch.drop_column("upstream")
