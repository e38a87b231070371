"""The vectorised scans of `schemas.jsonscan` agree with a plain parse on generated JSON.

Documents are generated as JSON text with keys that collide in several spellings (`"a"`,
`"\\u0061"`), strings full of brackets, colons, quotes and backslashes, and nesting around the
limit; the scans must give exactly the answer of Python's parser (the depth of the parsed value, the
keys an object has twice).
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from schemas_hostile import SHAPES

from schemas import jsonscan, rawchecks
from schemas.rawchecks import MAX_NESTING_DEPTH, nesting_too_deep

SCAN = settings(derandomize=True, database=None, max_examples=300, deadline=None)

KEYS = [
    "a", "\\u0061", "b", 'a\\"', "a\\\\", "\\n", "\\u000a", "ё", "\\u0451", ":", "{", "[", "}", "\\/", "/",
    "", "\\ud83d\\ude00", "😀", "k" * 300,
]
TEXTS = [
    '"x"', '"a:b"', '"{\\"k\\":1}"', '"[[[["', '"\\\\"', '"\\\\\\""', '"]}"', '""', '"\\u005b"',
    '"' + "\\\\" * 9 + '"', '"' + "\\\\" * 9 + '\\"]"', '"' + "\\\\" * 40 + '\\":{"',
]
"""Strings with brackets, colons, escaped quotes and backslash runs before quotes, short and long."""
SCALARS = ["1", "-2.5e3", "null", "true", "9" * 50, *TEXTS]


def _json(depth: int) -> st.SearchStrategy[str]:
    """JSON text nested at most `depth` deep, with raw key spellings (duplicates likely)."""
    if depth == 0:
        return st.sampled_from(SCALARS)
    child = _json(depth - 1)
    pair = st.tuples(st.sampled_from(KEYS), child).map(lambda kv: f'"{kv[0]}" : {kv[1]}')
    return st.one_of(
        st.sampled_from(SCALARS),
        st.lists(child, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(pair, max_size=4).map(lambda items: "{" + " , ".join(items) + "}"),
    )


class _Object(list[tuple[str, Any]]):
    """An object's pairs, duplicates kept (a dict would drop the nesting of overwritten values)."""


def _depth(value: Any) -> int:
    if isinstance(value, _Object):
        return 1 + max((_depth(v) for _, v in value), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


class _Duplicate(Exception):
    pass


def _duplicates(text: str) -> set[str]:
    """Every key some object of `text` has twice."""
    found: set[str] = set()

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                found.add(key)
            seen.add(key)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return found


@SCAN
@given(_json(6))
def test_duplicate_keys_are_found_exactly(text: str) -> None:
    """By both paths: keys decoded in Python (a few) and hashed over the whole buffer (many)."""
    raw = text.encode()
    expected = _duplicates(text)
    for few_keys in (jsonscan._FEW_KEYS, 2, 0):  # the first keys alone, then the rest hashed
        with mock.patch.object(jsonscan, "_FEW_KEYS", few_keys):
            found = jsonscan.duplicate_key(raw)
        assert (found is None) == (not expected), (text, found, expected, few_keys)
        assert found is None or found in expected
    with mock.patch.object(rawchecks, "SMALL_VALUE_BYTES", 0):  # Python's parser, numbers unread
        found = rawchecks.duplicate_key(raw)
    assert (found is None) == (not expected), (text, found, expected)


@SCAN
@given(_json(5), st.integers(0, 7))
def test_depth_is_exact_on_json(text: str, limit: int) -> None:
    raw = text.encode()
    parsed = json.loads(text, object_pairs_hook=_Object)
    assert jsonscan.nesting_too_deep(raw, limit) == (_depth(parsed) > limit), text


@SCAN
@given(st.integers(MAX_NESTING_DEPTH - 2, MAX_NESTING_DEPTH + 2), st.sampled_from(TEXTS), st.booleans())
def test_depth_around_the_limit_with_brackets_in_strings(depth: int, text: str, objects: bool) -> None:
    opening, closing = ('{"k":', "}") if objects else ("[", "]")
    raw = (opening * depth + text + closing * depth).encode()
    assert nesting_too_deep(raw) == (depth > MAX_NESTING_DEPTH)


@SCAN
@given(st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"a", b":"]), max_size=200)
       .map(b"".join))
def test_unbalanced_or_unterminated_never_raises(raw: bytes) -> None:
    assert isinstance(jsonscan.nesting_too_deep(raw, 3), bool)


def test_duplicates_across_objects_are_not_duplicates() -> None:
    for few_keys in (jsonscan._FEW_KEYS, 0):
        with mock.patch.object(jsonscan, "_FEW_KEYS", few_keys):
            assert jsonscan.duplicate_key(b'[{"a":1},{"a":2}]') is None
            assert jsonscan.duplicate_key(b'{"a":{"a":1},"b":{"a":2}}') is None
            assert jsonscan.duplicate_key(b'{"a":{"b":1},"c":2,"a":3}') == "a"
            assert jsonscan.duplicate_key(b'{"\\u0061":1,"a":2}') == "a"
            assert jsonscan.duplicate_key(b'{"a\\\\":1,"a\\\\":2}') == "a\\"
            assert jsonscan.duplicate_key(b'{"x":"\\"a\\":1,\\"a\\":2"}') is None  # keys in a string


def test_many_keys_take_the_hashing_path() -> None:
    keys = b",".join(b'"k%d":%d' % (i, i) for i in range(1000))
    assert jsonscan.duplicate_key(b"{" + keys + b"}") is None
    assert jsonscan.duplicate_key(b"{" + keys + b',"k500":0}') == "k500"
    assert jsonscan.duplicate_key(b"[" + b",".join([b'{"a":1,"b":2}'] * 500) + b"]") is None
    assert jsonscan.duplicate_key(b"[" + b",".join([b'{"a":1,"b":2}'] * 500) + b',{"b":1,"b":2}]') == "b"


def _thue_morse(length: int) -> bytes:
    return bytes(b"ab"[bin(i).count("1") & 1] for i in range(length))


def test_keys_whose_hashes_collide_never_hide_a_repeat() -> None:
    """A Thue-Morse string and its complement have the same polynomial hash modulo 2^32 whatever the
    (odd) base: `{.., T, C, T}` repeats T although the neighbours in hash order are never equal."""
    word = _thue_morse(256)
    other = word.translate(bytes.maketrans(b"ab", b"ba"))
    filler = b",".join(b'"f%d":0' % i for i in range(jsonscan._FEW_KEYS + 6))  # past the first keys
    raw = b"{" + filler + b',"' + word + b'":1,"' + other + b'":2,"' + word + b'":3}'
    arr = np.frombuffer(raw, np.uint8)
    at = raw.index(word)
    opening = np.array([at - 1, at + len(word) + 4])
    hashes = jsonscan._span_hashes(arr, opening, opening + len(word) + 1, jsonscan._WORKSPACE)
    assert hashes[0] == hashes[1], "the two keys must collide for the test to mean anything"
    assert jsonscan.duplicate_key(raw) == word.decode()
    with mock.patch.object(jsonscan, "_FEW_KEYS", 0):
        assert jsonscan.duplicate_key(raw) == word.decode()


def test_a_repeat_among_the_first_keys_is_found_without_hashing_the_value() -> None:
    """40,000 keys `"k"`: the repeat is among the first 64, so the whole-buffer hash never runs."""
    raw = SHAPES["many unknown payload keys"](256 * 1024)
    with mock.patch.object(jsonscan, "_key_hashes", side_effect=AssertionError("hashed")):
        assert jsonscan.duplicate_key(raw) == "k"
    keys = b",".join(b'"k%d":0' % i for i in range(1000))
    with mock.patch.object(jsonscan, "_key_hashes", wraps=jsonscan._key_hashes) as hashing:
        assert jsonscan.duplicate_key(b"{" + keys + b',"k999":1}') == "k999"  # the last key repeats
    assert hashing.call_count == 1


def test_few_commas_are_parsed_with_numbers_left_unread() -> None:
    """A value of a few members is parsed by Python even with 100,000-digit numbers (never
    converted: that would take quadratic time or raise); many backslashes send it to the scans."""
    number = b"9" * 100_000
    assert rawchecks.duplicate_key(b'{"a":1,"b":' + number + b',"c":1.5e' + number + b',"a":2}') == "a"
    assert rawchecks.duplicate_key(b'{"a":1,"b":' + number + b"}") is None
    escapes = b'"' + b"\\n" * 5000 + b'"'
    with mock.patch.object(rawchecks, "_PARSER", None):  # the scans, not the parser
        assert rawchecks.duplicate_key(b'{"a":' + escapes + b',"a":' + number + b"}") == "a"
