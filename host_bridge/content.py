"""Decoding the runner's byte channels into items: output by content type, LOG records.

Chunks are split into lines in batches (one ``split`` per chunk, not per
byte), and a line that spans many chunks is accumulated in a bytearray so a
long line costs linear time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from runner.protocol.content_types import BINARY as OCTET_STREAM
from runner.protocol.content_types import NDJSON, TEXT, Kind, is_ndjson, output_kind

__all__ = ["NDJSON", "OCTET_STREAM", "TEXT", "decode_items", "encode_item", "line_batches", "log_records", "parse_log"]


async def line_batches(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[list[bytes], bool]]:
    """Yield ``(lines, complete)``: complete lines without their "\\n", then a final partial line."""
    pending = bytearray()
    async for chunk in chunks:
        if b"\n" not in chunk:
            pending += chunk
            continue
        if pending:
            pending += chunk
            data = bytes(pending)
            pending.clear()
        else:
            data = chunk
        *lines, rest = data.split(b"\n")
        pending += rest
        yield lines, True
    if pending:
        yield [bytes(pending)], False


async def decode_items(chunks: AsyncIterator[bytes], content_type: str) -> AsyncIterator[Any]:
    """Items of OUT, read by the rule the runner wrote them by (runner.protocol.content_types):
    JSON values (the ndjson family), str lines with "\\n" (text/*), else the byte chunks."""
    kind = output_kind(content_type)
    if kind is Kind.BINARY:
        async for chunk in chunks:
            yield chunk
        return
    ndjson = kind is Kind.NDJSON
    async for lines, complete in line_batches(chunks):
        for line in lines:
            if ndjson:
                if line.strip():
                    yield json.loads(line)
            else:
                text = line.decode("utf-8", "replace")
                yield text + "\n" if complete else text


async def log_records(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    async for lines, _ in line_batches(chunks):
        for line in lines:
            if line.strip():
                yield parse_log(line)


def parse_log(line: bytes) -> dict[str, Any]:
    """One LOG line as a dict; a line that is not a JSON object becomes ``{"msg": line, "invalid": True}``."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return {"level": "INFO", "msg": line.decode("utf-8", "replace"), "invalid": True}
    return record


def encode_item(item: Any, content_type: str) -> bytes:
    """One input item as bytes: bytes as they are, JSON + "\\n" for ndjson, else str() as UTF-8."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if is_ndjson(content_type):
        return json.dumps(item, separators=(",", ":")).encode() + b"\n"
    return str(item).encode()
