"""Derived artifacts: GGUF files mreg converted from a repo's safetensors.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "derived_artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo", sa.Integer(), nullable=False),
        sa.Column("commit", text_column(40), nullable=False),
        sa.Column("quant", text_column(32), nullable=False),
        sa.Column("name", text_column(255), nullable=False),
        sa.Column("sha256", text_column(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mreg_version", text_column(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_derived_artifacts")),
        sa.ForeignKeyConstraint(["repo"], ["repos.id"], name=op.f("fk_derived_artifacts_repo_repos"),
                                ondelete="CASCADE"),
        sa.UniqueConstraint("repo", "commit", "quant", name=op.f("uq_derived_artifacts_repo_commit_quant")),
    )


def downgrade() -> None:
    op.drop_table("derived_artifacts")
