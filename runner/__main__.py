"""``python -m runner`` (and the ``sequence-runner`` script): dispatch between the two audiences.

A host starts the runner process with a connection (``--fd``/``--connect`` or
their environment variables, or STH's environment). A person types
``run``/``pack``, or nothing at all: those go to the CLI (runner/cli/), which
prints usage when no command was given.

Imports are lazy: a host waits for PING, so nothing beyond the settings, the framer
and msgpack is imported before it (runner/hello.py writes it).
"""

from __future__ import annotations

import os
import sys

from . import prog_name, version_line

TYPE_CHECKING = False  # collections.abc and typing are not imported before PING (runner/hello.py)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

CLI_COMMANDS = ("run", "pack")
#: Any of these means a host (or STH) started the process, so no words is the runner, not a person
#: (and a host that forgot its connection hears "no connection", exit 20).
HOST_ENVIRONMENT = ("SEQUENCE_RUNNER_FD", "SEQUENCE_RUNNER_CONNECT", "SEQUENCE_RUNNER_INSTANCE_ID",
                    "SEQUENCE_RUNNER_SEQUENCE", "INSTANCES_SERVER_PORT", "INSTANCE_ID")
#: Words the runner process answers itself besides its options (runner.config.OPTIONS).
RUNNER_WORDS = ("--help", "-h", "--version", "-V")


def for_the_cli(words: Sequence[str], env: Mapping[str, str]) -> bool:
    """A command (``run``/``pack``); or, when nothing a host would set is set, no words at all, a
    word that is no option (a mistyped command) or options none of which the runner process knows
    (``--bogus``: a person's typo, not a host's setting). The CLI names the word, prints the usage
    and exits 2; a host's bad setting stays the runner's exit 20."""
    if words and words[0] in CLI_COMMANDS:
        return True
    if any(env.get(name) for name in HOST_ENVIRONMENT):
        return False
    if not words or not words[0].startswith("-"):
        return True
    from .config import OPTIONS  # the host path imports it anyway

    known = (*OPTIONS, *RUNNER_WORDS)
    return not any(word.partition("=")[0] in known for word in words)


def _config_error(message: str) -> int:
    sys.stderr.write(f"runner: {message}\n")
    sys.stderr.flush()
    return 20


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    words = argv[1:]
    prog = prog_name(argv[0] if argv else "")
    if for_the_cli(words, os.environ):
        try:
            from . import cli
        except ImportError as exc:
            if getattr(exc, "name", None) not in ("runner.cli", None):
                raise
            return _config_error(f"the '{(words or ['run'])[0]}' command is not available in this build "
                                 "(runner.cli is missing)")
        return int(cli.main(argv) or 0)
    if "--help" in words or "-h" in words:
        from .config import help_text

        sys.stdout.write(help_text(prog))
        return 0
    if "--version" in words or "-V" in words:
        sys.stdout.write(version_line() + "\n")
        return 0
    import gc

    # The runner's own start-up makes few reference cycles, but its imports would run ~25 collections
    # (~10% of its CPU to PANG); Runtime.run freezes what start-up made and turns the collector back on
    # before the Sequence is imported.
    gc.disable()
    from . import deferred_imports

    deferred_imports.install()  # inspect, tokenize... run when first used, not because asyncio imports them
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
        message = str(exc)
        if "--help" not in message:  # config.py may name --help itself: one hint is enough
            message += f" (see {prog} --help)"
        return _config_error(message)
    sent_ping = None
    if settings.fd is not None:  # PING first: the host counts us as started when it arrives
        from .hello import EarlyPingError, send_ping

        try:
            sent_ping = send_ping(settings)
        except EarlyPingError as exc:
            return _config_error(str(exc))
    from .app import App, ConfigExit, select_transport

    del argv[:], words[:]  # copies of sys.argv (a --token among them): this frame lives on during the run
    try:
        transport = select_transport(settings, sent_ping=sent_ping)
        app = App(settings, transport, sent_ping)
        app.run()
    except ConfigExit as exc:
        return _config_error(str(exc))
    return 0  # pragma: no cover - App.run never returns


if __name__ == "__main__":
    sys.exit(main())
