"""The initial catalog: repos, revisions, refs, files, blobs and downloads.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "repos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_type", text_column(16), nullable=False),
        sa.Column("repo_id", text_column(255), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repos")),
        sa.UniqueConstraint("repo_type", "repo_id", name=op.f("uq_repos_repo_type_repo_id")),
    )
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo", sa.Integer(), nullable=False),
        sa.Column("commit", text_column(40), nullable=False),
        sa.Column("state", text_column(16), nullable=False),
        _timestamp("created_at"),
        _timestamp("completed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revisions")),
        sa.ForeignKeyConstraint(["repo"], ["repos.id"], name=op.f("fk_revisions_repo_repos"), ondelete="CASCADE"),
        sa.UniqueConstraint("repo", "commit", name=op.f("uq_revisions_repo_commit")),
        sa.CheckConstraint("state IN ('pending', 'complete')", name=op.f("ck_revisions_state")),
    )
    op.create_table(
        "refs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo", sa.Integer(), nullable=False),
        sa.Column("name", text_column(255), nullable=False),
        sa.Column("commit", text_column(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refs")),
        sa.ForeignKeyConstraint(["repo"], ["repos.id"], name=op.f("fk_refs_repo_repos"), ondelete="CASCADE"),
        sa.UniqueConstraint("repo", "name", name=op.f("uq_refs_repo_name")),
    )
    op.create_table(
        "files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("path", text_column(4096), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("git_oid", text_column(64), nullable=False),
        sa.Column("lfs_sha256", text_column(64), nullable=True),
        sa.Column("sha256", text_column(64), nullable=True),
        sa.Column("state", text_column(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
        sa.ForeignKeyConstraint(
            ["revision"], ["revisions.id"], name=op.f("fk_files_revision_revisions"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint("revision", "path", name=op.f("uq_files_revision_path")),
        sa.CheckConstraint("state IN ('pending', 'complete')", name=op.f("ck_files_state")),
    )
    op.create_index("ix_files_sha256", "files", ["sha256"])
    op.create_index("ix_files_git_oid", "files", ["git_oid"])
    op.create_table(
        "blobs",
        sa.Column("sha256", text_column(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
    )
    op.create_table(
        "downloads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo", sa.Integer(), nullable=False),
        sa.Column("commit", text_column(40), nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        sa.Column("status", text_column(16), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("bytes_fetched", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_downloads")),
        sa.ForeignKeyConstraint(["repo"], ["repos.id"], name=op.f("fk_downloads_repo_repos"), ondelete="CASCADE"),
        sa.CheckConstraint("status IN ('running', 'complete', 'failed')", name=op.f("ck_downloads_status")),
    )
    op.create_index(op.f("ix_downloads_repo"), "downloads", ["repo"])


def downgrade() -> None:
    op.drop_index(op.f("ix_downloads_repo"), table_name=op.f("downloads"))
    op.drop_table("downloads")
    op.drop_table("blobs")
    op.drop_index("ix_files_git_oid", table_name=op.f("files"))
    op.drop_index("ix_files_sha256", table_name=op.f("files"))
    op.drop_table("files")
    op.drop_table("refs")
    op.drop_table("revisions")
    op.drop_table("repos")
