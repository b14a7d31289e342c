"""Fill leases: one upstream transfer per blob across replicas (#13). The replica holding a blob's lease
(``holder`` until ``lease_until``) fills it into the shared store; ``fence`` (+1 at every lease) refuses the
writes of a holder whose lease was taken over; ``committed`` is how many leading bytes the shared store holds.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fill_leases",
        sa.Column("key", text_column(80), nullable=False),
        sa.Column("owner", text_column(300), nullable=False),
        sa.Column("holder", text_column(128), nullable=False),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("committed", sa.BigInteger(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", text_column(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_fill_leases")),
    )
    op.create_index(op.f("ix_fill_leases_lease_until"), "fill_leases", ["lease_until"])


def downgrade() -> None:
    op.drop_index(op.f("ix_fill_leases_lease_until"), table_name="fill_leases")
    op.drop_table("fill_leases")
