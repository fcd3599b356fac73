"""host_bridge's NDJSON output through orjson (runner.sequence.jsonlines.parse_lines) gives exactly
what ``json.loads`` of each line gives: the same values (types, big ints, NaN, surrogates, BOMs,
duplicate keys included), the values before a bad line, then the same error."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_bridge.content import NDJSON, decode_items
from runner.sequence import jsonlines

pytest.importorskip("orjson", reason="orjson is not installed (the orjson extra, in the test extra)")

scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text()
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)
styles = st.sampled_from([{}, {"ensure_ascii": False}, {"separators": (",", ":")}, {"separators": (" , ", " : ")}])
odd_lines = st.sampled_from([
    b"", b" ", b"\t", b"\r", b"1\r", b"NaN", b"-Infinity", b"1e400", b'"\\ud800"', b'"\xed\xa0\x80"', b"\xef\xbb\xbf{}",
    b'{"a": 1, "a": 2}', b"123456789012345678901234567890", b"-9223372036854775809", b"1 2", b"tru", b"[1,",
    b'"\x00a"', b"1\x00", b"\x00\x00\x00\x31", b"\xff", b"{'a': 1}", b"\x0c1",
])


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


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _decode(data: bytes, size: int) -> tuple[list[Any], str | None]:
    """The values decode_items yields, and the error it ends with (type and message), if any."""
    out: list[Any] = []

    async def run() -> None:
        async for value in decode_items(_chunks(data, size), NDJSON):
            out.append(value)

    try:
        anyio.run(run)
    except ValueError as exc:
        return out, f"{type(exc).__name__}: {exc}"
    return out, None


def _both(data: bytes, size: int) -> tuple[tuple[list[Any], str | None], tuple[list[Any], str | None]]:
    fast = _decode(data, size)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(jsonlines, "loads", None)
        reference = _decode(data, size)
    return fast, reference


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(values, styles).map(lambda vs: json.dumps(vs[0], **vs[1]).encode("utf-8", "surrogatepass"))
                | odd_lines, min_size=1, max_size=6), st.sampled_from([1, 3, 17, 1 << 16]), st.booleans())
def test_orjson_and_json_loads_give_the_same_values_and_errors(lines: list[bytes], size: int, last_newline: bool) -> None:
    data = b"\n".join(lines) + (b"\n" if last_newline else b"")
    (fast, fast_err), (ref, ref_err) = _both(data, size)
    assert fast_err == ref_err
    assert _same(fast, ref), (data, fast, ref)


def test_orjson_takes_plain_lines_and_leaves_the_unusual_to_json_loads() -> None:
    assert jsonlines.parse_lines([b'{"id": 1, "ok": true}', b"", b'[1.5, "\xc5\xbc"]']) == [{"id": 1, "ok": True}, [1.5, "ż"]]
    assert jsonlines.parse_lines([b"1", b"123456789012345678901234567890"]) is None
    assert jsonlines.parse_lines([b"NaN"]) is None
    assert jsonlines.parse_lines([b" "]) is None  # blank: json.loads' path skips it


def test_values_before_a_bad_line_come_first_then_its_error() -> None:
    values, error = _decode(b'{"a": 1}\n[2]\nnot json\n3\n', 1 << 16)
    assert values == [{"a": 1}, [2]]
    assert error is not None and error.startswith("JSONDecodeError: Expecting value: line 1 column 1")
