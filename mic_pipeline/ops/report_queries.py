"""The analysts' report figures: each one SQL text (run as is on SQLite and PostgreSQL, and printed
under its chart) and how to chart its rows.

Sources are the sinks' warehouse tables and reporting views (`sinks/migrations`): `companies`,
`orders`, `order_events`, `factoring_requests`, `dead_letters`, and the views
`members_by_region_status`, `oem_deals_per_industry_month`, `patent_deals_per_kind`,
`factoring_volume_monthly`.
"""

from __future__ import annotations

from dataclasses import dataclass

_REGION = """CASE region_code WHEN '77' THEN 'Moscow (77)' WHEN '50' THEN 'Moscow Region (50)'
            WHEN '78' THEN 'St Petersburg (78)' ELSE 'other regions' END"""


@dataclass(frozen=True)
class Figure:
    """One figure: `name` (also its CSV file name), title, SQL, and the chart.

    Row charts draw one bar per result row, labelled by `label_columns`, sized by `value_column`.
    Column charts (`value_columns`) draw one bar per listed column of the first row.
    """

    name: str
    title: str
    sql: str
    note: str
    label_columns: tuple[str, ...] = ()
    value_column: str = ""
    value_columns: tuple[str, ...] = ()


FIGURES: tuple[Figure, ...] = (
    Figure(
        "members_by_region_status",
        "Active members by region and status",
        f"""SELECT {_REGION} AS region,
       status,
       SUM(members) AS members
FROM members_by_region_status
GROUP BY {_REGION}, status
ORDER BY status, members DESC""",
        "Participants are Moscow companies (region 77); regional partners come from the other regions.",
        ("status", "region"),
        "members",
    ),
    Figure(
        "members_by_size",
        "Active members by status and size (SME = small + medium)",
        """SELECT status, size, COUNT(*) AS members
FROM companies
WHERE membership = 'active'
GROUP BY status, size
ORDER BY status, size""",
        "The seed: small and medium companies are 90% of the participants.",
        ("status", "size"),
        "members",
    ),
    Figure(
        "members_by_sector",
        "Active members by sector",
        """SELECT sector,
       SUM(CASE WHEN status = 'participant' THEN 1 ELSE 0 END) AS participants,
       SUM(CASE WHEN status = 'regional_partner' THEN 1 ELSE 0 END) AS regional_partners,
       COUNT(*) AS members
FROM companies
WHERE membership = 'active'
GROUP BY sector
ORDER BY members DESC, sector""",
        "Sectors as declared in member.joined / member.updated.",
        ("sector",),
        "members",
    ),
    Figure(
        "state_corporations",
        "Active members belonging to state corporations",
        """SELECT state_corporation, COUNT(*) AS companies
FROM companies
WHERE membership = 'active' AND state_corporation IS NOT NULL
GROUP BY state_corporation
ORDER BY companies DESC""",
        "The seed: 87 companies, 63 Rostec, 14 Rosatom, 10 Roscosmos.",
        ("state_corporation",),
        "companies",
    ),
    Figure(
        "oem_orders_by_industry",
        "OEM manufacturing board: orders and deals by industry",
        """SELECT industry,
       COUNT(*) AS placed,
       COUNT(accepted_at) AS accepted,
       COUNT(completed_at) AS completed,
       COUNT(cancelled_at) AS cancelled,
       COALESCE(SUM(CASE WHEN completed_at IS NOT NULL THEN amount_rub END), 0) AS completed_rub
FROM orders
GROUP BY industry
ORDER BY placed DESC""",
        "A deal is a completed order; its amount is the order's completed amount.",
        ("industry",),
        "completed",
    ),
    Figure(
        "oem_deals_per_month",
        "OEM manufacturing board: deals per industry and month",
        """SELECT month, industry, deals, amount_rub
FROM oem_deals_per_industry_month
ORDER BY month, industry""",
        "By the month the order was completed (UTC).",
        ("month", "industry"),
        "deals",
    ),
    Figure(
        "oem_manufacturing_by_region",
        "OEM manufacturing board: accepted orders by the manufacturer's region",
        """SELECT CASE manufacturer_region_code WHEN '77' THEN 'Moscow (77)'
            WHEN '50' THEN 'Moscow Region (50)' ELSE 'other regions' END AS manufacturer_region,
       COUNT(*) AS accepted_orders,
       1.0 * COUNT(*) / SUM(COUNT(*)) OVER () AS share
FROM order_events
WHERE event_type = 'order.accepted'
GROUP BY CASE manufacturer_region_code WHEN '77' THEN 'Moscow (77)'
            WHEN '50' THEN 'Moscow Region (50)' ELSE 'other regions' END
ORDER BY accepted_orders DESC""",
        "The regional share of manufacturing: orders taken by manufacturers outside Moscow.",
        ("manufacturer_region",),
        "accepted_orders",
    ),
    Figure(
        "patent_deals_by_kind",
        "Patent board: deals by kind of right",
        """SELECT kind, deal, deals, amount_rub
FROM patent_deals_per_kind
ORDER BY kind, deal""",
        "A sale ends a listing; licences may repeat.",
        ("kind", "deal"),
        "deals",
    ),
    Figure(
        "factoring_totals",
        "Factoring: volume and default rate",
        """SELECT COUNT(*) AS requests,
       COALESCE(SUM(invoice_amount_rub), 0) AS invoiced_rub,
       COUNT(funded_at) AS funded,
       COALESCE(SUM(advance_rub), 0) AS advanced_rub,
       COUNT(repaid_at) AS repaid,
       COUNT(defaulted_at) AS defaulted,
       1.0 * COUNT(defaulted_at) / NULLIF(COUNT(repaid_at) + COUNT(defaulted_at), 0) AS default_rate
FROM factoring_requests""",
        "Default rate = defaulted / (repaid + defaulted): of the funded requests that have ended.",
        value_columns=("requests", "funded", "repaid", "defaulted"),
    ),
    Figure(
        "factoring_monthly",
        "Factoring: volume per month",
        """SELECT month, requests, invoiced_rub, funded, advanced_rub, repaid, defaulted, default_rate
FROM factoring_volume_monthly
ORDER BY month""",
        "By the month of the request (UTC).",
        ("month",),
        "invoiced_rub",
    ),
    Figure(
        "dead_letters_by_reason",
        "Dead letters by reason",
        """SELECT reason, COUNT(*) AS dead_letters
FROM dead_letters
GROUP BY reason
ORDER BY dead_letters DESC, reason""",
        "Events the pipeline refused, by the contract's reason codes.",
        ("reason",),
        "dead_letters",
    ),
)
