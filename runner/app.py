"""The runner process from handshake to exit (docs/runner.md).

config → connect → PING/PONG (here, before anything else is imported: start-up
time counts until PING) → ``Runtime`` (runner/runtime.py): load → PANG {requires}
→ heartbeat → input from IN → start_sequence → PANG {provides} → output batches
to OUT within credit → END OUT → SEQUENCE_COMPLETED → EXITING 0. Every exit, good
or bad, goes through the ExitPath (runner/exiting.py) so what the Sequence
produced is flushed first.
"""

from __future__ import annotations

import os
import sys
import time
from typing import NoReturn

from . import __version__
from .config import Settings
from .protocol import Ping, Pong
from .transport.base import HandshakeFailed, Transport

CAPABILITIES = ["stdio", "events", "monitoring", "stop", "keepalive"]


class ConfigExit(Exception):
    """Exit 20 before anything else happened; the message is for stderr."""


def select_transport(settings: Settings, env: dict[str, str] | None = None) -> Transport:
    """The protocol-v1 transport for these settings (STH mode is runner.sth_mode's, before this)."""
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
    return native.NativeTransport(sock)


class App:
    """The runner before its handshake: the settings and the transport, nothing imported yet."""

    def __init__(self, settings: Settings, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport

    def handshake(self) -> Pong:
        hello = Ping(
            instance_id=self.settings.instance_id,
            token=self.settings.token,
            pid=os.getpid(),
            created=int(time.time() * 1000),
            runner_version=__version__,
            python=sys.version.split()[0],
            capabilities=list(CAPABILITIES),
        )
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
        from .runtime import Runtime

        Runtime(self.settings, self.transport).run(pong)
