"""The runner process from handshake to exit (docs/runner.md).

config → PING (written by runner/hello.py before this module is even imported, for an
inherited socket; here otherwise: start-up time counts until PING) → PONG → ``Runtime`` (runner/runtime.py): load → PANG {requires}
→ heartbeat → input from IN → start_sequence → PANG {provides} → output batches
to OUT within credit → END OUT → SEQUENCE_COMPLETED → EXITING 0. Every exit, good
or bad, goes through the ExitPath (runner/exiting.py) so what the Sequence
produced is flushed first.
"""

from __future__ import annotations

import os
from typing import NoReturn

from .config import Settings
from .hello import SentPing, ping_fields
from .protocol import Ping, Pong
from .transport.base import HandshakeFailed, Transport


class ConfigExit(Exception):
    """Exit 20 before anything else happened; the message is for stderr."""


def select_transport(settings: Settings, env: dict[str, str] | None = None,
                     sent_ping: SentPing | None = None) -> Transport:
    """The protocol-v1 transport for these settings (STH mode is runner.sth_mode's, before this);
    ``sent_ping``: the PING runner.hello already wrote on ``settings.fd``."""
    env = dict(os.environ) if env is None else env
    if settings.fd is None and settings.connect is None and env.get("INSTANCES_SERVER_PORT"):
        raise ConfigExit("STH mode takes no options (see docs/sth-compat.md)")
    from .transport import native

    try:
        if settings.fd is not None:
            sock = native.from_fd(settings.fd)
        else:
            assert settings.connect is not None
            sock = native.connect(settings.connect, settings.connect_timeout)
    except OSError as exc:
        where = f"fd {settings.fd}" if settings.fd is not None else ":".join(map(str, settings.connect or ()))
        raise ConfigExit(f"cannot use the connection {where}: {exc}") from None
    return native.NativeTransport(sock, sent_ping=sent_ping.frame if sent_ping is not None else None)


class App:
    """The runner before its handshake: the settings and the transport, nothing imported yet."""

    def __init__(self, settings: Settings, transport: Transport, sent_ping: SentPing | None = None) -> None:
        self.settings = settings
        self.transport = transport
        self.sent_ping = sent_ping

    def handshake(self) -> Pong:
        # the values of the PING runner.hello wrote, if it did: the transport checks the bytes
        fields = self.sent_ping.fields if self.sent_ping is not None else ping_fields(self.settings)
        hello = Ping(**fields)
        try:
            return self.transport.handshake(hello, self.settings.connect_timeout)
        except HandshakeFailed as exc:
            raise ConfigExit(str(exc)) from None

    def run(self) -> NoReturn:
        """Handshake, then hand over to the Runtime; never returns (ConfigExit: exit 20)."""
        from . import signals

        pong = self.handshake()
        signals.handshake_done()  # a signal from now on waits for the control side
        from .credentials import forget_token

        forget_token(self.settings.token)  # used: the Sequence and its children never see it
        self.settings.token = ""
        if self.sent_ping is not None:
            self.sent_ping.forget()  # its values and frame carry the token too
        from .ssl_deferral import import_asyncio

        import_asyncio()  # before the runtime imports asyncio: ssl only when something asks for it
        from .runtime import Runtime

        Runtime(self.settings, self.transport).run(pong)
