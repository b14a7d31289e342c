"""Failed transfers: content whose transfer failed after a daemon sent some of its bytes, so that a
restarted daemon and every replica on the catalog refuse to continue it with a Range request (#14.1).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "failed_transfers",
        sa.Column("key", text_column(80), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_failed_transfers")),
    )
    op.create_index(op.f("ix_failed_transfers_failed_at"), "failed_transfers", ["failed_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_failed_transfers_failed_at"), table_name="failed_transfers")
    op.drop_table("failed_transfers")
