"""Reporting views: members by region and status, OEM deals per industry and month, patent deals
per kind, factoring volume and default rate per month.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _month(column: str) -> str:
    """`YYYY-MM` of a UTC timestamp column, per dialect (SQLite stores UTC text)."""
    if op.get_bind().dialect.name == "sqlite":
        return f"substr({column}, 1, 7)"
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM')"


def _views() -> dict[str, str]:
    return {
        "members_by_region_status": """
            SELECT region_code, status, COUNT(*) AS members
            FROM companies
            WHERE membership = 'active'
            GROUP BY region_code, status""",
        "oem_deals_per_industry_month": f"""
            SELECT industry, {_month("completed_at")} AS month,
                   COUNT(*) AS deals, SUM(amount_rub) AS amount_rub
            FROM orders
            WHERE status = 'completed'
            GROUP BY industry, {_month("completed_at")}""",
        "patent_deals_per_kind": """
            SELECT p.kind, e.deal, COUNT(*) AS deals, SUM(e.amount_rub) AS amount_rub
            FROM patent_events e JOIN patents p ON p.patent_id = e.patent_id
            WHERE e.event_type = 'patent.deal_closed'
            GROUP BY p.kind, e.deal""",
        "factoring_volume_monthly": f"""
            SELECT {_month("requested_at")} AS month,
                   COUNT(*) AS requests, SUM(invoice_amount_rub) AS invoiced_rub,
                   COUNT(funded_at) AS funded, SUM(advance_rub) AS advanced_rub,
                   COUNT(repaid_at) AS repaid, COUNT(defaulted_at) AS defaulted,
                   1.0 * COUNT(defaulted_at)
                       / NULLIF(COUNT(repaid_at) + COUNT(defaulted_at), 0) AS default_rate
            FROM factoring_requests
            GROUP BY {_month("requested_at")}""",
    }


def upgrade() -> None:
    for name, query in _views().items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def downgrade() -> None:
    for name in _views():
        op.execute(f"DROP VIEW {name}")
