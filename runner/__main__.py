"""``python -m runner``: the runner process a host starts (and the container entrypoint).

Imports are lazy: a host waits for PING, so nothing beyond the protocol and
the socket is imported before the handshake.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

RESERVED_COMMANDS = ("run", "pack")


def version_line() -> str:
    from . import __version__
    from .protocol import FRAMER_IMPLEMENTATION, PROTOCOL_VERSION

    return f"sequence-runner {__version__} (protocol {PROTOCOL_VERSION}, framer {FRAMER_IMPLEMENTATION})"


def _config_error(message: str) -> int:
    sys.stderr.write(f"runner: {message}\n")
    sys.stderr.flush()
    return 20


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    words = argv[1:]
    if words and words[0] in RESERVED_COMMANDS:
        try:
            from . import cli
        except ImportError as exc:
            if getattr(exc, "name", None) not in ("runner.cli", None):
                raise
            return _config_error(f"the '{words[0]}' command is not available in this build (runner.cli is missing)")
        return int(cli.main(argv) or 0)
    if "--help" in words or "-h" in words:
        from .config import help_text

        sys.stdout.write(help_text())
        return 0
    if "--version" in words:
        sys.stdout.write(version_line() + "\n")
        return 0
    from . import signals

    signals.install()  # SIGTERM/SIGINT while connecting end the runner at once (exit 138)
    from .config import ConfigError, parse

    if os.environ.get("INSTANCES_SERVER_PORT") or os.environ.get("INSTANCE_ID"):
        from . import sth_mode  # started the way Scramjet Transform Hub starts its runner

        if sth_mode.wanted(words, os.environ):
            return sth_mode.main(words)
    try:
        settings = parse(words)
    except ConfigError as exc:
        return _config_error(f"{exc} (see python -m runner --help)")
    from .app import App, ConfigExit, select_transport

    try:
        transport = select_transport(settings)
        app = App(settings, transport)
        app.run()
    except ConfigExit as exc:
        return _config_error(str(exc))
    return 0  # pragma: no cover - App.run never returns


if __name__ == "__main__":
    sys.exit(main())
