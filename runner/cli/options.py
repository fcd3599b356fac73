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

RUN_EPILOG = """\
input, output and the rest:
  The Sequence's input is this process's stdin (or --input FILE); when stdin is
  closed or /dev/null the input is empty. Its output goes to stdout, byte for
  byte. What the Sequence prints (its stdout/stderr), its log records and the
  events it emits go to stderr, one line each, prefixed:
      [stdout] ...   [stderr] ...   [log INFO] ...   [event NAME] <json message>
  (coloured when stderr is a terminal; --log-format json for one JSON object per
  line instead, each with "type" and "ts", milliseconds since the epoch; an
  event's ts is when it reached this command). The Sequence's sys.stdin is empty unless --stdin FILE is given
  ('--stdin -' hands it this process's stdin; the input is then empty unless
  --input is given).

stopping:
  Ctrl-C (SIGINT) or SIGTERM stops the Sequence gracefully: its stop handlers run
  (within --stop-timeout) and may keep it alive. The next one kills it (if the
  Sequence kept itself alive, the next one is a final stop without keepalive,
  and the one after it kills).

exit status: the Instance's exit code:
  0 completed, 21 invalid Sequence path, 22 failed on start (syntax/import
  error), 23 failed during execution (the traceback is on stderr), 137 killed,
  138 stopped; 2 for a command-line error (a missing PATH, an unknown option or
  --content-type, bad JSON); 1 when the runner could not be started.

--inline:
  Runs the Sequence in this process (no child, no protocol) so breakpoint(),
  pdb and IDE debuggers work. Same Sequence API, content types, events, stop
  handlers and exit codes. stdout still carries only the output: print() in the
  Sequence goes to stderr as "[stdout] ..." (written through at once, so pdb's
  prompt shows), and fd 1 is pointed at stderr for C code and child processes.
  breakpoint() opens pdb on the terminal (/dev/tty) even when the input is
  piped (unless PYTHONBREAKPOINT says otherwise); give the input with --input
  FILE when you debug, so pdb and the input do not share the terminal.

examples:
  printf 'world\\nrunner\\n' | python -m runner run sample_sequences/hello
  python -m runner run sample_sequences/counter 3 500
  python -m runner run sample_sequences/counter --args '[3, 500]'
  python -m runner run sample_sequences/ndjson-transform --content-type application/x-ndjson --input data.ndjson
  python -m runner run sample_sequences/events --event ping='"hi"' --stop-timeout 1000
  python -m runner run sample_sequences/stop-keepalive --config '{"sendKeepalive": true}'
  python -m runner run sample_sequences/stdinout --stdin lines.txt
  python -m runner run my-sequence --env .env
  python -m runner run --inline sample_sequences/hello --input names.txt
  python -m runner run package.tar.gz --log-format json 2>events.ndjson
"""

PACK_EPILOG = """\
The archive has package.json at its root (as a hub expects), its members in
sorted order with fixed owners, modes and times (the same directory gives the
same bytes), and leaves out __pycache__, .git, .venv, *.pyc and tool caches.
package.json is checked first: valid JSON, an object, and `main` naming a file
in the directory.

--install-deps runs `pip install -t __pypackages__ -r requirements.txt` into a
temporary directory and packs the result as __pypackages__/ (the runner puts it
first on sys.path); the directory itself is not changed.

exit status: 0 packed, 21 not a valid Sequence directory, 1 other errors
(pip failed, cannot write the archive), 2 command-line error.

examples:
  python -m runner pack sample_sequences/hello -o hello.tar.gz
  python -m runner pack my-sequence -o my-sequence.tar.gz --install-deps
  python -m runner run hello.tar.gz
"""


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
    env: dict[str, str] = field(default_factory=dict)  # --env files, on top of this environment
    stop_timeout_ms: float = 5000.0
    log_format: str = "text"
    color: str = "auto"
    verbose: bool = False
    inline: bool = False


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
    p.add_argument("--stop-timeout", type=float, default=5000.0, metavar="MS",
                   help="how long stop handlers may take on Ctrl-C/SIGTERM before a kill (default 5000)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="stderr format: prefixed text lines (default) or one JSON object per line")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the stderr prefixes (auto: when stderr is a terminal and NO_COLOR is unset)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also show the runner's own INFO log records and how the Instance ended")
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
    """UsageError unless the runner can decode ``content_type`` (asked of the runner's own decoder
    table, so the CLI never disagrees with it) — rather than exit 23 blaming the Sequence."""
    from ..sequence.content import BINARY, NDJSON, TEXT, UnsupportedContentType, decode_input

    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""  # pragma: no cover - makes this an async generator

    try:
        decode_input(content_type, nothing())  # raises at once for a type it cannot decode
    except UnsupportedContentType:
        raise UsageError(f"--content-type {content_type!r} is not a content type the runner reads; "
                         f"choose one of: {TEXT}, {BINARY}, {NDJSON} (or another ndjson name: "
                         "application/jsonl, application/json-lines, */x-ndjson)") from None


def parse_run(words: Sequence[str], prog: str = "python -m runner") -> RunOptions:
    ns = _parser_run(prog).parse_intermixed_args(list(words))
    if not ns.path:
        raise UsageError("PATH is required: the Sequence to run (a directory with package.json, "
                         "a .tar.gz package or a .py file)")
    opts = RunOptions(path=ns.path)
    if ns.args_json is not None:
        if ns.args:
            raise UsageError("give the arguments either as trailing ARGS or with --args JSON, not both")
        args = _json_arg(ns.args_json, "--args")
        if not isinstance(args, list):
            raise UsageError(f"--args must be a JSON array, got {type(args).__name__}")
        opts.args = args
    elif ns.args:
        opts.args = list(ns.args)
    if ns.config is not None:
        text = ns.config
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
        opts.config = config
    for spec in ns.event:
        name, eq, raw = spec.partition("=")
        if not name:
            raise UsageError(f"--event {spec!r}: expected NAME=JSON")
        message: Any = None
        if eq:
            try:
                message = json.loads(raw)
            except ValueError:
                message = raw
        opts.events.append((name, message))
    for env_file in ns.env_files:
        try:
            opts.env.update(read_env_file(env_file))
        except EnvFileError as exc:
            raise UsageError(f"--env {exc}") from None
    if ns.stop_timeout < 0:
        raise UsageError("--stop-timeout must not be negative")
    opts.stop_timeout_ms = ns.stop_timeout
    if ns.content_type is not None:
        check_content_type(ns.content_type)
    opts.content_type = ns.content_type
    opts.input_path = None if ns.input_path in (None, "-") else os.path.abspath(ns.input_path)
    if ns.stdin_path is not None:
        opts.stdin_path = "-" if ns.stdin_path == "-" else os.path.abspath(ns.stdin_path)
        if opts.stdin_path == "-" and ns.input_path == "-":
            raise UsageError("stdin cannot feed both --input - and --stdin -")
    for what, path in (("--input", opts.input_path), ("--stdin", opts.stdin_path)):
        if path not in (None, "-") and not os.path.isfile(path):
            raise UsageError(f"{what} {path}: no such file")
    opts.log_format = ns.log_format
    opts.color = ns.color
    opts.verbose = ns.verbose
    opts.inline = ns.inline
    return opts
