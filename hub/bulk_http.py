"""Fewer copies of each streamed body byte in uvicorn's httptools protocol (POST input, GET output).

uvicorn's httptools request cycle copies every request body byte twice after the parser made
it a ``bytes``: ``body += piece`` into a bytearray (which ``realloc`` copies again as it grows
toward the read high-water mark) and ``bytes(body)`` when the app receives it. It joins each
chunk of a chunked response with its framing (``b"".join([size, body, b"\\r\\n"])``), one more
copy of the body on its way to the socket. The hub's work on input and output is moving bytes:
those copies were about a tenth of its CPU per bulk byte.

``BulkRequestCycle`` keeps the pieces the parser gave (``BodyPieces``) and hands the app the
only piece as it is, or one join of several; it writes a chunk's framing and body as separate
buffers (``transport.writelines``: one gathered write, no join). Everything else is uvicorn's
own code path: the same flow control (reading pauses past the high-water mark and resumes when
the app asks for more), disconnects, ``100 Continue``, the response checks, HEAD, the end chunk.

``install()`` makes uvicorn's httptools protocol build this cycle (it does so by the module-level
name ``RequestResponseCycle``). It declines, with a warning, when this uvicorn's cycle is not
built the way this one relies on; uvicorn's own cycle then serves, with its copies.
"""

from __future__ import annotations

import logging
from typing import cast, final

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent, HTTPRequestEvent
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

logger = logging.getLogger("hub")


@final
class BodyPieces:
    """Stands in for the cycle's bytearray ``body``: what uvicorn's ``on_body`` does to it
    (``body += piece``, ``len(body)`` against the high-water mark) keeps the pieces instead of
    copying them into one buffer."""

    __slots__ = ("pieces", "size")

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.size = 0

    def __iadd__(self, piece: bytes) -> BodyPieces:  # noqa: PYI034 - final; Self needs typing_extensions on 3.10
        self.pieces.append(piece)
        self.size += len(piece)
        return self

    def __len__(self) -> int:
        return self.size

    def take(self) -> bytes:
        """Everything received so far as one bytes (a lone piece as it is); empty afterwards."""
        pieces = self.pieces
        if len(pieces) <= 1:
            body = pieces[0] if pieces else b""
        else:
            body = b"".join(pieces)
        self.pieces = []
        self.size = 0
        return body


class BulkRequestCycle(RequestResponseCycle):
    body: BodyPieces  # type: ignore[assignment]  # what on_body does to it, without the copies

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]  # uvicorn's own arguments, passed on
        self.body = BodyPieces()

    async def receive(self) -> ASGIReceiveEvent:
        # uvicorn's receive(), but the body is taken from the pieces rather than copied out of a bytearray.
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        message: HTTPRequestEvent = {"type": "http.request", "body": self.body.take(), "more_body": self.more_body}
        return message

    async def send(self, message: ASGISendEvent) -> None:
        body = cast(bytes, message.get("body", b""))
        if (message["type"] != "http.response.body" or not body or not self.chunked_encoding
                or self.response_complete or self.disconnected or self.scope["method"] == "HEAD"):
            await super().send(message)  # headers, empty or last-only bodies, HEAD, errors: uvicorn's path
            return
        if self.flow.write_paused:
            await self.flow.drain()
            if self.disconnected:
                return
        self.transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
        if not message.get("more_body", False):
            await super().send({"type": "http.response.body", "body": b"", "more_body": False})


def _cycle_is_as_expected() -> bool:
    """uvicorn's cycle keeps the request body in ``body`` and uses the names our ``receive`` uses."""
    receive = getattr(RequestResponseCycle.receive, "__code__", None)
    used = set(receive.co_names) if receive is not None else set()
    return {"body", "more_body", "message_event", "flow", "waiting_for_100_continue", "disconnected"} <= used


def install() -> bool:
    """From now on (in this process) uvicorn's httptools connections use BulkRequestCycle; False,
    with a warning, when this uvicorn's cycle differs from the one it was written against."""
    if httptools_impl.RequestResponseCycle is BulkRequestCycle:
        return True
    if not _cycle_is_as_expected():
        logger.warning("uvicorn %s: its request cycle is not the one hub/bulk_http.py expects; bulk bodies "
                       "are copied as uvicorn does (more CPU per byte)", _uvicorn_version())
        return False
    httptools_impl.RequestResponseCycle = BulkRequestCycle  # type: ignore[misc]
    return True


def _uvicorn_version() -> str:
    import uvicorn

    return str(uvicorn.__version__)
