"""The command line of ``python -m runner run|pack``: help texts, parsers and :class:`RunOptions`.

Parsing only: what runs a Sequence is in child.py (through host_bridge) and
inline.py (``--inline``), packaging in pack.py, dispatch in commands.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .envfile import EnvFileError, read_env_file
from .events_in import EventSyntaxError, check_source, parse_event
from .helptext import PACK_EPILOG, RUN_EPILOG


class UsageError(Exception):
    """A bad command line; exit 2 with the message."""


@dataclass
class RunOptions:
    path: str
    args: list[Any] | None = None
    config: dict[str, Any] | None = None
    content_type: str | None = None
    input_path: str | None = None  # None: this process's stdin
    stdin_path: str | None = None  # the Sequence's sys.stdin ("-": ours); None: empty
    events: list[tuple[str, Any]] = field(default_factory=list)
    event_sources: list[str] = field(default_factory=list)  # --events-from: paths or "-"
    env: dict[str, str] = field(default_factory=dict)  # --env files, on top of this environment
    stop_timeout_ms: float = 5000.0
    log_format: str = "text"
    color: str = "auto"
    verbose: bool = False
    inline: bool = False
    stats_interval: float | None = None  # --stats SECONDS

    def sequence_env(self) -> dict[str, str]:
        """What the Sequence's environment gets on top of this one: the --env files, and with -v
        tracebacks that keep the runner's frames (unless the user set that variable already)."""
        from ..sequence.failure import FULL_TRACEBACK_ENV

        env = dict(self.env)
        if self.verbose and FULL_TRACEBACK_ENV not in os.environ:
            env.setdefault(FULL_TRACEBACK_ENV, "1")
        return env


class VersionAction(argparse.Action):
    """``--version``: the versions line, computed only when asked (it imports the framer)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print versions and the active framer, and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from .. import version_line

        sys.stdout.write(version_line() + "\n")
        parser.exit()


def _parser_run(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{prog} run",
        usage=f"{prog} run PATH [ARGS ...] [options]",
        description="Run a Sequence (a directory with package.json, a .tar.gz package or a .py file) "
        "and connect it to this terminal.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", nargs="?", metavar="PATH", help="the Sequence: directory, .tar.gz/.tgz or .py file")
    p.add_argument("args", nargs="*", metavar="ARGS",
                   help="arguments of run(context, input, *args), as strings (default: package.json's args)")
    p.add_argument("--args", dest="args_json", metavar="JSON",
                   help="arguments as a JSON array instead (e.g. '[3, 500]'); not with trailing ARGS")
    p.add_argument("--config", metavar="JSON|@FILE",
                   help="appConfig (context.config): a JSON object, or @file.json")
    p.add_argument("--input", "-i", dest="input_path", metavar="FILE",
                   help="read the input from FILE instead of stdin ('-' = stdin)")
    p.add_argument("--content-type", "-t", metavar="TYPE",
                   help="input content type: text/plain, application/octet-stream, application/x-ndjson "
                   "(checked before the run; default: what the Sequence's `requires` declares, "
                   "else text/plain)")
    p.add_argument("--stdin", dest="stdin_path", metavar="FILE",
                   help="feed FILE to the Sequence's sys.stdin ('-' = this process's stdin); default: empty")
    p.add_argument("--event", "-e", action="append", default=[], metavar="NAME=JSON",
                   help="send an event once the Sequence runs (repeatable); the message is parsed as JSON "
                   "when it is valid JSON, else sent as a string")
    p.add_argument("--env", dest="env_files", action="append", default=[], metavar="FILE",
                   help="environment variables for the Sequence from a dotenv file: NAME=VALUE lines, "
                   "# comments, quotes, 'export ' allowed, no $VAR expansion (repeatable; later files win)")
    p.add_argument("--events-from", dest="events_from", action="append", default=[], metavar="FILE|FIFO|-",
                   help="send events while the Sequence runs, one NAME=JSON line each, from a file, a FIFO "
                   "(reopened after each writer) or '-' (this terminal; needs --input FILE); repeatable")
    p.add_argument("--stats", type=float, metavar="SECONDS", dest="stats_interval",
                   help="print the Sequence's RSS, CPU, event-loop lag and items/s every SECONDS "
                   "(kill -USR1 <pid of this command> prints them once, any time)")
    p.add_argument("--stop-timeout", type=float, default=5000.0, metavar="MS",
                   help="how long stop handlers may take on Ctrl-C/SIGTERM before a kill (default 5000)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="stderr format: prefixed text lines (default) or one JSON object per line")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the stderr prefixes (auto: when stderr is a terminal and NO_COLOR is unset)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also show the runner's own INFO log records, how the Instance ended, the summary "
                   "line, and tracebacks with the runner's frames (SEQUENCE_RUNNER_FULL_TRACEBACK=1)")
    p.add_argument("--inline", action="store_true",
                   help="run the Sequence in this process (for breakpoint()/pdb/IDE debuggers); see below")
    p.add_argument("--version", "-V", action=VersionAction)
    return p


def parser_pack(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{prog} pack",
        usage=f"{prog} pack DIRECTORY [-o FILE.tar.gz] [--install-deps]",
        description="Pack a Sequence directory into a .tar.gz package a hub accepts.",
        epilog=PACK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("directory", help="the Sequence directory (with package.json)")
    p.add_argument("-o", "--output", metavar="FILE.tar.gz",
                   help="the archive to write (default: <directory name>.tar.gz here)")
    p.add_argument("--install-deps", action="store_true",
                   help="pip install requirements.txt into __pypackages__ inside the package")
    p.add_argument("--version", "-V", action=VersionAction)
    return p


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what}: not valid JSON ({exc})") from None


def check_content_type(content_type: str) -> None:
    """UsageError unless the runner can decode ``content_type`` — rather than exit 23 blaming the
    Sequence. The verdict is the runner's own decoder's (charset included); the choices listed come
    from the content-type table both ends share (runner/protocol/content_types.py)."""
    from ..protocol.content_types import BINARY, NDJSON, NDJSON_ALIASES, TEXT, input_kind
    from ..sequence.content import UnsupportedContentType, decode_input

    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator

    try:
        decode_input(content_type, nothing())  # raises at once for a type it cannot decode
    except UnsupportedContentType as exc:
        if input_kind(content_type) is not None:  # a known type with a parameter it refuses
            raise UsageError(f"--content-type: {exc}") from None
        raise UsageError(f"--content-type {content_type!r} is not a content type the runner reads; "
                         f"choose one of: {TEXT}, {BINARY}, {NDJSON} (or another ndjson name: "
                         f"{', '.join(sorted(NDJSON_ALIASES))}, */x-ndjson)") from None


def parse_run(words: Sequence[str], prog: str = "python -m runner") -> RunOptions:
    ns = _parser_run(prog).parse_intermixed_args(list(words))
    if not ns.path:
        raise UsageError("PATH is required: the Sequence to run (a directory with package.json, "
                         "a .tar.gz package or a .py file)")
    opts = RunOptions(path=ns.path, args=_run_args(ns.args, ns.args_json), config=_config(ns.config),
                      log_format=ns.log_format, color=ns.color, verbose=ns.verbose, inline=ns.inline)
    _files(opts, ns)
    for spec in ns.event:
        try:
            opts.events.append(parse_event(spec))
        except EventSyntaxError as exc:
            raise UsageError(f"--event: {exc}") from None
    for env_file in ns.env_files:
        try:
            opts.env.update(read_env_file(env_file))
        except EnvFileError as exc:
            raise UsageError(f"--env {exc}") from None
    if ns.stats_interval is not None and not ns.stats_interval > 0:
        raise UsageError("--stats must be a positive number of seconds")
    opts.stats_interval = ns.stats_interval
    if ns.stop_timeout < 0:
        raise UsageError("--stop-timeout must not be negative")
    opts.stop_timeout_ms = ns.stop_timeout
    if ns.content_type is not None:
        check_content_type(ns.content_type)
    opts.content_type = ns.content_type
    return opts


def _run_args(trailing: list[str], args_json: str | None) -> list[Any] | None:
    if args_json is None:
        return list(trailing) if trailing else None
    if trailing:
        raise UsageError("give the arguments either as trailing ARGS or with --args JSON, not both")
    args = _json_arg(args_json, "--args")
    if not isinstance(args, list):
        raise UsageError(f"--args must be a JSON array, got {type(args).__name__}")
    return args


def _config(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    what = "--config"
    if text.startswith("@"):
        what = f"--config {text}"
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise UsageError(f"{what}: cannot read: {exc.strerror or exc}") from None
    config = _json_arg(text, what)
    if not isinstance(config, dict):
        raise UsageError(f"{what} must be a JSON object, got {type(config).__name__}")
    return config


def _files(opts: RunOptions, ns: argparse.Namespace) -> None:
    """--input, --stdin and --events-from: each exists, and this process's stdin feeds one of them."""
    opts.input_path = None if ns.input_path in (None, "-") else os.path.abspath(ns.input_path)
    if ns.stdin_path is not None:
        opts.stdin_path = "-" if ns.stdin_path == "-" else os.path.abspath(ns.stdin_path)
        if opts.stdin_path == "-" and ns.input_path == "-":
            raise UsageError("stdin cannot feed both --input - and --stdin -")
    for what, path in (("--input", opts.input_path), ("--stdin", opts.stdin_path)):
        if path not in (None, "-") and not os.path.isfile(path):
            raise UsageError(f"{what} {path}: no such file")
    for source in ns.events_from:
        problem = check_source(source)
        if problem:
            raise UsageError(f"--events-from {source}: {problem}")
        if source == "-" and (opts.stdin_path == "-" or opts.input_path is None):
            raise UsageError("--events-from - reads this process's stdin, which already feeds the "
                             + ("Sequence's sys.stdin (--stdin -)" if opts.stdin_path == "-" else
                                "input: give the input with --input FILE"))
        opts.event_sources.append(source if source == "-" else os.path.abspath(source))
