"""Decoding the runner's byte channels into items: output by content type, LOG records.

Chunks are split into lines in batches (one ``split`` per chunk, not per
byte), and a line that spans many chunks is accumulated in a bytearray so a
long line costs linear time. Text is decoded in the charset its content type
names (``text/plain; charset=latin-1``, as the runner announces it in PANG), UTF-8
without one: by the table the runner encodes with (runner.protocol.content_types).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator
from typing import Any

from runner.protocol.content_types import BINARY as OCTET_STREAM
from runner.protocol.content_types import NDJSON, TEXT, Kind, is_ndjson, output_kind, text_charset

__all__ = ["NDJSON", "OCTET_STREAM", "TEXT", "codec_of", "decode_items", "encode_item", "encode_text", "line_batches", "log_records", "parse_log"]


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


def codec_of(content_type: str) -> codecs.CodecInfo:
    """The codec of a content type's text (UTF-8 without a charset); ValueError naming an unknown one."""
    charset = text_charset(content_type)
    try:
        return codecs.lookup(charset)
    except LookupError:
        raise ValueError(f"content type {content_type!r}: unknown charset {charset!r}") from None


async def decode_items(chunks: AsyncIterator[bytes], content_type: str) -> AsyncIterator[Any]:
    """Items of OUT, read by the rule the runner wrote them by (runner.protocol.content_types):
    JSON values (the ndjson family), str lines with "\\n" (text/*, in its charset), else the byte
    chunks. A charset Python does not know is a ValueError before anything is read."""
    kind = output_kind(content_type)
    if kind is Kind.BINARY:
        async for chunk in chunks:
            yield chunk
        return
    if kind is Kind.NDJSON:
        async for value in _ndjson_values(chunks):
            yield value
        return
    if (codec := codec_of(content_type)).name != "utf-8":
        async for text_line in _charset_lines(chunks, codec):
            yield text_line
        return
    async for lines, complete in line_batches(chunks):
        for line in lines:
            text = line.decode("utf-8", "replace")
            yield text + "\n" if complete else text


async def _ndjson_values(chunks: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """One JSON value per non-blank line: ``json.loads`` of each line is the rule; orjson (the
    ``orjson`` extra) parses a batch of lines when it is sure to give the very same values
    (runner.sequence.jsonlines), else that batch goes line by line through ``json.loads``, which
    yields the values before a bad line and then raises its error."""
    from runner.sequence.jsonlines import parse_lines  # imported on first use: orjson is no import-time cost

    async for lines, _ in line_batches(chunks):
        values = parse_lines(lines)
        if values is not None:
            for value in values:
                yield value
            continue
        for line in lines:
            if line.strip():
                yield json.loads(line)


async def _charset_lines(chunks: AsyncIterator[bytes], codec: codecs.CodecInfo) -> AsyncIterator[str]:
    """Lines of text in a charset other than UTF-8: decoded as a stream (a character may span
    chunks, and a byte 0x0A need not be a newline), then split at "\\n"; what the charset cannot
    decode becomes U+FFFD, as for UTF-8."""
    decoder = codec.incrementaldecoder("replace")
    pending: list[str] = []  # parts of the current incomplete line
    async for chunk in chunks:
        text = decoder.decode(chunk)
        if "\n" not in text:
            pending.append(text)
            continue
        *lines, rest = text.split("\n")
        if pending:
            lines[0] = "".join(pending) + lines[0]
        pending = [rest]
        for line in lines:
            yield line + "\n"
    tail = "".join(pending) + decoder.decode(b"", True)
    if tail:
        yield tail


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
    """One input item as bytes: bytes as they are, JSON + "\\n" for ndjson, else str() in the content
    type's charset (UTF-8 without one; ValueError naming a charset Python does not know)."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if is_ndjson(content_type):
        return json.dumps(item, separators=(",", ":")).encode() + b"\n"
    return encode_text(str(item), content_type)


def encode_text(text: str, content_type: str) -> bytes:
    """``text`` in the charset of ``content_type`` (UTF-8 without one, and for ndjson); ValueError
    naming a charset Python does not know, or a character the charset cannot hold."""
    if text_charset(content_type) == "utf-8":
        return text.encode()
    codec = codec_of(content_type)
    try:
        return codec.encode(text)[0]
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise ValueError(f"content type {content_type!r}: cannot encode {bad!r} in {codec.name}") from None
