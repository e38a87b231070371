"""Unit tests of `streams.metered`: state writes and deletes are counted by key kind."""

from __future__ import annotations

from typing import Any

from streams.metered import STATE_WRITES, MeteredMapping, key_kind


def _count(table: str, kind: str, op: str) -> float:
    value = STATE_WRITES.labels(table=table, kind=kind, op=op)._value.get()
    return float(value)


def test_key_kinds_are_the_prefixes_of_the_state_keys() -> None:
    assert key_kind("e:3f1c") == "e"
    assert key_kind("o:C1:O7") == "o"
    assert key_kind("b|2") == "b"
    assert key_kind("plain") == "plain"


def test_writes_and_deletes_are_counted_reads_are_not() -> None:
    inner: dict[str, Any] = {}
    mapping = MeteredMapping(inner, "metered-test")
    mapping["e:1"] = [1]
    mapping["e:2"] = [2]
    mapping["w:o:C1:O1"] = ["t/0/1"]
    assert mapping.get("e:1") == [1] and "e:2" in mapping and mapping["e:2"] == [2]
    assert mapping.pop("e:1", None) == [1]
    assert mapping.pop("e:missing", None) is None  # nothing deleted: not counted
    assert inner == {"e:2": [2], "w:o:C1:O1": ["t/0/1"]}
    assert sorted(mapping) == ["e:2", "w:o:C1:O1"] and len(mapping) == 2
    assert dict(mapping.items()) == inner
    assert _count("metered-test", "e", "set") == 2
    assert _count("metered-test", "e", "delete") == 1
    assert _count("metered-test", "w", "set") == 1
