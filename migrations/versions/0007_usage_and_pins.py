"""Usage and pins, for the size budget: when each revision was last used, and what is pinned.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "pins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo", sa.Integer(), nullable=False),
        sa.Column("commit", text_column(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pins")),
        sa.ForeignKeyConstraint(["repo"], ["repos.id"], name=op.f("fk_pins_repo_repos"), ondelete="CASCADE"),
    )
    op.create_index(op.f("ix_pins_repo"), "pins", ["repo"])


def downgrade() -> None:
    op.drop_index(op.f("ix_pins_repo"), table_name="pins")
    op.drop_table("pins")
    with op.batch_alter_table("revisions") as batch:
        batch.drop_column("last_used_at")
