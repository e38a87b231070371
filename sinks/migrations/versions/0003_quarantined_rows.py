"""Per-row quarantine: `quarantined_rows`, one row per event the quality gate (or the database) kept out.

The old per-batch table `quarantined_batches` stays as it is, readable for data quarantined before
this revision (`mic-pipeline quarantine list` shows it as legacy batches).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sinks.sql.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantined_rows",
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=80), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=True),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("record_offset", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("quarantined_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", "event_id"),
    )
    op.create_index("ix_quarantined_rows_quarantined_at", "quarantined_rows", ["quarantined_at"])


def downgrade() -> None:
    op.drop_index("ix_quarantined_rows_quarantined_at", table_name="quarantined_rows")
    op.drop_table("quarantined_rows")
