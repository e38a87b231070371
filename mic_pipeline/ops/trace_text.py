"""The human text of `mic-pipeline trace` (pure). Every line is escaped (`mic_pipeline.text.printable`):
keys, details and failures quote event data."""

from __future__ import annotations

from typing import Any

from mic_pipeline.text import printable


def _where(entry: dict[str, Any]) -> str:
    topic = entry.get("physical_topic") or entry["topic"]
    return f"{topic}[{entry['partition']}]@{entry['offset']}"


def _input_line(entry: dict[str, Any]) -> str:
    facts = [_where(entry)]
    if "timestamp" in entry:
        facts.append(entry["timestamp"])
        facts.append(f"key {entry['key']}" if entry.get("key") is not None else "no key")
        if not entry.get("carries_event_id", True):
            facts.append("(its value does not carry this event_id)")
    elif "kafka" in entry:
        facts.append(entry["kafka"])
    role = entry.get("role")
    if role == "parked":
        waiting = ", ".join(entry.get("waiting_for", [])) or "an earlier record of its entity"
        facts.append(
            f"parked: waiting for {waiting} since {entry['waiting_since']} ({entry['waited_s']:.1f} s), "
            f"times out at {entry['expires_at']} (in {entry['expires_in_s']:.1f} s)"
        )
    elif role == "duplicate":
        facts.append(f"duplicate of {entry['duplicate_of']}: dropped")
    elif role == "decided":
        decision = "accepted" if entry["decision"] == "ok" else f"dead-lettered {entry['decision']}"
        if entry.get("after_waiting"):
            decision += f" after waiting for its member (decided at {entry['decided_at']})"
        if entry.get("held"):
            decision += "; held: its outputs go out once the next checkpoint made the decision durable"
        facts.append(decision)
    elif role == "dead-lettered":
        facts.append(f"dead-lettered {entry['decision']} (no stream marker: never decoded into an event)")
    return "  " + "  ".join(facts)


def render_event(document: dict[str, Any]) -> str:
    """The journey of one event, most telling first."""
    lines = [f"event {document['event_id']}: {document['outcome']}"]
    if document["inputs"]:
        lines.append("input records:")
        lines.extend(_input_line(entry) for entry in document["inputs"])
    workers = document["stream"]["workers"]
    if workers:
        owned = "; ".join(f"{w['name']} {w['partitions']}" for w in workers)
        lines.append(f"stream workers asked (partitions): {owned}")
    for entry in document["enriched"]:
        stamp = entry.get("timestamp", entry.get("kafka", ""))
        lines.append(f"enriched record: {_where(entry)}  {stamp}")
    sql = document["sql"]
    for row in sql["rows"]:
        lines.append(f"SQL: {row['table']} row, {row['event_type']}, landed_at {row['landed_at']}")
    if sql["available"] and not sql["rows"]:
        lines.append("SQL: no event row")
    for claim in document["parquet"]["claims"]:
        held = claim.get("file") or "no file holds it (yet)"
        lines.append(f"Parquet: {claim['table']} {claim['status']}: {held}")
    if document["parquet"]["available"] and not document["parquet"]["claims"]:
        lines.append("Parquet: not claimed")
    for letter in sql["dead_letters"]:
        original = letter["original"]
        lines.append(
            f"dead letter: {letter['reason']}: {letter['detail']} (failed at {letter['failed_at']}; original "
            f"{original['topic']}[{original['partition']}]@{original['offset']}; mic.deadletter partition "
            f"{letter['deadletter']['partition']} offset {letter['deadletter']['offset']})"
        )
    for kept in sql["quarantined"]:
        lines.append(
            f"quarantined in {kept['sink']} {kept['table']} at {kept['quarantined_at']}: "
            f"{'; '.join(kept['failures'])}"
        )
    lines.extend(f"note: {note}" for note in document["notes"])
    return "\n".join(printable(line) for line in lines)


def render_company(document: dict[str, Any]) -> str:
    """A company's recent events, newest first, one line each."""
    lines = [f"company {document['company_id']} since {document['since']}: {len(document['events'])} events"]
    for event in document["events"]:
        detail = f"  {event['detail']}" if event.get("detail") else ""
        lines.append(
            f"  {event['at'] or '-'}  {event['event_id'] or '-'}  {event['event_type'] or '-'}  "
            f"{event['outcome']}{detail}"
        )
    if document["more"]:
        lines.append(f"  ... {document['more']} more (--limit)")
    lines.extend(f"note: {note}" for note in document["notes"])
    return "\n".join(printable(line) for line in lines)
