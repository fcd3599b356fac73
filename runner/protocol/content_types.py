"""The content types of IN and OUT, one table for both ends (sans-IO: standard library only).

The runner encodes output and decodes input by these rules, and a host decodes
output and encodes input by the same ones, so the two cannot disagree about a
content type again (issue 11 item 17: the host read ``application/jsonl`` output
as text while the runner wrote it as ndjson).

A content type is compared case-insensitively without its parameters
(``; charset=utf-8``); "" or None means text/plain.

==========================================  ==========  =========
content type                                 output      input
==========================================  ==========  =========
``application/x-ndjson``, any ``*x-ndjson``   ndjson      ndjson
``application/jsonl``, ``application/json-lines``,
``application/jsonlines``                     ndjson      ndjson
``text/plain``                               text        text
any other ``text/*``                         text        refused
``application/octet-stream``                 binary      binary
anything else                                binary      refused
==========================================  ==========  =========

ndjson: one JSON value per line (UTF-8). text: lines in the content type's charset
(``text/plain; charset=latin-1``; UTF-8 without one). binary: bytes as they are.
"""

from __future__ import annotations

import enum

TEXT = "text/plain"
BINARY = "application/octet-stream"
NDJSON = "application/x-ndjson"

#: Other names of ndjson (besides any name ending in ``x-ndjson``).
NDJSON_ALIASES = frozenset({"application/jsonl", "application/json-lines", "application/jsonlines"})


class Kind(str, enum.Enum):
    """How the bytes of a channel are cut into items."""

    TEXT = "text"  # lines in the charset of the content type (UTF-8 by default)
    NDJSON = "ndjson"  # one JSON value per line
    BINARY = "binary"  # chunks of bytes


def normalize(content_type: str | None) -> str:
    """``"Text/Plain; charset=utf-8"`` -> ``"text/plain"``; ``""``/None -> ``"text/plain"``."""
    if not content_type:
        return TEXT
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct or TEXT


def charset_of(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a content type, lower-case and unquoted (None without one)."""
    if not content_type:
        return None
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            value = value.strip().strip('"').strip()
            return value.lower() or None
    return None


def text_charset(content_type: str | None) -> str:
    """The charset text of ``content_type`` is written in: its ``charset``, else UTF-8 (ndjson is
    always UTF-8). Whether Python knows it is the caller's check (``codecs.lookup``)."""
    if is_ndjson(content_type):
        return "utf-8"
    return charset_of(content_type) or "utf-8"


def is_ndjson(content_type: str | None) -> bool:
    ct = normalize(content_type)
    return ct.endswith("x-ndjson") or ct in NDJSON_ALIASES


def output_kind(content_type: str | None) -> Kind:
    """How OUT is written for ``content_type`` (and so how a host reads it)."""
    ct = normalize(content_type)
    if is_ndjson(ct):
        return Kind.NDJSON
    if ct.startswith("text/"):
        return Kind.TEXT
    return Kind.BINARY


def input_kind(content_type: str | None) -> Kind | None:
    """How IN is read for ``content_type`` (and so how a host writes items); None: not supported."""
    ct = normalize(content_type)
    if is_ndjson(ct):
        return Kind.NDJSON
    if ct == TEXT:
        return Kind.TEXT
    if ct == BINARY:
        return Kind.BINARY
    return None
