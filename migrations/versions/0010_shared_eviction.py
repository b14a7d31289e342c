"""Eviction on a store replicas share (S3): one replica evicts at a time (``eviction_lease``, fenced), its rounds
are recorded (``eviction_rounds``), readers' in-use marks are shared (``blobs_in_use``, expiring), and blobs no
revision holds wait out a grace period before they are deleted (``doomed_blobs``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eviction_lease",
        sa.Column("name", text_column(32), nullable=False),
        sa.Column("holder", text_column(128), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_eviction_lease")),
    )
    op.create_table(
        "eviction_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("replica", text_column(128), nullable=False),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("evicted", sa.Integer(), nullable=False),
        sa.Column("freed_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eviction_rounds")),
    )
    op.create_table(
        "blobs_in_use",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("replica", text_column(128), nullable=False),
        sa.Column("repo_type", text_column(16), nullable=False),
        sa.Column("repo_id", text_column(255), nullable=False),
        sa.Column("commit", text_column(40), nullable=False),
        sa.Column("sha256", text_column(64), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blobs_in_use")),
    )
    op.create_index(op.f("ix_blobs_in_use_replica"), "blobs_in_use", ["replica"])
    op.create_table(
        "doomed_blobs",
        sa.Column("sha256", text_column(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleting_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_doomed_blobs")),
    )


def downgrade() -> None:
    op.drop_table("doomed_blobs")
    op.drop_index(op.f("ix_blobs_in_use_replica"), table_name="blobs_in_use")
    op.drop_table("blobs_in_use")
    op.drop_table("eviction_rounds")
    op.drop_table("eviction_lease")
