"""Mirror jobs: what the daemon keeps in sync, and how far each job got.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mirror_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo", sa.Integer(), nullable=False),
        sa.Column("revision", text_column(255), nullable=False),
        sa.Column("include", sa.JSON(), nullable=False),
        sa.Column("exclude", sa.JSON(), nullable=False),
        sa.Column("every", sa.Float(), nullable=True),
        sa.Column("status", text_column(16), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("commit", text_column(40), nullable=True),
        sa.Column("last_sync", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_sync", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mirror_jobs")),
        sa.ForeignKeyConstraint(["repo"], ["repos.id"], name=op.f("fk_mirror_jobs_repo_repos"), ondelete="CASCADE"),
        sa.UniqueConstraint("repo", name=op.f("uq_mirror_jobs_repo")),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_mirror_jobs_status")),
    )


def downgrade() -> None:
    op.drop_table("mirror_jobs")
