"""The connection token is the runner's, never the Sequence's: forgotten once the handshake used it.

A host passes the token in ``SEQUENCE_RUNNER_TOKEN`` (or ``--token``, which ``ps``
shows: the variable is preferred). After PING carried it, ``forget_token``:

* removes the variable from ``os.environ`` and the C environment (``unsetenv``), so
  the Sequence does not see it and no process it starts inherits it;
* overwrites its value with ``*`` in the process's original environment block and
  command line, which ``/proc/<pid>/environ`` and ``/proc/<pid>/cmdline`` (``ps``)
  show for the life of the process (Linux, through ``/proc/self/mem``; where that
  is not possible the variable is still gone from the environment);
* removes ``--token VALUE`` from ``sys.argv`` and ``sys.orig_argv``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import BinaryIO

__all__ = ["TOKEN_ENV", "forget_token"]

TOKEN_ENV = "SEQUENCE_RUNNER_TOKEN"
TOKEN_OPTION = "--token"

log = logging.getLogger("runner")


def _memory_ranges() -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(arg_start, arg_end), (env_start, env_end) of this process (/proc/self/stat fields 48-51)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        arg_start, arg_end, env_start, env_end = (int(x) for x in fields[45:49])
    except (OSError, ValueError, IndexError):
        return None
    return (arg_start, arg_end), (env_start, env_end)


def _mask(mem: BinaryIO, start: int, end: int, needles: list[bytes], secret: bytes) -> int:
    """Overwrite ``secret`` with ``*`` wherever it follows one of ``needles`` in [start, end)."""
    if end <= start or not secret:
        return 0
    mem.seek(start)
    block = mem.read(end - start)
    masked = 0
    for needle in needles:
        at = block.find(needle)
        while at >= 0:
            value_at = at + len(needle)
            if block[value_at:value_at + len(secret)] == secret:
                mem.seek(start + value_at)
                mem.write(b"*" * len(secret))
                masked += 1
            at = block.find(needle, value_at)
    return masked


def _scrub_process_memory(secret: bytes) -> int:
    ranges = _memory_ranges()
    if ranges is None:
        return 0
    (arg_start, arg_end), (env_start, env_end) = ranges
    try:
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            return (_mask(mem, env_start, env_end, [f"{TOKEN_ENV}=".encode()], secret)
                    + _mask(mem, arg_start, arg_end, [f"{TOKEN_OPTION}\0".encode(), f"{TOKEN_OPTION}=".encode()],
                            secret))
    except OSError as exc:  # a kernel that refuses writes to /proc/self/mem
        log.info("the token stays visible in /proc/%d/environ or cmdline: %s", os.getpid(), exc)
        return 0


def _drop_from_argv(argv: list[str]) -> None:
    i = 0
    while i < len(argv):
        if argv[i] == TOKEN_OPTION:
            del argv[i:i + 2]
        elif argv[i].startswith(TOKEN_OPTION + "="):
            del argv[i]
        else:
            i += 1


def forget_token(token: str) -> None:
    """Remove every trace of ``token`` the Sequence could read (module docstring)."""
    os.environ.pop(TOKEN_ENV, None)
    _drop_from_argv(sys.argv)
    _drop_from_argv(getattr(sys, "orig_argv", []))  # 3.10+: the interpreter's own copy
    if token:
        _scrub_process_memory(token.encode("utf-8", "surrogateescape"))
