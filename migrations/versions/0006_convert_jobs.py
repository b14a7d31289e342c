"""Convert jobs: the daemon's `POST /v1/convert` conversions, so that every daemon (and a restarted
one) reports them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "convert_jobs",
        sa.Column("id", text_column(32), nullable=False),
        sa.Column("repo", sa.Integer(), nullable=False),
        sa.Column("commit", text_column(40), nullable=False),
        sa.Column("quant", text_column(32), nullable=False),
        sa.Column("status", text_column(16), nullable=False),
        sa.Column("name", text_column(255), nullable=True),
        sa.Column("sha256", text_column(64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_convert_jobs")),
        sa.ForeignKeyConstraint(["repo"], ["repos.id"], name=op.f("fk_convert_jobs_repo_repos"), ondelete="CASCADE"),
        sa.CheckConstraint("status IN ('running', 'complete', 'failed')", name=op.f("ck_convert_jobs_status")),
    )
    op.create_index(op.f("ix_convert_jobs_repo_commit_quant"), "convert_jobs", ["repo", "commit", "quant"])


def downgrade() -> None:
    op.drop_index(op.f("ix_convert_jobs_repo_commit_quant"), table_name="convert_jobs")
    op.drop_table("convert_jobs")
