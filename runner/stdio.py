"""The Sequence's stdio on the STDIN/STDOUT/STDERR channels.

- ``sys.stdout``/``sys.stderr`` become line-buffered UTF-8 text writers on the
  STDOUT/STDERR channel writers: ``print()`` of a line goes out at its newline.
- File descriptors 1 and 2 are pipes that a thread each pumps to the same
  channels, so C extensions and child processes (``os.system``, ``subprocess``)
  reach the host too. A dup of the original fd 2 is kept for the runner's own
  fatal diagnostics (``diagnose``).
- ``sys.stdin`` reads the STDIN channel (runner/stdin.py): the file API, and
  ``await sys.stdin.read()``/``async for line in sys.stdin`` as STH gives it,
  which never block the event loop.

Bounded everywhere: a writer whose channel has no credit and a full queue waits
(the printing thread blocks), a pipe pump that waits lets the pipe fill, so the
child writing to it blocks. Nothing grows without limit.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .fd_pump import FdPump
from .stdin import StdinBuffer, StdinText
from .transport.base import ChannelWriter

__all__ = ["ChannelRaw", "StdinBuffer", "StdinText", "Stdio", "diagnose", "install_breakpoint_hint"]

_original_stderr_fd: int | None = None


def diagnose(text: str) -> None:
    """Write to the runner's real stderr (the one it was started with), whatever fd 2 is now."""
    fd = _original_stderr_fd if _original_stderr_fd is not None else 2
    try:
        os.write(fd, (text.rstrip("\n") + "\n").encode("utf-8", "backslashreplace"))
    except OSError:
        pass


class ChannelRaw(io.RawIOBase):
    """Raw binary stream writing to a channel writer (blocking while the channel is full)."""

    def __init__(self, writer: ChannelWriter, fileno: int) -> None:
        super().__init__()
        self._writer = writer
        self._fileno = fileno

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        self._writer.write(bytes(data))
        return n

    def fileno(self) -> int:
        return self._fileno  # so faulthandler and friends write to the pumped pipe

    def isatty(self) -> bool:
        return False


BREAKPOINT_HINT = ("runner: breakpoint() ignored: this Sequence runs in a runner process, which has no "
                   "terminal to debug on; to stop at breakpoint() in pdb, run it with "
                   "`python -m runner run --inline PATH`")


def install_breakpoint_hint() -> None:
    """``breakpoint()`` says once how to debug instead of starting pdb on the STDIN channel (which
    ends in BdbQuit). PYTHONBREAKPOINT, when set (a remote debugger, or 0), is left in charge."""
    if os.environ.get("PYTHONBREAKPOINT"):
        return
    told: list[bool] = []

    def hint(*_args: Any, **_kwargs: Any) -> None:
        if told:
            return
        told.append(True)
        import logging

        logging.getLogger("runner").warning("%s", BREAKPOINT_HINT)
        try:
            sys.stderr.write(BREAKPOINT_HINT + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    sys.breakpointhook = hint


class Stdio:
    """Installs and later flushes the Sequence's stdio."""

    def __init__(self, stdout: ChannelWriter, stderr: ChannelWriter, consumed: Callable[[int], None]) -> None:
        self._stdout_writer = stdout
        self._stderr_writer = stderr
        self.stdin = StdinBuffer(consumed)
        #: Fds 1 and 2 as pipes to the channels (runner/fd_pump.py), once installed.
        self.pump: FdPump | None = None
        self.installed = False

    def install(self, capture_fds: bool = True) -> None:
        global _original_stderr_fd
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        if capture_fds:
            if _original_stderr_fd is None:
                _original_stderr_fd = os.dup(2)
            self.pump = FdPump({1: self._stdout_writer, 2: self._stderr_writer})
        sys.stdout = self._text(self._stdout_writer, 1)
        sys.stderr = self._text(self._stderr_writer, 2)
        sys.stdin = StdinText(self.stdin)
        self.installed = True

    @staticmethod
    def _text(writer: ChannelWriter, fd: int) -> io.TextIOWrapper:
        raw = ChannelRaw(writer, fd)
        return io.TextIOWrapper(
            io.BufferedWriter(raw, 64 * 1024), encoding="utf-8", errors="backslashreplace", line_buffering=True
        )

    def flush(self, timeout: float) -> None:
        """Everything written so far into the channel writers (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        if self.pump is not None:
            self.pump.close(max(0.0, deadline - time.monotonic()))
