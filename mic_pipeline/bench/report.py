"""The result document's figures, their ratios to the peers, and the Markdown table.

Every throughput figure (events/s, rows/s, the highest offered rate that holds) is also given as a
ratio to the faust ceiling (stage `faust`) and to the Quix peer (stage `quix`) of the same run;
peak RSS figures as a ratio to those peers' peak RSS. Latencies have no peer counterpart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mic_pipeline.bench import targets

ROWS: tuple[tuple[str, str, str], ...] = (
    ("aiokafka", "bare aiokafka: consume, msgspec decode, produce one output, commit", "events/s"),
    ("faust", "faust agent, raw bytes, msgspec decode, no output (faust's ceiling)", "events/s"),
    ("quix", "Quix Streams doing the worker's job (RocksDB state)", "events/s"),
    ("decision_code", "the worker's decision code alone (EventProcessor over dicts, no Kafka)", "events/s"),
    ("worker_1", "`mic-pipeline streams`, 1 worker, full path", "events/s"),
    ("worker_2", "`mic-pipeline streams`, 2 workers in one group", "events/s"),
    ("sink_sqlite", "`sink sql` alone, SQLite, quality gate", "rows/s"),
    ("sink_postgres", "`sink sql` alone, PostgreSQL, quality gate", "rows/s"),
    ("sink_parquet", "`sink parquet` alone, quality gate", "rows/s"),
    ("end_to_end", "end to end: backlog -> 1 worker -> SQL (SQLite) and Parquet, gates on", "events/s"),
)
RATE_KEYS = ("events_per_s", "rows_per_s")


def throughput(stage: dict[str, Any]) -> float:
    for key in RATE_KEYS:
        if key in stage:
            return float(stage[key])
    raise KeyError(f"no throughput in {sorted(stage)}")


def peak_rss(stage: dict[str, Any]) -> float | None:
    """The largest peak RSS (MiB) among the stage's processes."""
    processes = stage.get("processes") or []
    return max((float(p["peak_rss_mib"]) for p in processes), default=None)


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 3)


def figures(stages: dict[str, Any], latency: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per figure, with its ratios to the faust ceiling and the Quix peer."""
    faust, quix = stages.get("faust"), stages.get("quix")
    faust = faust if faust and "failed" not in faust else None
    quix = quix if quix and "failed" not in quix else None
    faust_rate = throughput(faust) if faust else None
    quix_rate = throughput(quix) if quix else None
    faust_rss, quix_rss = (peak_rss(faust) if faust else None), (peak_rss(quix) if quix else None)
    rows: list[dict[str, Any]] = []
    for key, what, unit in ROWS:
        stage = stages.get(key)
        if stage is None:
            continue
        if "failed" in stage:
            rows.append({"stage": key, "what": what, "value": None, "unit": unit, "failed": stage["failed"]})
            continue
        value = throughput(stage)
        rss = peak_rss(stage)
        rows.append({
            "stage": key, "what": what, "value": value, "unit": unit,
            "x_faust": _ratio(value, faust_rate), "x_quix": _ratio(value, quix_rate),
            "peak_rss_mib": rss, "rss_x_faust": _ratio(rss, faust_rss), "rss_x_quix": _ratio(rss, quix_rss),
        })  # fmt: skip
    worker = stages.get("worker_1")
    if worker and "failed" not in worker:
        rss = peak_rss(worker)
        rows.append({
            "stage": "worker_rss",
            "what": f"stream worker peak RSS, {worker['members_in_state']:,} members in state",
            "value": rss, "unit": "MiB", "x_faust": None, "x_quix": None, "peak_rss_mib": rss,
            "rss_x_faust": _ratio(rss, faust_rss), "rss_x_quix": _ratio(rss, quix_rss),
        })  # fmt: skip
    for run in latency:
        label = f"latency_{run['offered_per_s']:g}"
        rows.append({
            "stage": label, "what": f"production -> SQL row at {run['offered_per_s']:g} events/s offered"
            + (" (ramp)" if run.get("ramp") else ""),
            "value": run["p99_s"], "unit": "s p99", "p50_s": run["p50_s"], "holds": run["holds"],
            "x_faust": None, "x_quix": None, "peak_rss_mib": None,
        })  # fmt: skip
    held = [run["offered_per_s"] for run in latency if run["holds"]]
    if latency:
        best = max(held) if held else None
        what = "highest offered rate that holds (all landed, p99 <= the hold limit, producer kept up)"
        rows.append({
            "stage": "latency_max", "what": what if held else f"{what}: none of the rates tried held",
            "value": best, "unit": "events/s", "x_faust": _ratio(best, faust_rate),
            "x_quix": _ratio(best, quix_rate), "peak_rss_mib": None,
        })  # fmt: skip
    return rows


def derived_notes(stages: dict[str, Any], latency: list[dict[str, Any]]) -> list[str]:
    """Notes that follow from the figures themselves."""
    notes = []
    for run in latency:
        if run["achieved_per_s"] < 0.95 * run["offered_per_s"]:
            notes.append(
                f"At {run['offered_per_s']:g} events/s offered the paced producer (in the bench process, "
                f"sharing the CPUs with the pipeline) achieved only {run['achieved_per_s']:g}/s."
            )
    for name in ("quix", "faust", "aiokafka"):
        stage = stages.get(name)
        if stage and "failed" not in stage and stage.get("seconds"):
            cpu = sum(float(p["cpu_s"]) for p in stage["processes"])
            notes.append(
                f"{name}: {cpu:.1f} CPU s in all (start-up included) for a {stage['seconds']:.1f} s "
                "measured window."
            )
    return notes


def _ratio_cell(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 10 else f"{value:,.0f}"
    return str(value)


def markdown(document: dict[str, Any]) -> str:
    """The results as Markdown: where and when, the table, the methods and the notes."""
    machine = document["machine"]
    load = document["load_average"]
    lines = [
        "# `mic-pipeline bench` results",
        "",
        f"{machine['date']}, commit `{machine['git_commit']}`; {machine['cpu_model']}, "
        f"{machine['cores']} cores, "
        f"{machine['memory_gib']} GiB; Kafka {machine['kafka_broker']} at {machine['bootstrap']}; "
        + ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
        + ".",
        f"Load average (1/5/15 min) at start {load['start']}, at end {load['end']} — the machine is shared: "
        "absolute figures are noisy, the ratios within the run are the comparison.",
        f"Backlog: {document['backlog']['records']:,} simulator records (seed {document['backlog']['seed']}, "
        f"scale {document['backlog']['scale']}, clock step {document['backlog']['clock_step_s']} s, "
        f"{document['backlog']['invalid_fraction']:.0%} invalid of every "
        f"dead-letter class, {document['backlog']['duplicates']} duplicates, "
        f"{document['backlog']['members_joined']:,} members joining); mode: "
        f"{'quick' if document['options']['quick'] else 'full'}.",
        "",
        "| stage | what | figure | unit | × faust ceiling | × Quix | peak RSS MiB "
        "| RSS × faust | RSS × Quix |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in document["figures"]:
        value = _cell(row["value"])
        if "failed" in row:
            value = "FAILED: " + row["failed"].splitlines()[0].replace("|", "/")[:200]
            row = {**row, "x_faust": None, "x_quix": None, "peak_rss_mib": None}
        elif row["unit"] == "s p99":
            value = f"p50 {row['p50_s']:.3f} / p99 {row['value']:.3f}" + (
                "" if row["holds"] else " (does not hold)"
            )
        lines.append(
            f"| {row['stage']} | {row['what']} | {value} | {row['unit'].replace('s p99', 's')} | "
            f"{_ratio_cell(row['x_faust'])} | {_ratio_cell(row['x_quix'])} | {_cell(row['peak_rss_mib'])} | "
            f"{_ratio_cell(row.get('rss_x_faust'))} | {_ratio_cell(row.get('rss_x_quix'))} |"
        )
    lines += ["", *targets.markdown_lines(document["figures"])]
    lines += ["## How each figure is measured", ""]
    for key, stage in document["stages"].items():
        if isinstance(stage, dict) and "method" in stage:
            lines.append(f"- **{key}**: {stage['method']}.")
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in document["notes"]]
    return "\n".join(lines) + "\n"


def write_results(document: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write `pipeline.json` and `pipeline.md` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "pipeline.json", out / "pipeline.md"
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    md_path.write_text(markdown(document))
    return json_path, md_path
