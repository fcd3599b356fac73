"""PING first: the runner's hello, written before the rest of the runner is imported.

A host counts a runner as started when its PING arrives (it answers PONG at once), so
start-up time is the time to PING. ``__main__`` sends it right after the settings are
parsed, with only the protocol constants, the framer and msgpack imported (not typing,
dataclasses, the messages, the Connection or the transports); the rest of the runner
loads while the host answers. ``NativeTransport.handshake`` then has the Connection
build the same Ping from the same values and checks that it would have written these very
bytes: the Connection stays the one authority on the wire format, and a difference is a
clear handshake failure, never a different PING (tests/runner/test_hello.py checks it too).

For an inherited socket (``--fd``: host_bridge, the hub, warm starts), and in STH mode,
which opens its nine connections here and writes STH's PING line on MONITORING (the
STH translator builds it again and the transport compares). ``--connect`` connects in
the transport, as before.

STH mode goes one step further: STH's hub marks an Instance "running" at its first PANG,
and only then supervises its exit (ref §3.2, "Host on PANG"), so ``sth_pong_and_pang``
waits here for PONG and writes STH's first PANG ``{"requires": "", "contentType": ""}``
(what STH's own runners send right after PONG), before the runner core and the Sequence
load. The CONTROL bytes read up to PONG go on to the transport, which delivers what came
with PONG; the translator records this PANG (the transport checks the bytes), so the
Sequence's own PANGs only add what it requires and provides.
"""

from __future__ import annotations

import os
import sys
import time

from . import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    from .config import Settings
    from .transport.sth_connect import STHConfig

CAPABILITIES = ("stdio", "events", "monitoring", "stop", "keepalive")


class EarlyPingError(Exception):
    """The PING could not be written; the message is the runner's exit-20 reason."""


class SentPing:
    """The Ping's values (``Ping(**fields)``) and the frame that was written."""

    __slots__ = ("fields", "frame")

    def __init__(self, fields: dict[str, Any], frame: bytes) -> None:
        self.fields = fields
        self.frame = frame

    def forget(self) -> None:
        """Drop the token (in the values and in the frame) once the handshake is done."""
        self.fields["token"] = ""
        self.frame = b""


def ping_fields(settings: Settings) -> dict[str, Any]:
    """The Ping a runner with these settings sends (the Connection adds protocol, impl, max
    frame size and window)."""
    return {
        "instance_id": settings.instance_id,
        "token": settings.token,
        "pid": os.getpid(),
        "created": int(time.time() * 1000),
        "runner_version": __version__,
        "python": sys.version.split()[0],
        "capabilities": list(CAPABILITIES),
    }


def ping_frame(fields: dict[str, Any]) -> bytes:
    """The frame ``Connection(Role.RUNNER).send(Ping(**fields))`` writes: its body keys in the
    order of Ping's fields (schema.to_body), None left out."""
    import msgpack

    from .protocol.constants import DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW, PROTOCOL_VERSION, Channel, Code
    from .protocol.framer import IMPLEMENTATION, FrameEncoder

    values = {
        "instanceId": fields["instance_id"], "token": fields["token"], "protocol": PROTOCOL_VERSION,
        "maxFrameSize": DEFAULT_MAX_FRAME_SIZE, "window": DEFAULT_WINDOW, "impl": IMPLEMENTATION,
        "capabilities": fields["capabilities"], "pid": fields["pid"], "created": fields["created"],
        "runnerVersion": fields["runner_version"], "python": fields["python"],
    }
    body = msgpack.packb({k: v for k, v in values.items() if v is not None}, use_bin_type=True)
    encoder = FrameEncoder(DEFAULT_MAX_FRAME_SIZE)
    encoder.message(int(Channel.MONITORING), int(Code.PING), body)
    return b"".join(bytes(chunk) for chunk in encoder.take())


def send_ping(settings: Settings) -> SentPing:
    """Write the PING on the inherited socket ``settings.fd``; EarlyPingError says why not (the
    same reasons, in the same words, as when the transport wrote it)."""
    import _socket

    assert settings.fd is not None
    fields = ping_fields(settings)
    frame = ping_frame(fields)
    try:
        sock = _socket.socket(fileno=settings.fd)  # checks that it is a socket, as native.from_fd did
        sock.settimeout(None)
    except OSError as exc:
        raise EarlyPingError(f"cannot use the connection fd {settings.fd}: {exc}") from None
    try:
        sock.sendall(frame)
    except OSError as err:
        raise EarlyPingError(f"connection failed during the handshake: {err}") from None
    finally:
        sock.detach()  # the transport's socket object owns the fd
    return SentPing(fields, frame)


#: STH's first PANG, written right after PONG (STHTranslator.first_pang builds the same line).
STH_FIRST_PANG = {"requires": "", "contentType": ""}


class STHEarlyPing:
    """STH mode: the nine connections (channel -> socket), the PING line written on MONITORING,
    and, once ``sth_pong_and_pang`` ran, the CONTROL bytes read up to PONG and the PANG written."""

    __slots__ = ("control", "frame", "pang", "socks")

    def __init__(self, socks: dict[int, socket.socket], frame: bytes) -> None:
        self.socks = socks
        self.frame = frame
        self.control = b""
        self.pang = b""


def sth_ping_line(cfg: STHConfig, fields: dict[str, Any]) -> bytes:
    """The PING line ``STHTranslator.ping`` writes for ``Ping(**fields)``."""
    from .protocol.sth import STHCode, encode_runner_message, ping_data

    return encode_runner_message(STHCode.PING, ping_data(
        cfg.instance_id, cfg.sequence_info, cfg.connect_info, fields["pid"],
        created_ms=int(fields["created"] or cfg.created_ms), status="starting", input_headers_sent=False))


def sth_connect_and_ping(cfg: STHConfig, fields: dict[str, Any]) -> STHEarlyPing:
    """Open STH's connections (nine; eight for an 0.18-style host) and write the PING; EarlyPingError in
    the words the transport's handshake used."""
    from .protocol.sth import STHChannel
    from .transport.sth_connect import connect_all, destroy

    frame = sth_ping_line(cfg, fields)
    try:
        socks = connect_all(cfg.host, cfg.port, cfg.instance_id, cfg.connect_timeout, cfg.profile.channels)
    except OSError as err:
        raise EarlyPingError(str(err)) from None
    try:
        socks[STHChannel.MONITORING].sendall(frame)
    except OSError as err:
        for sock in socks.values():
            destroy(sock)
        raise EarlyPingError(f"connection to the STH host failed during the handshake: {err}") from None
    return STHEarlyPing(socks, frame)


def sth_pong_and_pang(early: STHEarlyPing, timeout: float) -> None:
    """Wait (up to ``timeout`` s) for PONG on CONTROL, then write STH's first PANG on MONITORING;
    EarlyPingError in the words the transport's handshake used."""
    from .protocol.sth import STHChannel, STHCode, encode_runner_message
    from .transport.sth_connect import NoPong, destroy, read_until_pong

    pang = encode_runner_message(STHCode.PANG, STH_FIRST_PANG)
    try:
        early.control = read_until_pong(early.socks[STHChannel.CONTROL], time.monotonic() + timeout, timeout)
        early.socks[STHChannel.MONITORING].sendall(pang)
    except (NoPong, OSError) as err:
        for sock in early.socks.values():
            destroy(sock)
        if isinstance(err, NoPong):
            raise EarlyPingError(str(err)) from None
        raise EarlyPingError(f"connection to the STH host failed during the handshake: {err}") from None
    early.pang = pang
