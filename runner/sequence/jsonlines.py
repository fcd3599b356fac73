"""NDJSON input lines parsed with orjson when it is installed (the ``orjson`` extra).

The stdlib path (runner/sequence/content.py) stays the reference: orjson only takes a chunk
of complete lines it is sure to parse to the very same values, and hands anything else
back. What it would do differently, and how that is kept out:

* integers of more than 64 bits come back as floats: a chunk with a run of 19 or more
  digits (where such an integer would be) is left to the stdlib;
* it refuses what the stdlib accepts beyond JSON (``NaN``, ``Infinity``, numbers that
  overflow to ``inf``, lone surrogate escapes ``"\\ud800"``, whitespace the stdlib's
  ``str.isspace`` knows): one refused line sends the whole chunk to the stdlib, which then
  decides exactly as without orjson (the same values, the same error for a bad line).

``parse_lines`` is the same for lines already split (host_bridge's NDJSON output, whose
reference is ``json.loads`` of each line, which also accepts no more than the runner's).

``tests/runner/test_jsonlines.py`` and ``tests/host_bridge/test_content_orjson.py`` check both
paths against each other (Hypothesis, over
JSON values with big ints, NaN, non-ASCII and surrogates, written with every separator
style, and over invalid lines).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

loads: Callable[[bytes], Any] | None
try:
    import orjson

    loads = orjson.loads
    _Refused: type[Exception] = orjson.JSONDecodeError
except ImportError:  # the stdlib path does it all
    loads = None
    _Refused = ValueError

#: Every ASCII digit as b"0", every other byte as b".": a run of 19 digits is then one
#: ``bytes.find`` (a memchr-driven search), about 12x cheaper than ``re.search(rb"\d{19}")``,
#: which tries a match at every digit and cost more than orjson's parsing of the chunk.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
_LONG_DIGITS = b"0" * 19


def has_long_digit_run(data: bytes) -> bool:
    """Whether ``data`` holds 19 ASCII digits in a row (where an integer beyond 64 bits could be)."""
    return data.translate(_DIGITS_AS_ZERO).find(_LONG_DIGITS) >= 0


def parse(complete: bytes) -> list[Any] | None:
    """The values of the lines of ``complete`` (which ends with b"\\n"; empty lines skipped),
    or None: let the stdlib path parse this chunk."""
    if loads is None or has_long_digit_run(complete):
        return None
    lines = complete.split(b"\n")
    lines.pop()
    return _values(lines)


def parse_lines(lines: list[bytes]) -> list[Any] | None:
    """The values of ``lines`` (JSON texts without their "\\n"; empty ones skipped), or None: let
    the caller's stdlib path parse them (host_bridge's NDJSON output, read line by line)."""
    if loads is None or has_long_digit_run(b"\n".join(lines)):
        return None
    return _values(lines)


def _values(lines: list[bytes]) -> list[Any] | None:
    parse_line = loads
    assert parse_line is not None
    try:
        return [parse_line(line) for line in lines if line]
    except _Refused:
        return None
