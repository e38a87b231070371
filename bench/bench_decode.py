"""Decode + validate micro-benchmark: one contract event from raw bytes, on one core.

Usage: python bench/bench_decode.py [--per-type N] [--repeats R] [--seed S] [--baseline REV]

Input: N realistic events of each of the 14 types (about 300 bytes, varied ids, INNs, amounts,
titles), encoded by `schemas.encode.encode_event`. Each candidate passes over the whole list once
per round, candidates interleaved within a round, R rounds after a warm-up; the figure is the
median per-event *CPU time of this process* (the machine is shared: wall time would count other
processes' turns), the process pinned to one CPU, results dropped as a worker would:

- `orjson_loads` / `json_loads`: parsing alone, no validation (the floor);
- `msgspec_decode_event`: ours, `schemas.decode.decode_event` end to end (all contract rules,
  size / nesting / duplicate-key guards, classified failures);
- `msgspec_no_guards`: the same with the nesting guard and the quote count (which catches duplicate
  keys and money written as strings) switched off by an in-process patch, to price them as a ratio;
  the size and BOM checks (two comparisons) stay;
- `msgspec_explicit_nulls`: ours on the same events written with `"trace_id": null` (and null
  optional payload fields), which the quote count explains with one regex per null-valued field;
- `pydantic_v2` and `faust_record`: the contract written with those libraries
  (`bench/decode_alternatives.py`);
- with `--baseline REV`: `baseline_decode_event`, `decode_event` of the `schemas/` package as it was
  at git revision REV (imported under another name), interleaved with ours in the same rounds, so
  a change's cost is a ratio measured under the same load.

Also checks that every candidate accepts every valid event, and tabulates which candidates reject a
set of invalid events. Writes `bench/results/decode.json` and prints a table.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from importlib.metadata import version
from io import BytesIO
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import decode_alternatives

from schemas import decode as decode_module
from schemas.decode import decode_event
from schemas.encode import encode_event
from schemas.events import Event, Payload
from schemas.examples import EXAMPLE_PAYLOADS
from schemas.inn import complete_inn

RESULTS = Path(__file__).parent / "results" / "decode.json"
TITLES = (
    "CNC milling of aluminium housings",
    "Turned steel shafts, batch of 2,000, tolerance h7",
    "PCB assembly for telemetry modules",
    "Sewing of protective workwear for plant staff",
    "Sheet-metal enclosures for instrument racks, powder coated",
    "Method of additive manufacturing of titanium lattice implants",
    "Composite radome for small satellite ground stations",
)


def _inn_pool(rng: random.Random, size: int) -> list[str]:
    return [
        complete_inn("".join(rng.choice("0123456789") for _ in range(9 if rng.random() < 0.8 else 10)))
        for _ in range(size)
    ]


def _vary(payload: Payload, rng: random.Random, inns: list[str]) -> Payload:
    changes: dict[str, Any] = {}
    for field in msgspec.structs.fields(payload):
        value = getattr(payload, field.name)
        if isinstance(value, Decimal):
            changes[field.name] = Decimal(rng.randrange(1, 10**9)) / 100
        elif field.name in ("order_id", "patent_id", "request_id"):
            changes[field.name] = f"{field.name[:3].upper()}-{rng.randrange(10**8):08d}"
        elif field.name in ("manufacturer_id", "buyer_id", "debtor_id"):
            changes[field.name] = rng.choice(inns)
        elif field.name == "title":
            changes[field.name] = rng.choice(TITLES)
        elif field.name == "quantity":
            changes[field.name] = rng.randrange(1, 5000)
        elif isinstance(value, date):
            changes[field.name] = date(2020, 10, 1) + timedelta(days=rng.randrange(400))
    return msgspec.structs.replace(payload, **changes)


def make_events(per_type: int, seed: int) -> list[Event]:
    """`per_type` varied events of every type, shuffled."""
    rng = random.Random(seed)
    inns = _inn_pool(rng, 2000)
    moscow = timezone(timedelta(hours=3))
    start = datetime(2020, 1, 1, tzinfo=moscow)
    events = []
    for template in EXAMPLE_PAYLOADS:
        for _ in range(per_type):
            base = decode_event(encode_event(_example(template)))
            assert isinstance(base, Event)
            events.append(
                msgspec.structs.replace(
                    base,
                    event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    occurred_at=start + timedelta(seconds=rng.randrange(366 * 86400)),
                    source=rng.choice(("mic-platform", "oem-board", "patent-exchange", "factoring-gw")),
                    company_id=rng.choice(inns),
                    payload=_vary(template, rng, inns),
                )
            )
    rng.shuffle(events)
    return events


def _example(payload: Payload) -> Event:
    from schemas.examples import example_event

    return example_event(payload)


_JSON = msgspec.json.Encoder(decimal_format="number")
_DOCUMENT = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


def _document(raw: bytes) -> dict[str, Any]:
    document: dict[str, Any] = _DOCUMENT.decode(raw)
    return document


def with_explicit_nulls(raw: bytes) -> bytes:
    """The same event with every absent optional field written as null."""
    document = _document(raw)
    document.setdefault("trace_id", None)
    if document["event_type"] in ("order.cancelled", "member.left"):
        document["payload"].setdefault("reason", None)
    if document["event_type"] == "member.updated":
        for name in ("name", "kind", "status", "region_code", "sector"):
            document["payload"].setdefault(name, None)
    return _JSON.encode(document)


@contextmanager
def guards_off() -> Iterator[None]:
    """decode_event without the nesting guard and the quote count (duplicate keys, money strings)."""
    with (
        mock.patch.object(decode_module, "nesting_too_deep", lambda raw: False),
        mock.patch.object(decode_module, "quotes_add_up", lambda raw, spec, payload, wire: True),
    ):
        yield


def ours(raw: bytes) -> object:
    result = decode_event(raw)
    if not isinstance(result, Event):
        raise ValueError(result)
    return result


_IMPORT = re.compile(r"^(\s*)(from|import) schemas\b", re.M)


def baseline_decoder(revision: str, into: Path) -> Callable[[bytes], object]:
    """`decode_event` of `schemas/` at git `revision`, as package `schemas_baseline` under `into`;
    the returned function raises unless the value decodes to a baseline `Event`."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", revision, "schemas"],
        check=True, capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / "schemas"
    for source in package.glob("*.py"):
        source.write_text(_IMPORT.sub(r"\1\2 schemas_baseline", source.read_text()))
    package.rename(into / "schemas_baseline")
    sys.path.insert(0, str(into))
    module = importlib.import_module("schemas_baseline.decode")
    decode: Callable[[bytes], object] = module.decode_event

    def baseline(raw: bytes) -> object:
        result = decode(raw)
        if type(result).__name__ != "Event":
            raise ValueError(result)
        return result

    return baseline


Candidate = tuple[Callable[[bytes], object], list[bytes], Callable[[], AbstractContextManager[object]]]


def time_pass(decode: Callable[[bytes], object], raws: list[bytes]) -> float:
    """CPU seconds of this process per event for one pass over `raws`."""
    gc.collect()
    started = time.process_time()
    for raw in raws:
        decode(raw)
    return (time.process_time() - started) / len(raws)


def time_candidates(candidates: dict[str, Candidate], repeats: int) -> dict[str, list[float]]:
    """Per-event CPU seconds of every candidate, `repeats` rounds, the candidates interleaved in each
    round so that load from other processes spreads over all of them (one warm-up round first)."""
    timings: dict[str, list[float]] = {name: [] for name in candidates}
    for round_number in range(repeats + 1):
        for name, (decode, raws, context) in candidates.items():
            with context():
                seconds = time_pass(decode, raws)
            if round_number:
                timings[name].append(seconds)
    return timings


def _accepts(decode: Callable[[bytes], object], raw: bytes) -> bool:
    try:
        decode(raw)
    except Exception:
        return False
    return True


def invalid_samples(valid: dict[str, bytes]) -> dict[str, bytes]:
    """Invalid variants of valid events, each breaking one rule."""

    def mutated(event_type: str, path: str, value: Any) -> bytes:
        document = _document(valid[event_type])
        *parents, last = path.split(".")
        target = document
        for part in parents:
            target = target[part]
        target[last] = value
        return _JSON.encode(document)

    order = valid["order.placed"]
    return {
        "bad INN check digit": mutated("order.placed", "company_id", "7707083894"),
        "money 3 decimals": mutated("order.placed", "payload.budget_rub", Decimal("10.005")),
        "money as JSON string": mutated("order.placed", "payload.budget_rub", "100.00"),
        "naive occurred_at": mutated("order.placed", "occurred_at", "2020-09-24T10:15:00"),
        "unknown envelope field": mutated("order.placed", "tenant", "x"),
        "unknown payload field": mutated("order.placed", "payload.color", "red"),
        "enum value not allowed": mutated("order.placed", "payload.industry", "aviation"),
        "quantity as string": mutated("order.placed", "payload.quantity", "5"),
        "empty title": mutated("order.placed", "payload.title", ""),
        "fee_rate = 1": mutated("factoring.funded", "payload.fee_rate", 1),
        "member.updated empty": mutated("member.updated", "payload", {}),
        "region_code 00": mutated("member.joined", "payload.region_code", "00"),
        "duplicate key": order.replace(b'"source":', b'"source":"x","source":', 1),
        "UTF-8 BOM": b"\xef\xbb\xbf" + order,
    }


def poison_pill_timings(valid: bytes) -> dict[str, dict[str, Any]]:
    """Milliseconds (CPU, best of 3) decode_event takes to classify each poison pill of the issue."""
    pills = {
        "invalid UTF-8": valid.replace(b"order", b"\xff\xfeorder", 1),
        "10 MB value": b'{"a":"' + b"x" * 10_000_000 + b'"}',
        "100,000-deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "million-digit number": b"9" * 1_000_000,
        "200,000-digit money (under the size limit)": valid.replace(
            b'"budget_rub":', b'"budget_rub":' + b"9" * 200_000 + b',"x":', 1
        ),
        "duplicate keys": valid.replace(b'"source":', b'"source":"x","source":', 1),
        "UTF-8 BOM": b"\xef\xbb\xbf" + valid,
    }
    timings = {}
    for name, raw in pills.items():
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            result = decode_event(raw)
            best = min(best, time.process_time() - started)
        assert not isinstance(result, Event), name
        timings[name] = {"ms": round(best * 1e3, 3), "reason": str(result.reason)}
    return timings


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "pinned_to_cpu": sorted(os.sched_getaffinity(0)),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": {
            name: version(name)
            for name in ("msgspec", "orjson", "pydantic", "pydantic-core", "faust-streaming")
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-type", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--baseline", help="git revision whose decode_event to measure alongside ours")
    args = parser.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    machine_info = machine()

    events = make_events(args.per_type, args.seed)
    raws = [encode_event(event) for event in events]
    with_nulls = [with_explicit_nulls(raw) for raw in raws]
    candidates: dict[str, Candidate] = {
        "orjson_loads": (orjson.loads, raws, nullcontext),
        "json_loads": (json.loads, raws, nullcontext),
        "msgspec_decode_event": (ours, raws, nullcontext),
        "msgspec_no_guards": (ours, raws, guards_off),
        "msgspec_explicit_nulls": (ours, with_nulls, nullcontext),
        "pydantic_v2": (decode_alternatives.pydantic_decode, raws, nullcontext),
        "faust_record": (decode_alternatives.faust_decode, raws, nullcontext),
    }
    scratch = tempfile.TemporaryDirectory()
    if args.baseline:
        baseline = baseline_decoder(args.baseline, Path(scratch.name))
        candidates["baseline_decode_event"] = (baseline, raws, nullcontext)
    for name, (decode, inputs, context) in candidates.items():
        with context():
            rejected = [raw for raw in inputs if not _accepts(decode, raw)]
        assert not rejected, f"{name} rejects valid events, e.g. {rejected[0][:200]!r}"

    timings = time_candidates(candidates, args.repeats)
    results = {name: _summary(seconds) for name, seconds in timings.items()}

    by_type = {event.event_type: raw for event, raw in zip(events, raws, strict=True)}
    samples = invalid_samples(by_type)
    decoders = {"msgspec_decode_event": ours, **decode_alternatives.CANDIDATES}
    rejections = {
        case: {name: not _accepts(d, raw) for name, d in decoders.items()} for case, raw in samples.items()
    }
    assert all(not _accepts(ours, raw) for raw in samples.values()), "an invalid sample is not invalid"

    guarded, unguarded = results["msgspec_decode_event"], results["msgspec_no_guards"]
    report = {
        "what": "decode + validate of one contract event from raw bytes, one core, median of repeats",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info,
        "events": {
            "count": len(raws),
            "types": len(EXAMPLE_PAYLOADS),
            "mean_bytes": round(statistics.mean(map(len, raws)), 1),
            "mean_bytes_explicit_nulls": round(statistics.mean(map(len, with_nulls)), 1),
        },
        "repeats": args.repeats,
        "results": results,
        "guards": {
            "ratio_with_to_without": round(guarded["us_per_event"] / unguarded["us_per_event"], 3),
            "cost_us_per_event": round(guarded["us_per_event"] - unguarded["us_per_event"], 3),
            "explicit_nulls_ratio": round(
                results["msgspec_explicit_nulls"]["us_per_event"] / guarded["us_per_event"], 3
            ),
        },
        "rejects_invalid": rejections,
        "poison_pills_ms": poison_pill_timings(by_type["order.placed"]),
    }
    if args.baseline:
        report["baseline"] = _baseline_report(args.baseline, timings)
    scratch.cleanup()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    return 0


def _baseline_report(revision: str, timings: dict[str, list[float]]) -> dict[str, Any]:
    """Ours against the baseline revision: the ratio of medians and the ratio in every round."""
    ours, base = timings["msgspec_decode_event"], timings["baseline_decode_event"]
    ratios = [o / b for o, b in zip(ours, base, strict=True)]
    return {
        "revision": revision,
        "ratio_ours_to_baseline": round(statistics.median(ours) / statistics.median(base), 3),
        "median_of_round_ratios": round(statistics.median(ratios), 3),
        "per_round_ratios": [round(ratio, 3) for ratio in ratios],
    }


def _summary(timings: list[float]) -> dict[str, Any]:
    median = statistics.median(timings)
    return {
        "us_per_event": round(median * 1e6, 3),
        "events_per_s": round(1 / median),
        "repeats_us": [round(t * 1e6, 3) for t in timings],
    }


def _print(report: dict[str, Any]) -> None:
    events = report["events"]
    print(
        f"{events['count']} events of {events['types']} types, mean {events['mean_bytes']} bytes, "
        f"median of {report['repeats']} repeats, one core"
    )
    print(f"{'candidate':26s} {'µs/event':>10s} {'events/s':>12s}")
    for name, result in sorted(report["results"].items(), key=lambda item: item[1]["us_per_event"]):
        print(f"{name:26s} {result['us_per_event']:10.2f} {result['events_per_s']:12,d}")
    if "baseline" in report:
        baseline = report["baseline"]
        print(f"ours / baseline {baseline['revision']}: x{baseline['ratio_ours_to_baseline']} "
              f"(per round: {baseline['per_round_ratios']})")
    guards = report["guards"]
    print(
        f"guards (nesting, quote count): x{guards['ratio_with_to_without']} "
        f"(+{guards['cost_us_per_event']} µs); explicit nulls: x{guards['explicit_nulls_ratio']}"
    )
    print("\npoison pill                                   ms  reason")
    for name, outcome in report["poison_pills_ms"].items():
        print(f"{name:42s} {outcome['ms']:8.3f}  {outcome['reason']}")
    names = list(next(iter(report["rejects_invalid"].values())))
    print(f"\n{'invalid sample':26s} " + " ".join(f"{n:>20s}" for n in names))
    for case, verdicts in report["rejects_invalid"].items():
        print(f"{case:26s} " + " ".join(f"{'rejects' if verdicts[n] else 'ACCEPTS':>20s}" for n in names))


if __name__ == "__main__":
    sys.exit(main())
