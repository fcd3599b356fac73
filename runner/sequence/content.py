"""Input decoders and output encoders per content type.

Data moves in BATCHES (lists of items): a decoder turns each received bytes
chunk into one batch (possibly none, while a line is incomplete), an encoder
turns one batch of output items into one bytes object. Work is done per chunk,
not per item, wherever possible.

Input (``decode_input``), content type matched case-insensitively, ``""``
meaning ``text/plain``; of its parameters only ``charset`` means anything:

* ``text/plain``: ``str`` lines *with* their ``"\\n"`` (split on ``"\\n"``
  only, like STH-Py's ``readline()``; ``"\\r\\n"`` stays at the end of the line);
  a last line without ``"\\n"`` is delivered at end of input. Characters split
  across chunks are handled. The text is UTF-8 unless ``; charset=...`` names
  another encoding Python knows (``latin-1``, ``utf-16``, ...); an encoding it
  does not know is :class:`UnsupportedContentType` at once. Invalid bytes are
  an error after the lines before them, never replaced: :class:`InputDecodeError` names the byte offset.
* ``application/octet-stream``: ``bytes`` chunks exactly as received (one per batch).
* ``application/x-ndjson`` (and any ``*/x-ndjson``, ``application/jsonl``,
  ``application/json-lines``, ``application/jsonlines``): one parsed JSON value per
  non-blank line; an invalid line raises :class:`InputDecodeError` naming its
  1-based line number. JSON text is UTF-8 (RFC 8259): another charset is
  :class:`UnsupportedContentType`.
* anything else: :class:`UnsupportedContentType` (a ``ValueError``) at once.

Output (``output_encoder``):

* ``text/plain`` (and any ``text/*`` except ndjson): ``str`` items are written as
  they are (no separator is added: the Sequence writes its own newlines), bytes-like
  items as they are; **any other item is one line**: its JSON text (numbers,
  booleans, None, dicts, lists: ``4`` → ``"4\\n"``, ``True`` → ``"true\\n"``), or
  ``str(item)`` when JSON cannot represent it, and ``"\\n"``. The text is encoded
  in the content type's charset (UTF-8 by default); an item the charset cannot
  encode is :class:`OutputEncodeError`.
* ndjson family: ``json.dumps(item, ensure_ascii=False) + "\\n"`` per item, UTF-8;
  an item JSON cannot represent (e.g. ``bytes``) → :class:`OutputEncodeError`
  (a ``TypeError``) naming its type.
* anything else (``application/octet-stream`` …): bytes-like as is, ``str`` → UTF-8,
  anything else → :class:`OutputEncodeError` naming its type (binary output has no
  one way to write a number or a dict: encode it yourself).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

# The content-type table both ends share (runner.protocol.content_types).
from ..protocol.content_types import (
    BINARY,
    NDJSON,
    TEXT,
    Kind,
    charset_of,
    input_kind,
    is_ndjson,
    output_kind,
)
from ..protocol.content_types import normalize as normalize_content_type

__all__ = [
    "BINARY",
    "NDJSON",
    "TEXT",
    "InputDecodeError",
    "OutputEncodeError",
    "UnsupportedContentType",
    "canonical_content_type",
    "charset_of",
    "decode_input",
    "is_ndjson",
    "normalize_content_type",
    "output_buffers_encoder",
    "output_encoder",
]


class InputDecodeError(ValueError):
    """Input bytes that do not match the input content type."""


class UnsupportedContentType(ValueError):
    """A content type the runner cannot decode."""


class OutputEncodeError(TypeError):
    """An output item the output content type cannot represent. ``partial`` holds the bytes of
    the items before it in the same batch: they are written before the run fails."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


def _codec_for(content_type: str, error: type[Exception]) -> codecs.CodecInfo:
    """The codec of a text content type's charset (UTF-8 by default); ``error`` names an unknown one."""
    charset = charset_of(content_type) or "utf-8"
    try:
        return codecs.lookup(charset)
    except LookupError:
        raise error(f"content type {content_type!r}: unknown charset {charset!r}") from None


def _encoding_label(info: codecs.CodecInfo) -> str:
    return "UTF-8" if info.name == "utf-8" else info.name


def canonical_content_type(content_type: str | None) -> str:
    """Normalised, keeping a charset other than UTF-8: ``"Text/Plain; Charset=Latin-1"`` →
    ``"text/plain; charset=latin-1"``, ``"text/plain; charset=utf-8"`` → ``"text/plain"``."""
    ct = normalize_content_type(content_type)
    charset = charset_of(content_type)
    if charset and ct.startswith("text/") and not is_ndjson(ct):
        try:
            if codecs.lookup(charset).name != "utf-8":
                return f"{ct}; charset={charset}"
        except LookupError:
            return f"{ct}; charset={charset}"  # refused clearly when the encoder is made
    return ct


# --------------------------------------------------------------------------- decoders


def _lines_before(pending: list[str], decode: Callable[[bytes], str], valid: bytes) -> list[str]:
    """The complete lines of ``pending`` and ``valid`` (the bytes before an invalid one)."""
    try:
        lines = ("".join(pending) + decode(valid)).split("\n")
    except UnicodeDecodeError:  # a codec whose error offset is not a character boundary: none
        return []
    return [line + "\n" for line in lines[:-1]]  # the last is the incomplete line the bad byte is in


async def _decode_text(chunks: AsyncIterator[bytes], info: codecs.CodecInfo) -> AsyncIterator[list[Any]]:
    label = _encoding_label(info)
    decoder = info.incrementaldecoder("strict")
    decode = decoder.decode
    pending: list[str] = []  # parts of the current incomplete line
    consumed = 0  # bytes fed to the decoder so far
    async for chunk in chunks:
        if not chunk:
            continue
        try:
            text = decode(chunk)
        except UnicodeDecodeError as e:
            buffered = len(decoder.getstate()[0])
            at = consumed - buffered + e.start
            if lines := _lines_before(pending, decode, chunk[: max(0, e.start - buffered)]):
                yield lines  # nothing lost: the lines before the bad byte go first, as NDJSON's values do
            raise InputDecodeError(f"text/plain input is not valid {label} at byte offset {at} ({e.reason})") \
                from None
        consumed += len(chunk)
        if not text:
            continue
        parts = text.split("\n")
        if len(parts) == 1:
            pending.append(text)
            continue
        last = parts.pop()
        if pending:
            pending.append(parts[0])
            parts[0] = "".join(pending)
            pending = []
        batch = [p + "\n" for p in parts]
        if last:
            pending.append(last)
        yield batch
    try:
        tail = decode(b"", True)
    except UnicodeDecodeError as e:
        buffered = len(decoder.getstate()[0])
        raise InputDecodeError(
            f"text/plain input ends inside a {label} character at byte offset {consumed - buffered + e.start}"
        ) from None
    if tail:
        pending.append(tail)
    if pending:
        rest = "".join(pending)
        if rest:
            yield [rest]


async def _decode_binary(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Any]]:
    async for chunk in chunks:
        if chunk:
            yield [chunk if type(chunk) is bytes else bytes(chunk)]


_json_decoder = json.JSONDecoder()
_json_decode = _json_decoder.decode
_json_scan: Callable[[str, int], tuple[Any, int]] = _json_decoder.scan_once  # type: ignore[attr-defined]


def _ndjson_error(ct: str, lines: list[bytes] | list[str], first_line: int) -> InputDecodeError:
    """Find the first bad line of ``lines`` and describe it."""
    for i, line in enumerate(lines):
        try:
            s: str = line.decode("utf-8") if isinstance(line, bytes) else str(line)
        except UnicodeDecodeError as e:
            return InputDecodeError(f"{ct} input line {first_line + i}: not valid UTF-8 ({e.reason})")
        if not s or s.isspace():
            continue
        try:
            _json_decode(s)
        except json.JSONDecodeError as e:
            snippet = s.strip()
            if len(snippet) > 80:
                snippet = snippet[:77] + "..."
            return InputDecodeError(
                f"{ct} input line {first_line + i}: invalid JSON at column {e.colno}: {e.msg}: {snippet!r}"
            )
    return InputDecodeError(f"{ct} input near line {first_line}: invalid JSON")  # pragma: no cover


def _parse_lines(ct: str, complete: bytes, first_line: int) -> tuple[list[Any], InputDecodeError | None]:
    """Parse the complete lines in ``complete`` (which ends with b"\\n").

    Returns the values parsed and, if a line is bad, the error for it (the
    values of the good lines before it are still returned).
    """
    from . import jsonlines  # here: orjson costs ~3 MiB, and only NDJSON input needs it

    fast = jsonlines.parse(complete)  # orjson, when installed and sure to agree
    if fast is not None:
        return fast, None
    try:
        text = complete.decode("utf-8")
    except UnicodeDecodeError:
        # decode line by line to find the bad one; keep the values before it
        lines_b = complete.split(b"\n")
        lines_b.pop()
        good: list[Any] = []
        for i, raw in enumerate(lines_b):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return good, InputDecodeError(f"{ct} input line {first_line + i}: not valid UTF-8 ({e.reason})")
            part, err = _parse_lines(ct, (line + "\n").encode("utf-8"), first_line + i)
            good.extend(part)
            if err is not None:
                return good, err
        return good, None  # pragma: no cover - the whole chunk failed to decode, so a line does
    lines = text.split("\n")
    lines.pop()  # the empty string after the final "\n"
    # fast path: the C scanner straight on each line (what json.loads does minus its
    # two whitespace regex matches); anything unusual falls through to the careful path
    out: list[Any] = []
    append = out.append
    scan = _json_scan
    try:
        for x in lines:
            if x:
                value, end = scan(x, 0)
                if end != len(x) and not x[end:].isspace():
                    raise ValueError
                append(value)
        return out, None
    except (StopIteration, ValueError):
        pass
    out = []
    # blank (whitespace-only) lines are skipped; anything else is an error
    for i, x in enumerate(lines):
        if not x or x.isspace():
            continue
        try:
            out.append(_json_decode(x))
        except json.JSONDecodeError:
            return out, _ndjson_error(ct, lines[i:], first_line + i)
    return out, None


async def _decode_ndjson(ct: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Any]]:
    pending: list[bytes] = []  # parts of the current incomplete line
    line_no = 1  # number of the first line not yet parsed
    async for chunk in chunks:
        if not chunk:
            continue
        cut = chunk.rfind(b"\n")
        if cut < 0:
            pending.append(bytes(chunk))
            continue
        if pending:
            pending.append(bytes(chunk[: cut + 1]))
            complete = b"".join(pending)
        else:
            complete = bytes(chunk[: cut + 1]) if cut + 1 < len(chunk) or type(chunk) is not bytes else chunk
        rest = chunk[cut + 1 :]
        pending = [bytes(rest)] if rest else []
        items, err = _parse_lines(ct, complete, line_no)
        line_no += complete.count(b"\n")
        if items:
            yield items
        if err is not None:
            raise err
    if pending:
        items, err = _parse_lines(ct, b"".join(pending) + b"\n", line_no)
        if items:
            yield items
        if err is not None:
            raise err


def decode_input(content_type: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Any]]:
    """Bytes chunks in → batches of items out (see the module docstring).

    Raises :class:`UnsupportedContentType` immediately for a content type it
    cannot decode; decoding errors are raised while iterating.
    """
    ct = normalize_content_type(content_type)
    kind = input_kind(ct)
    if kind is Kind.TEXT:
        return _decode_text(chunks, _codec_for(content_type, UnsupportedContentType))
    if kind is Kind.BINARY:
        return _decode_binary(chunks)
    if kind is Kind.NDJSON:
        if _codec_for(content_type, UnsupportedContentType).name != "utf-8" and \
                charset_of(content_type) not in ("us-ascii", "ascii"):
            raise UnsupportedContentType(f"content type {content_type!r}: {ct} input is UTF-8 (RFC 8259); "
                                         f"charset={charset_of(content_type)} is not supported")
        return _decode_ndjson(ct, chunks)
    raise UnsupportedContentType(
        f"unsupported input content type {content_type!r}: expected text/plain,"
        " application/octet-stream or application/x-ndjson"
    )


# --------------------------------------------------------------------------- encoders

_BYTESLIKE = (bytes, bytearray, memoryview)


def _value_line(item: Any) -> str:
    """A non-text item of a text output: one line, its JSON text (else ``str(item)``)."""
    try:
        return _json_encode(item) + "\n"
    except (TypeError, ValueError, RecursionError):
        return f"{item}\n"


def _text_encoder(info: codecs.CodecInfo) -> Callable[[list[Any]], bytes]:
    encode = info.encode
    label = _encoding_label(info)

    def to_bytes(text: str) -> bytes:
        try:
            return encode(text)[0]
        except UnicodeEncodeError as e:
            raise OutputEncodeError(f"text output in {label}: cannot encode {e.object[e.start:e.end]!r} "
                                    f"({e.reason})") from None

    def encode_text(batch: list[Any]) -> bytes:
        try:
            return to_bytes("".join(batch))
        except TypeError:
            pass
        out: list[bytes] = []
        try:
            for item in batch:
                if isinstance(item, str):
                    out.append(to_bytes(item))
                elif isinstance(item, _BYTESLIKE):
                    out.append(bytes(item))
                else:
                    out.append(to_bytes(_value_line(item)))
        except OutputEncodeError as e:
            raise OutputEncodeError(str(e), b"".join(out)) from None
        return b"".join(out)

    return encode_text


_encode_text = _text_encoder(codecs.lookup("utf-8"))


def _encode_binary(batch: list[Any]) -> bytes:
    try:
        return b"".join(batch)
    except TypeError:
        pass
    out: list[bytes] = []
    for item in batch:
        if isinstance(item, _BYTESLIKE):
            out.append(bytes(item))
        elif isinstance(item, str):
            out.append(item.encode("utf-8"))
        else:
            raise _not_binary(item, out)
    return b"".join(out)


def _not_binary(item: Any, done: list[Any]) -> OutputEncodeError:
    return OutputEncodeError(f"application/octet-stream output: cannot write an item of type "
                             f"{type(item).__name__} (expected bytes, bytearray, memoryview or str)",
                             b"".join(done))


def _binary_buffers(batch: list[Any]) -> list[Any]:
    """``_encode_binary`` without the join: the buffers to write, in order.

    ``bytes`` items are handed on as they are (the writer sends a list of buffers with one
    ``sendmsg``, so joining them would only copy every output byte once more); mutable
    buffers are copied, as the join did, so the Sequence may reuse them once it yielded.
    """
    out: list[Any] = []
    for item in batch:
        if type(item) is bytes:
            if item:
                out.append(item)
        elif isinstance(item, _BYTESLIKE):
            if len(item):
                out.append(bytes(item))
        elif isinstance(item, str):
            if item:
                out.append(item.encode("utf-8"))
        else:
            raise _not_binary(item, out)
    return out


_json_encoder = json.JSONEncoder(ensure_ascii=False)
_json_encode = _json_encoder.encode


def _json_default(o: Any) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _make_fast_json() -> Callable[[Any, int], Any] | None:
    """The C encoder made once and reused (``JSONEncoder.encode`` rebuilds it per call).

    It is only used when it produces exactly what ``json.dumps(x, ensure_ascii=False)``
    does on this Python; otherwise the portable path is used.
    """
    try:
        from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]

        if c_make_encoder is None:  # pragma: no cover - pure-Python json
            return None
        enc = c_make_encoder(None, _json_default, encode_basestring, None, ": ", ", ", False, False, True)
        probe = {"a": [1, 2.5, None, True, "ż\n\"", {"b": -1e300}], "c": ""}
        if "".join(enc(probe, 0)) != json.dumps(probe, ensure_ascii=False):  # pragma: no cover
            return None
        return enc  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001  # pragma: no cover - a future json changed the signature
        return None


_fast_json = _make_fast_json()


def _encode_ndjson(batch: list[Any]) -> bytes:
    if not batch:
        return b""
    try:
        if _fast_json is not None:
            enc = _fast_json
            parts: list[str] = []
            extend = parts.extend
            append = parts.append
            for item in batch:
                extend(enc(item, 0))
                append("\n")
            return "".join(parts).encode("utf-8")
        return ("\n".join(map(_json_encode, batch)) + "\n").encode("utf-8")
    except (TypeError, ValueError, RecursionError) as first:
        lines: list[str] = []
        for item in batch:
            try:
                lines.append(_json_encode(item) + "\n")
            except (TypeError, ValueError, RecursionError) as e:
                raise OutputEncodeError(
                    f"application/x-ndjson output: cannot write an item of type {type(item).__name__}"
                    f" as JSON ({e})", "".join(lines).encode("utf-8")
                ) from None  # the reason is in the message; the json module's frames are not the user's
        raise OutputEncodeError(f"application/x-ndjson output: {first}") from first  # pragma: no cover


def output_encoder(content_type: str) -> Callable[[list[Any]], bytes]:
    """The function turning a batch of output items into bytes for ``content_type``.

    An unknown charset of a text type raises :class:`OutputEncodeError` here."""
    kind = output_kind(content_type)
    if kind is Kind.NDJSON:
        return _encode_ndjson
    if kind is Kind.TEXT:
        info = _codec_for(content_type, OutputEncodeError)
        return _encode_text if info.name == "utf-8" else _text_encoder(info)
    return _encode_binary


def output_buffers_encoder(content_type: str) -> Callable[[list[Any]], list[Any]]:
    """Like :func:`output_encoder`, but a batch becomes a list of buffers to write in order
    (binary output is not joined; text and ndjson are one buffer per batch)."""
    encode = output_encoder(content_type)
    if encode is _encode_binary:
        return _binary_buffers
    return lambda batch: [encode(batch)]
