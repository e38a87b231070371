"""`landed_at` on every event table (when the SQL sink inserted the row, UTC; NULL for rows landed
before this revision), indexed for `status`'s freshness; `dead_letters` indexed by `event_id` and by
the first characters of `original_key` (the company id), for `mic-pipeline trace`. Compatible: a new
nullable column and new indexes only.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from schemas.topics import Family
from sinks.sql.tables import KEY_PREFIX, LANDED_AT, UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for family in Family:
        op.add_column(family.table, sa.Column(LANDED_AT, UtcDateTime(), nullable=True))
        op.create_index(f"ix_{family.table}_landed_at", family.table, [LANDED_AT])
    op.create_index("ix_dead_letters_event_id", "dead_letters", ["event_id"])
    op.create_index(
        "ix_dead_letters_key_prefix", "dead_letters", [sa.text(f"substr(original_key, 1, {KEY_PREFIX})")]
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_key_prefix", table_name="dead_letters")
    op.drop_index("ix_dead_letters_event_id", table_name="dead_letters")
    for family in Family:
        op.drop_index(f"ix_{family.table}_landed_at", table_name=family.table)
        with op.batch_alter_table(family.table) as batch:
            batch.drop_column(LANDED_AT)
