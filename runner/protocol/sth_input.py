"""STH's IN header block: ``Content-Type: <type>\\r\\n\\r\\n`` before the first input byte.

Part of STH's protocol (sth.py re-exports everything here). Sans-IO, standard library only.
"""

from __future__ import annotations

from .errors import LocalProtocolError, RemoteProtocolError

#: Longest IN header block accepted by default, terminator included.
DEFAULT_MAX_HEADER_SIZE = 16 << 10


class STHProtocolError(RemoteProtocolError):
    """The peer broke STH's protocol (``frames`` holds messages decoded before)."""


class BadHeaderBlock(STHProtocolError):
    """The IN header block is not ``key: value`` lines ending in an empty line."""


class HeaderBlockTooLarge(BadHeaderBlock):
    """No end of the IN header block within the size limit."""


def show(data: bytes, limit: int = 120) -> str:
    """Peer bytes for an error message, cut at ``limit``."""
    return repr(data[:limit]) + ("..." if len(data) > limit else "")


def parse_header_block(block: bytes) -> dict[str, str]:
    """Parse header lines (without the final empty line): keys lowercased, split on ``": "``."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadHeaderBlock(f"IN header block is not UTF-8: {err}") from None
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise BadHeaderBlock(f"IN header line is not 'key: value': {line[:120]!r}")
        headers[key.strip().lower()] = value.strip()
    return headers


class InputHeaderReader:
    """Incremental reader of the IN channel's optional header block.

    ``feed(data)`` returns body bytes (``b""`` while still inside the header
    block); after the block, data passes through unchanged. ``headers`` is None
    until the block is complete. When the input is fed by a topic the host
    sends no block: create with ``expect_headers=False`` (or call
    ``no_headers()`` before the first byte) and everything is body.
    """

    __slots__ = ("_buf", "headers", "max_size")

    def __init__(self, *, expect_headers: bool = True, max_size: int = DEFAULT_MAX_HEADER_SIZE) -> None:
        self.max_size = max_size
        self.headers: dict[str, str] | None = None if expect_headers else {}
        self._buf = b""

    @property
    def done(self) -> bool:
        return self.headers is not None

    @property
    def content_type(self) -> str | None:
        return None if self.headers is None else self.headers.get("content-type")

    def no_headers(self) -> None:
        """Say no header block is coming (topic-fed input)."""
        if self._buf:
            raise LocalProtocolError("header bytes were already fed")
        if self.headers is None:
            self.headers = {}

    def feed(self, data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
        if self.headers is not None:
            return data
        start = max(0, len(self._buf) - 3)
        buf = self._buf + bytes(data)
        end = buf.find(b"\r\n\r\n", start)
        if end < 0:
            if len(buf) > self.max_size:
                self._buf = b""
                raise HeaderBlockTooLarge(
                    f"IN header block has no end (\\r\\n\\r\\n) within {self.max_size} bytes: {show(buf, 80)}"
                )
            self._buf = buf
            return b""
        if end + 4 > self.max_size:
            raise HeaderBlockTooLarge(f"IN header block is {end + 4} bytes; the limit is {self.max_size}")
        self._buf = b""
        self.headers = parse_header_block(buf[:end])
        return buf[end + 4 :]

    def eof(self) -> None:
        """IN ended. No input at all is fine; an unfinished header block is an error."""
        if self.headers is None and self._buf:
            raise BadHeaderBlock(f"IN ended inside the header block: {show(self._buf, 80)}")


def encode_header_block(content_type: str) -> bytes:
    """What the host writes on IN once, before the first input byte."""
    if "\r" in content_type or "\n" in content_type:
        raise LocalProtocolError(f"content type {content_type!r} contains a line break")
    return f"Content-Type: {content_type}\r\n\r\n".encode()
