"""Terminal side of ``python -m runner run``: everything but the output, rendered on stderr.

Shared by the child-process path (child.py) and ``--inline`` (inline.py), so
both look the same: the Sequence's stdout/stderr, log records, events and the
command's own notes go to stderr, prefixed (``[stdout] ``, ``[stderr] ``,
``[log INFO] ``, ``[event NAME] ``), coloured on a terminal, or as one JSON
object per line with ``--log-format json``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import IO, Any

from ..protocol import ExitCode
from .stats import RunTally, want_summary

#: This command's own status for a run that failed with no exit code of the runner's to say so
#: (the runner could not be started, or host_bridge found the end unclean).
FAILED = 1

EXIT_MEANINGS = {
    0: "completed",
    FAILED: "failed",
    20: "invalid configuration",
    21: "invalid Sequence path",
    22: "the Sequence failed on start",
    23: "the Sequence failed during execution",
    137: "killed",
    138: "stopped",
}

_RESET = "\x1b[0m"
_COLORS = {
    "stdout": "\x1b[36m",  # cyan
    "stderr": "\x1b[31m",  # red
    "event": "\x1b[35m",  # magenta
    "note": "\x1b[1m",  # bold
    "TRACE": "\x1b[2m",
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARN": "\x1b[33m",
    "ERROR": "\x1b[1;31m",
    "FATAL": "\x1b[1;31m",
}
_RUNNER_QUIET_LEVELS = ("TRACE", "DEBUG", "INFO")


def _also_on_stderr(record: dict[str, Any]) -> bool:
    """A runner warning it writes to the Sequence's stderr too (for hosts that show only that),
    which this command shows already: the breakpoint() hint."""
    from ..stdio import BREAKPOINT_HINT  # here: only a runner warning needs it

    return record.get("msg") == BREAKPOINT_HINT


def now_ms() -> int:
    """Wall-clock milliseconds, the ``ts`` of every JSON record (as in the runner's LOG records)."""
    return int(time.time() * 1000)


def want_color(choice: str, stream: Any) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Render:
    """Writes everything but the output to stderr. Thread-safe."""

    def __init__(self, log_format: str = "text", color: str = "auto", verbose: bool = False,
                 stream: IO[bytes] | None = None) -> None:
        out: Any = stream
        if out is None:
            real = sys.__stderr__
            out = real.buffer if real is not None else open(os.devnull, "wb")  # noqa: SIM115
        self.out = out
        self.json = log_format == "json"
        self.color = not self.json and want_color(color, sys.__stderr__)
        self.verbose = verbose
        self._lock = threading.RLock()
        self._open: str | None = None  # the channel whose line is unfinished
        self._partial: dict[str, bytes] = {}  # json mode: unfinished lines per channel

    # -- low level
    def _prefix(self, label: str, color_key: str) -> bytes:
        text = f"[{label}] "
        if self.color and color_key in _COLORS:
            text = f"{_COLORS[color_key]}{text}{_RESET}"
        return text.encode()

    def _write(self, data: bytes) -> None:
        try:
            self.out.write(data)
            self.out.flush()
        except (OSError, ValueError):
            pass

    def _emit_json(self, obj: dict[str, Any]) -> None:
        self._write((json.dumps(obj, ensure_ascii=False, default=repr) + "\n").encode("utf-8", "backslashreplace"))

    def _close_open_line(self) -> None:
        if self._open is not None:
            self._write(b"\n")
            self._open = None

    def _record_line(self, label: str, color_key: str, text: str) -> None:
        """One whole line (or several, each prefixed) outside the stdio streams."""
        with self._lock:
            self._close_open_line()
            prefix = self._prefix(label, color_key)
            lines = text.rstrip("\n").split("\n") or [""]
            self._write(b"".join(prefix + line.encode("utf-8", "backslashreplace") + b"\n" for line in lines))

    # -- the Sequence's stdout/stderr
    def stdio(self, kind: str, data: bytes) -> None:
        """Bytes of the Sequence's ``stdout`` or ``stderr``: written through at once, each line prefixed."""
        if not data:
            return
        with self._lock:
            if self.json:
                pending = self._partial.get(kind, b"") + data
                *lines, rest = pending.split(b"\n")
                self._partial[kind] = rest
                for line in lines:
                    self._emit_json({"type": kind, "ts": now_ms(),
                                     "text": line.decode("utf-8", "replace")})
                return
            parts = data.split(b"\n")
            chunks: list[bytes] = []
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                if last and not part:
                    break
                if self._open is not None and self._open != kind:
                    chunks.append(b"\n")
                    self._open = None
                if self._open is None:
                    chunks.append(self._prefix(kind, kind))
                chunks.append(part)
                if last:
                    self._open = kind
                else:
                    chunks.append(b"\n")
                    self._open = None
            self._write(b"".join(chunks))

    def stdio_end(self, kind: str) -> None:
        with self._lock:
            if self.json:
                rest = self._partial.pop(kind, b"")
                if rest:
                    self._emit_json({"type": kind, "ts": now_ms(),
                                     "text": rest.decode("utf-8", "replace")})
            elif self._open == kind:
                self._close_open_line()

    # -- records
    def log(self, record: dict[str, Any]) -> None:
        level = str(record.get("level", "INFO")).upper()
        origin = str(record.get("from", ""))
        runner_own = origin == "runner"
        if runner_own and not self.verbose and (level in _RUNNER_QUIET_LEVELS or record.get("exc")):
            return  # a runner error with a traceback: the traceback is on the Sequence's stderr already
        if runner_own and level == "WARN" and _also_on_stderr(record):
            return
        if self.json:
            self._emit_json({"type": "log", **record})
            return
        text = str(record.get("msg", ""))
        if origin not in ("Sequence", "") and not runner_own:
            text = f"{origin}: {text}"
        exc = record.get("exc")
        if exc and not runner_own:  # the runner's own errors are on the Sequence's stderr already
            text = f"{text}\n{str(exc).rstrip()}"
        label = f"log {level}" if not runner_own else f"runner {level}"
        self._record_line(label, level, text)

    def event(self, name: str, message: Any) -> None:
        if self.json:  # ts: when it reached this command (events carry no time of their own)
            self._emit_json({"type": "event", "ts": now_ms(), "name": name, "message": message})
            return
        try:
            shown = json.dumps(message, ensure_ascii=False)
        except (TypeError, ValueError):
            shown = repr(message)
        self._record_line(f"event {name}", "event", shown)

    def note(self, text: str, *, always: bool = True) -> None:
        """A message from this command itself (``[run] ...``)."""
        if not always and not self.verbose:
            return
        if self.json:
            self._emit_json({"type": "note", "ts": now_ms(), "msg": text})
            return
        self._record_line("run", "note", text)

    def stats(self, text: str, record: dict[str, Any]) -> None:
        """Live numbers of the running Sequence (``--stats``, SIGUSR1)."""
        if self.json:
            self._emit_json({"type": "stats", "ts": now_ms(), **record})
            return
        self._record_line("stats", "note", text)

    def exit(self, code: int | None, detail: str | None = None, tally: RunTally | None = None) -> None:
        """How the run ended; with ``tally``, also the summary line when one is wanted (-v or a
        terminal on stderr), which then stands in for the plain exit line."""
        meaning = EXIT_MEANINGS.get(code or 0, "") if code is not None else "unknown"
        summary = tally.summary(code, meaning) if tally is not None and want_summary(self.verbose) else None
        if self.json:
            self._emit_json({"type": "exit", "ts": now_ms(), "code": code, "meaning": meaning, "detail": detail})
            if summary is not None:
                self._emit_json({"type": "summary", "ts": now_ms(), **summary[1]})
            return
        status = f"exit {code}" + (f" ({meaning})" if meaning else "")
        if summary is not None:
            if detail:
                self._record_line("run", "note", f"{status}: {detail}")
            self._record_line("run", "note", summary[0])
            return
        if code == 0 and not self.verbose:
            return
        self._record_line("run", "note", status + (f": {detail}" if detail else ""))


def exit_meaning(code: int | None) -> str:
    return EXIT_MEANINGS.get(int(code), "") if code is not None else "unknown"


def exit_code_of(code: int | None) -> int:
    """The status this command exits with for an Instance's exit code."""
    if code is None:
        return 1
    if code < 0 or code > 255:
        return int(ExitCode.KILLED)
    return int(code)
