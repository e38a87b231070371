"""Warehouse tables: event tables, current-state tables, dead letters, quarantine, quality results.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from sinks.sql.tables import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "companies",
        sa.Column("company_id", sa.String(length=12), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("region_code", sa.String(length=40), nullable=True),
        sa.Column("sector", sa.String(length=40), nullable=True),
        sa.Column("size", sa.String(length=40), nullable=True),
        sa.Column("state_corporation", sa.String(length=40), nullable=True),
        sa.Column("membership", sa.String(length=40), nullable=False),
        sa.Column("first_joined_at", UtcDateTime(), nullable=True),
        sa.Column("last_joined_at", UtcDateTime(), nullable=True),
        sa.Column("left_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("company_id"),
    )
    op.create_index("ix_companies_region_status", "companies", ["region_code", "status"])

    op.create_table(
        "dead_letters",
        sa.Column("original_topic", sa.String(length=249), nullable=False),
        sa.Column("original_partition", sa.Integer(), nullable=False),
        sa.Column("original_offset", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("event_type", sa.String(length=64), nullable=True),
        sa.Column("original_key", sa.Text(), nullable=True),
        sa.Column("original_value", sa.Text(), nullable=True),
        sa.Column("original_encoding", sa.String(length=16), nullable=True),
        sa.Column("failed_at", UtcDateTime(), nullable=True),
        sa.Column("deadletter_partition", sa.Integer(), nullable=False),
        sa.Column("deadletter_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("original_topic", "original_partition", "original_offset"),
    )
    op.create_index("ix_dead_letters_failed_at", "dead_letters", ["failed_at"])
    op.create_index("ix_dead_letters_reason", "dead_letters", ["reason"])

    op.create_table(
        "factoring_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("company_id", sa.String(length=12), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("debtor_id", sa.String(length=12), nullable=True),
        sa.Column("invoice_amount_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("advance_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("fee_rate", sa.Double(), nullable=True),
        sa.Column("amount_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("outstanding_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("region_code", sa.String(length=40), nullable=True),
        sa.Column("sector", sa.String(length=40), nullable=True),
        sa.Column("size", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("state_corporation", sa.String(length=40), nullable=True),
        sa.Column("debtor_region_code", sa.String(length=40), nullable=True),
        sa.Column("debtor_sector", sa.String(length=40), nullable=True),
        sa.Column("debtor_size", sa.String(length=40), nullable=True),
        sa.Column("debtor_status", sa.String(length=40), nullable=True),
        sa.Column("debtor_state_corporation", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_factoring_events_company_id", "factoring_events", ["company_id"])
    op.create_index("ix_factoring_events_event_type", "factoring_events", ["event_type"])
    op.create_index("ix_factoring_events_occurred_at", "factoring_events", ["occurred_at"])
    op.create_index("ix_factoring_events_request_id", "factoring_events", ["request_id", "occurred_at"])

    op.create_table(
        "factoring_requests",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("company_id", sa.String(length=12), nullable=False),
        sa.Column("debtor_id", sa.String(length=12), nullable=True),
        sa.Column("invoice_amount_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("advance_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("fee_rate", sa.Double(), nullable=True),
        sa.Column("repaid_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("outstanding_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=True),
        sa.Column("funded_at", UtcDateTime(), nullable=True),
        sa.Column("repaid_at", UtcDateTime(), nullable=True),
        sa.Column("defaulted_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_factoring_requests_company_id", "factoring_requests", ["company_id"])
    op.create_index("ix_factoring_requests_status", "factoring_requests", ["status"])

    op.create_table(
        "member_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("company_id", sa.String(length=12), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=True),
        sa.Column("region_code", sa.String(length=40), nullable=True),
        sa.Column("sector", sa.String(length=40), nullable=True),
        sa.Column("size", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("state_corporation", sa.String(length=40), nullable=True),
        sa.Column("changed_fields", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_member_events_company_id", "member_events", ["company_id", "occurred_at"])
    op.create_index("ix_member_events_event_type", "member_events", ["event_type"])
    op.create_index("ix_member_events_occurred_at", "member_events", ["occurred_at"])

    op.create_table(
        "order_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("company_id", sa.String(length=12), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("industry", sa.String(length=40), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("quantity", sa.BigInteger(), nullable=True),
        sa.Column("budget_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("manufacturer_id", sa.String(length=12), nullable=True),
        sa.Column("amount_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("region_code", sa.String(length=40), nullable=True),
        sa.Column("sector", sa.String(length=40), nullable=True),
        sa.Column("size", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("state_corporation", sa.String(length=40), nullable=True),
        sa.Column("manufacturer_region_code", sa.String(length=40), nullable=True),
        sa.Column("manufacturer_sector", sa.String(length=40), nullable=True),
        sa.Column("manufacturer_size", sa.String(length=40), nullable=True),
        sa.Column("manufacturer_status", sa.String(length=40), nullable=True),
        sa.Column("manufacturer_state_corporation", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_order_events_company_id", "order_events", ["company_id"])
    op.create_index("ix_order_events_event_type", "order_events", ["event_type"])
    op.create_index("ix_order_events_occurred_at", "order_events", ["occurred_at"])
    op.create_index("ix_order_events_order_id", "order_events", ["order_id", "occurred_at"])

    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("company_id", sa.String(length=12), nullable=False),
        sa.Column("industry", sa.String(length=40), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("quantity", sa.BigInteger(), nullable=True),
        sa.Column("budget_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("manufacturer_id", sa.String(length=12), nullable=True),
        sa.Column("amount_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("placed_at", UtcDateTime(), nullable=True),
        sa.Column("accepted_at", UtcDateTime(), nullable=True),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.Column("cancelled_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_orders_company_id", "orders", ["company_id"])
    op.create_index("ix_orders_status", "orders", ["status"])

    op.create_table(
        "patent_events",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=40), nullable=False),
        sa.Column("schema_version", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("company_id", sa.String(length=12), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=True),
        sa.Column("patent_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("offer", sa.String(length=40), nullable=True),
        sa.Column("price_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("buyer_id", sa.String(length=12), nullable=True),
        sa.Column("deal", sa.String(length=40), nullable=True),
        sa.Column("amount_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("region_code", sa.String(length=40), nullable=True),
        sa.Column("sector", sa.String(length=40), nullable=True),
        sa.Column("size", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=True),
        sa.Column("state_corporation", sa.String(length=40), nullable=True),
        sa.Column("buyer_region_code", sa.String(length=40), nullable=True),
        sa.Column("buyer_sector", sa.String(length=40), nullable=True),
        sa.Column("buyer_size", sa.String(length=40), nullable=True),
        sa.Column("buyer_status", sa.String(length=40), nullable=True),
        sa.Column("buyer_state_corporation", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_patent_events_company_id", "patent_events", ["company_id"])
    op.create_index("ix_patent_events_event_type", "patent_events", ["event_type"])
    op.create_index("ix_patent_events_occurred_at", "patent_events", ["occurred_at"])
    op.create_index("ix_patent_events_patent_id", "patent_events", ["patent_id", "occurred_at"])

    op.create_table(
        "patents",
        sa.Column("patent_id", sa.String(length=64), nullable=False),
        sa.Column("company_id", sa.String(length=12), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("offer", sa.String(length=40), nullable=True),
        sa.Column("price_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("deal_count", sa.Integer(), nullable=False),
        sa.Column("license_count", sa.Integer(), nullable=False),
        sa.Column("deal_amount_rub", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("buyer_id", sa.String(length=12), nullable=True),
        sa.Column("listed_at", UtcDateTime(), nullable=True),
        sa.Column("last_deal_at", UtcDateTime(), nullable=True),
        sa.Column("sold_at", UtcDateTime(), nullable=True),
        sa.Column("withdrawn_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("patent_id"),
    )
    op.create_index("ix_patents_company_id", "patents", ["company_id"])
    op.create_index("ix_patents_status", "patents", ["status"])

    op.create_table(
        "quality_results",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("expectation", sa.String(length=200), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("unexpected_count", sa.BigInteger(), nullable=True),
        sa.Column("element_count", sa.BigInteger(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("checked_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "table_name", "expectation"),
    )
    op.create_index("ix_quality_results_checked_at", "quality_results", ["checked_at"])

    op.create_table(
        "quarantined_batches",
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("first_offset", sa.BigInteger(), nullable=False),
        sa.Column("last_offset", sa.BigInteger(), nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("records", sa.Text(), nullable=False),
        sa.Column("quarantined_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition", "first_offset"),
    )


def downgrade() -> None:
    op.drop_table("quarantined_batches")
    op.drop_index("ix_quality_results_checked_at", table_name="quality_results")

    op.drop_table("quality_results")
    op.drop_index("ix_patents_status", table_name="patents")
    op.drop_index("ix_patents_company_id", table_name="patents")

    op.drop_table("patents")
    op.drop_index("ix_patent_events_patent_id", table_name="patent_events")
    op.drop_index("ix_patent_events_occurred_at", table_name="patent_events")
    op.drop_index("ix_patent_events_event_type", table_name="patent_events")
    op.drop_index("ix_patent_events_company_id", table_name="patent_events")

    op.drop_table("patent_events")
    op.drop_index("ix_orders_status", table_name="orders")
    op.drop_index("ix_orders_company_id", table_name="orders")

    op.drop_table("orders")
    op.drop_index("ix_order_events_order_id", table_name="order_events")
    op.drop_index("ix_order_events_occurred_at", table_name="order_events")
    op.drop_index("ix_order_events_event_type", table_name="order_events")
    op.drop_index("ix_order_events_company_id", table_name="order_events")

    op.drop_table("order_events")
    op.drop_index("ix_member_events_occurred_at", table_name="member_events")
    op.drop_index("ix_member_events_event_type", table_name="member_events")
    op.drop_index("ix_member_events_company_id", table_name="member_events")

    op.drop_table("member_events")
    op.drop_index("ix_factoring_requests_status", table_name="factoring_requests")
    op.drop_index("ix_factoring_requests_company_id", table_name="factoring_requests")

    op.drop_table("factoring_requests")
    op.drop_index("ix_factoring_events_request_id", table_name="factoring_events")
    op.drop_index("ix_factoring_events_occurred_at", table_name="factoring_events")
    op.drop_index("ix_factoring_events_event_type", table_name="factoring_events")
    op.drop_index("ix_factoring_events_company_id", table_name="factoring_events")

    op.drop_table("factoring_events")
    op.drop_index("ix_dead_letters_reason", table_name="dead_letters")
    op.drop_index("ix_dead_letters_failed_at", table_name="dead_letters")

    op.drop_table("dead_letters")
    op.drop_index("ix_companies_region_status", table_name="companies")

    op.drop_table("companies")
