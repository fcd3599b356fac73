"""NDJSON input through orjson (runner/sequence/jsonlines.py) gives exactly what the stdlib path
gives: the same values (types, NaN, -0.0, big ints, surrogates included) and the same errors."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.sequence import content, jsonlines

pytest.importorskip("orjson", reason="orjson is not installed (the orjson extra, in the test extra)")

CT = "application/x-ndjson"

scalars = (
    st.none() | st.booleans()
    | st.integers()  # big ints included: beyond 64 bits orjson would say float
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()  # any code point, lone surrogates included
    | st.text(alphabet=st.characters(codec="utf-8"))
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)
styles = st.sampled_from([
    {}, {"ensure_ascii": False}, {"separators": (",", ":")}, {"separators": (",", ":"), "ensure_ascii": False},
    {"separators": (" , ", " : ")},
])
padding = st.sampled_from(["", " ", "\t", "\r", "  \r"])


def _lines(items: list[tuple[Any, dict[str, Any], str, str]], blank: list[int]) -> bytes:
    out = []
    for i, (value, style, before, after) in enumerate(items):
        if i in blank:
            out.append("")
        out.append(before + json.dumps(value, **style) + after)
    return ("\n".join(out) + "\n").encode("utf-8", "surrogatepass")


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 != 1.0 here); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _both(chunk: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    with_orjson = content._parse_lines(CT, chunk, 1)
    with monkeypatch.context() as m:
        m.setattr(jsonlines, "loads", None)
        stdlib = content._parse_lines(CT, chunk, 1)
    return with_orjson, stdlib


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(values, styles, padding, padding), min_size=1, max_size=6),
       st.lists(st.integers(0, 6), max_size=2))
def test_valid_lines_give_the_same_values(items: list[Any], blank: list[int]) -> None:
    chunk = _lines(items, blank)
    with pytest.MonkeyPatch.context() as monkeypatch:
        (fast, fast_err), (slow, slow_err) = _both(chunk, monkeypatch)
    assert (fast_err is None) == (slow_err is None)
    assert str(fast_err) == str(slow_err)
    assert _same(fast, slow), (chunk, fast, slow)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=12).filter(lambda b: b"\n" not in b) | st.sampled_from(
    [b"NaN", b"-Infinity", b"1e400", b'"\\ud800"', b"{\"a\": 1,}", b"[1, 2", b"\xef\xbb\xbf{}", b"\x1c",
     b"123456789012345678901234567890", b"-9223372036854775809", b"1 2", b"tru", b"{'a': 1}"]),
    min_size=1, max_size=5))
def test_any_lines_give_the_same_values_and_errors(lines: list[bytes]) -> None:
    chunk = b"\n".join(lines) + b"\n"
    with pytest.MonkeyPatch.context() as monkeypatch:
        (fast, fast_err), (slow, slow_err) = _both(chunk, monkeypatch)
    assert str(fast_err) == str(slow_err)
    assert _same(fast, slow), (chunk, fast, slow)


def test_orjson_takes_plain_records_and_leaves_long_numbers_to_the_stdlib() -> None:
    assert jsonlines.parse(b'{"id": 1, "ok": true}\n\n[1.5, "\xc5\xbc"]\n') == [{"id": 1, "ok": True}, [1.5, "ż"]]
    assert jsonlines.parse(b"123456789012345678901234567890\n") is None
    assert jsonlines.parse(b"NaN\n") is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"0", b"9", b"5", b" ", b"a", b"\xd9\xa3", b"-", b"."]) | st.binary(max_size=3)
                | st.integers(15, 22).map(lambda n: b"7" * n), max_size=30))
def test_the_long_digit_check_finds_what_the_regex_finds(parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert jsonlines.has_long_digit_run(data) == (re.search(rb"\d{19}", data) is not None)


def test_the_long_digit_check_at_the_edges() -> None:
    assert jsonlines.has_long_digit_run(b"1" * 19)
    assert not jsonlines.has_long_digit_run(b"1" * 18)
    assert jsonlines.has_long_digit_run(b'{"a": 9223372036854775808}\n')
    assert not jsonlines.has_long_digit_run(b'{"a": 922337203685477580.8}\n')
    assert not jsonlines.has_long_digit_run("٣".encode() * 19)  # a non-ASCII digit is no \d in bytes
