"""Inspection: file headers, their tensors, and a revision's architecture.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("revisions") as batch:
        batch.add_column(sa.Column("architecture", text_column(128), nullable=True))
    op.create_table(
        "file_headers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file", sa.Integer(), nullable=False),
        sa.Column("format", text_column(16), nullable=False),
        sa.Column("header_bytes", sa.BigInteger(), nullable=True),
        sa.Column("tensor_count", sa.Integer(), nullable=True),
        sa.Column("parameters", sa.BigInteger(), nullable=True),
        sa.Column("dtypes", sa.JSON(), nullable=True),
        sa.Column("gguf", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_headers")),
        sa.ForeignKeyConstraint(["file"], ["files.id"], name=op.f("fk_file_headers_file_files"), ondelete="CASCADE"),
        sa.UniqueConstraint("file", name=op.f("uq_file_headers_file")),
    )
    op.create_table(
        "tensors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("header", sa.Integer(), nullable=False),
        sa.Column("name", text_column(1024), nullable=False),
        sa.Column("dtype", text_column(32), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("nbytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tensors")),
        sa.ForeignKeyConstraint(
            ["header"], ["file_headers.id"], name=op.f("fk_tensors_header_file_headers"), ondelete="CASCADE"
        ),
    )
    op.create_index(op.f("ix_tensors_header"), "tensors", ["header"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tensors_header"), table_name="tensors")
    op.drop_table("tensors")
    op.drop_table("file_headers")
    with op.batch_alter_table("revisions") as batch:
        batch.drop_column("architecture")
