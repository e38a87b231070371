"""`mic-pipeline report`: the analysts' report from the SQL warehouse.

Writes `<out>/index.html` (self-contained: inline CSS and SVG, no external URL) and one CSV per figure
(`<figure name>.csv`, the SQL's columns and rows) plus `seed_comparison.csv`. Every figure's SQL comes
from `mic_pipeline.ops.report_queries` and is printed under its chart exactly as it ran.

Value formats (CSV and HTML alike): money columns (`*_rub`) with two decimals, shares and rates with
four, counts as integers, missing values empty.
"""

from __future__ import annotations

import argparse
import csv
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from mic_pipeline.ops.report_queries import FIGURES, Figure
from producers.population import (
    MOSCOW_PARTICIPANTS,
    MOSCOW_REGION_SHARE,
    PARTICIPANT_SME_SHARE,
    REGIONAL_PARTNERS,
    ST_PETERSBURG_SHARE,
    STATE_CORPORATION_COMPANIES,
)

SEED_SOURCE = "mic-2020-overview.txt (Moscow Innovation Cluster, September 2020)"


def register_report(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `report`."""
    report = subparsers.add_parser("report", help="write the analysts' HTML report and CSV files")
    report.add_argument(
        "--out", type=Path, default=Path("report"), help="output directory (default ./report)"
    )
    report.add_argument(
        "--seed-scale",
        type=float,
        default=1.0,
        help="scale the seed's absolute figures by this (a simulated population's --scale; default 1)",
    )
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """`mic-pipeline report`."""
    import sys

    from sqlalchemy.exc import SQLAlchemyError

    from mic_pipeline.config import Settings

    try:
        index = write_report(Settings.from_env().database_url, args.out, seed_scale=args.seed_scale)
    except SQLAlchemyError as error:
        print(f"report: cannot read the warehouse: {error}", file=sys.stderr)
        return 2
    print(f"report written: {index} (CSV files beside it)")
    return 0


@dataclass(frozen=True)
class FigureResult:
    """A figure with the rows its SQL returned (values formatted as in the module doc)."""

    figure: Figure
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def as_dicts(self) -> list[dict[str, str]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def format_value(column: str, value: Any) -> str:
    """A result value as text (see the module doc)."""
    if value is None:
        return ""
    if column.endswith("_rub"):
        return f"{Decimal(str(value)).quantize(Decimal('0.01'))}"
    if column in ("share", "default_rate") or column.endswith("_share"):
        return f"{float(value):.4f}"
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    return str(value)


def collect(database_url: str) -> list[FigureResult]:
    """Run every figure's SQL against the warehouse."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    results = []
    try:
        with engine.connect() as connection:
            for figure in FIGURES:
                result = connection.execute(text(figure.sql))
                columns = tuple(result.keys())
                rows = tuple(
                    tuple(format_value(c, v) for c, v in zip(columns, row, strict=True)) for row in result
                )
                results.append(FigureResult(figure, columns, rows))
    finally:
        engine.dispose()
    return results


def _number(text: str) -> float:
    return float(text) if text else 0.0


def seed_comparison(results: Sequence[FigureResult], scale: float) -> list[dict[str, str]]:
    """The seed's membership figures beside the warehouse's (absolute seed counts times `scale`)."""
    by_name = {result.figure.name: result.as_dicts() for result in results}
    regions = by_name["members_by_region_status"]
    sizes = by_name["members_by_size"]
    corporations = {
        r["state_corporation"]: int(_number(r["companies"])) for r in by_name["state_corporations"]
    }

    def members(status: str, region: str | None = None) -> int:
        return int(
            sum(
                _number(r["members"])
                for r in regions
                if r["status"] == status and region in (None, r["region"])
            )
        )

    partners = members("regional_partner")
    participants = int(sum(_number(r["members"]) for r in sizes if r["status"] == "participant"))
    sme = sum(_number(r["members"]) for r in sizes if r["status"] == "participant" and r["size"] != "large")

    def share(part: float, whole: int) -> str:
        return f"{part / whole:.4f}" if whole else ""

    def count(value: int) -> str:
        return str(round(value * scale))

    rows = [
        (
            "participants in Moscow (77)",
            count(MOSCOW_PARTICIPANTS),
            str(members("participant", "Moscow (77)")),
        ),
        ("SME share of participants", f"{PARTICIPANT_SME_SHARE:.4f}", share(sme, participants)),
        (
            "state-corporation companies",
            count(sum(STATE_CORPORATION_COMPANIES.values())),
            str(sum(corporations.values())),
        ),
        *(
            (f"  of which {name}", count(n), str(corporations.get(name, 0)))
            for name, n in STATE_CORPORATION_COMPANIES.items()
        ),
        ("regional partners", count(REGIONAL_PARTNERS), str(partners)),
        (
            "regional partners in Moscow Region (50)",
            f"{MOSCOW_REGION_SHARE:.4f}",
            share(members("regional_partner", "Moscow Region (50)"), partners),
        ),
        (
            "regional partners in St Petersburg (78)",
            f"{ST_PETERSBURG_SHARE:.4f}",
            share(members("regional_partner", "St Petersburg (78)"), partners),
        ),
    ]
    return [{"measure": m, "seed": s, "warehouse": w} for m, s, w in rows]


def chart_bars(result: FigureResult) -> list[tuple[str, float]]:
    """The (label, value) bars of a figure's chart."""
    figure = result.figure
    rows = result.as_dicts()
    if figure.value_columns:
        return [(c, _number(rows[0][c])) for c in figure.value_columns] if rows else []
    return [
        (" / ".join(r[c] or "-" for c in figure.label_columns), _number(r[figure.value_column])) for r in rows
    ]


def svg_bar_chart(bars: Sequence[tuple[str, float]], value_label: str) -> str:
    """A horizontal bar chart as inline SVG."""
    if not bars:
        return '<p class="empty">no rows</p>'
    label_w, bar_w, row_h = 260, 360, 22
    top = max((v for _, v in bars), default=0.0) or 1.0
    height = row_h * len(bars) + 24
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 120}" height="{height}" '
        f'role="img" aria-label="{html.escape(value_label)}">'
    ]
    for i, (label, value) in enumerate(bars):
        y = i * row_h + 4
        width = max(1.0, bar_w * value / top) if value else 0.0
        shown = f"{value:,.2f}" if value != int(value) else f"{int(value):,}"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{row_h - 6}" fill="#3b6ea5"/>'
            f'<text x="{label_w + width + 4:.1f}" y="{y + 14}">{shown}</text>'
        )
    parts.append(f'<text x="{label_w}" y="{height - 4}" class="axis">{html.escape(value_label)}</text></svg>')
    return "".join(parts)


def _table(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(row[c])}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
section{margin:2rem 0;border-top:1px solid #ccc}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f0f0f0}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}svg text{font-size:12px}
svg .axis{fill:#666}.note{color:#555}"""


def render_html(
    results: Sequence[FigureResult],
    comparison: Sequence[Mapping[str, str]],
    generated: str,
    seed_scale: float = 1.0,
) -> str:
    """The report page."""
    scaled = (
        ""
        if seed_scale == 1
        else f" The seed's counts are scaled by {seed_scale:g} (the population's scale)."
    )
    sections = [
        "<section id='seed_comparison'><h2>Membership against the seed's figures</h2>"
        f"<p class='note'>Seed: {html.escape(SEED_SOURCE)}.{scaled} Computed from the figures "
        "members_by_region_status, members_by_size and state_corporations below.</p>"
        f"{_table(('measure', 'seed', 'warehouse'), comparison)}"
        "<p><a href='seed_comparison.csv'>seed_comparison.csv</a></p></section>"
    ]
    for result in results:
        figure = result.figure
        value_label = ", ".join(figure.value_columns) or figure.value_column
        sections.append(
            f"<section id='{figure.name}'><h2>{html.escape(figure.title)}</h2>"
            f"<p class='note'>{html.escape(figure.note)}</p>"
            f"{svg_bar_chart(chart_bars(result), value_label)}"
            f"{_table(result.columns, result.as_dicts())}"
            f"<p><a href='{figure.name}.csv'>{figure.name}.csv</a></p>"
            f"<details open><summary>SQL</summary><pre class='sql'>{html.escape(figure.sql)}</pre></details>"
            "</section>"
        )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>MIC platform report</title><style>{_STYLE}</style></head><body>"
        f"<h1>MIC platform report</h1><p class='note'>Generated {html.escape(generated)} "
        "from the SQL warehouse.</p>" + "".join(sections) + "</body></html>"
    )


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def write_report(database_url: str, out_dir: Path, *, seed_scale: float = 1.0) -> Path:
    """Write the HTML report and its CSV files into `out_dir`; returns the HTML file's path."""
    results = collect(database_url)
    comparison = seed_comparison(results, seed_scale)
    out_dir.mkdir(parents=True, exist_ok=True)
    for result in results:
        _write_csv(out_dir / f"{result.figure.name}.csv", result.columns, result.as_dicts())
    _write_csv(out_dir / "seed_comparison.csv", ("measure", "seed", "warehouse"), comparison)
    index = out_dir / "index.html"
    generated = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    index.write_text(render_html(results, comparison, generated, seed_scale), encoding="utf-8")
    return index
