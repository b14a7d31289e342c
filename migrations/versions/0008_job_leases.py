"""Job leases: a mirror job is run by the replica holding its lease (``leased_by`` until ``lease_until``),
and ``fence`` (+1 at every lease) refuses the writes of a replica whose lease was taken over; each run
is recorded in ``mirror_job_runs``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mreg.registry.catalog.columns import text_column

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mirror_jobs") as batch:
        batch.add_column(sa.Column("leased_by", text_column(128), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("fence", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "mirror_job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", sa.Integer(), nullable=False),
        sa.Column("replica", text_column(128), nullable=False),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", text_column(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mirror_job_runs")),
        sa.ForeignKeyConstraint(["job"], ["mirror_jobs.id"], name=op.f("fk_mirror_job_runs_job_mirror_jobs"),
                                ondelete="CASCADE"),
    )
    op.create_index(op.f("ix_mirror_job_runs_job"), "mirror_job_runs", ["job"])


def downgrade() -> None:
    op.drop_index(op.f("ix_mirror_job_runs_job"), table_name="mirror_job_runs")
    op.drop_table("mirror_job_runs")
    with op.batch_alter_table("mirror_jobs") as batch:
        batch.drop_column("fence")
        batch.drop_column("lease_until")
        batch.drop_column("leased_by")
