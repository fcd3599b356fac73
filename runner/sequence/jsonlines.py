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

``tests/runner/test_jsonlines.py`` checks both paths against each other (Hypothesis, over
JSON values with big ints, NaN, non-ASCII and surrogates, written with every separator
style, and over invalid lines).
"""

from __future__ import annotations

import re
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

_LONG_DIGITS = re.compile(rb"\d{19}")


def parse(complete: bytes) -> list[Any] | None:
    """The values of the lines of ``complete`` (which ends with b"\\n"; empty lines skipped),
    or None: let the stdlib path parse this chunk."""
    parse_line = loads
    if parse_line is None or _LONG_DIGITS.search(complete):
        return None
    lines = complete.split(b"\n")
    lines.pop()
    try:
        return [parse_line(line) for line in lines if line]
    except _Refused:
        return None
