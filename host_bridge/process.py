"""Starting a runner process and signalling its process group.

The runner is started in its own session (``start_new_session``), so its pid is
also its process group id: supervision signals the whole group, which reaches
the Sequence's own child processes too, and after the runner exits the group
is killed so no child is left behind as an orphan.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc

# Sets RLIMIT_AS and then execs the real command: anyio.open_process has no
# preexec_fn, and an exec shim limits the runner from its first instruction.
_RLIMIT_SHIM = (
    "import os,resource,sys;n=int(sys.argv[1]);"
    "resource.setrlimit(resource.RLIMIT_AS,(n,n));os.execv(sys.argv[2],sys.argv[2:])"
)

INSTANCE_ID_ENV = "SEQUENCE_RUNNER_INSTANCE_ID"
TOKEN_ENV = "SEQUENCE_RUNNER_TOKEN"


def _project_root() -> str:
    import runner

    return str(Path(runner.__file__).resolve().parent.parent)


@dataclass
class SpawnOptions:
    """How to start one runner process (see Bridge.spawn for the meaning of each field)."""

    sequence: str
    python: str = sys.executable
    command: Sequence[str] | None = None
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    inherit_env: bool = True
    cwd: str | None = None
    memory_limit: int | None = None
    connect: str | None = None  # None: inherited socketpair; else "unix:PATH" / "tcp:HOST:PORT"
    fd: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        base = list(self.command) if self.command is not None else [self.python, "-m", "runner"]
        if self.fd is not None:
            base += ["--fd", str(self.fd)]
        else:
            assert self.connect is not None
            base += ["--connect", self.connect]
        base += ["--sequence", str(self.sequence), *self.extra_args]
        if self.memory_limit is not None:
            base = [self.python, "-c", _RLIMIT_SHIM, str(int(self.memory_limit)), *base]
        return base

    def environment(self, instance_id: str, token: str) -> dict[str, str]:
        env = dict(os.environ) if self.inherit_env else {}
        if self.command is None:
            # `python -m runner` must find the package even when cwd is elsewhere.
            root = _project_root()
            old = env.get("PYTHONPATH")
            env["PYTHONPATH"] = root if not old else f"{root}{os.pathsep}{old}"
        env.update(self.env or {})
        env.update(self.extra_env)
        env[INSTANCE_ID_ENV] = instance_id
        env[TOKEN_ENV] = token
        return env


async def start_process(options: SpawnOptions, env: dict[str, str], pass_fds: Sequence[int]) -> anyio.abc.Process:
    return await anyio.open_process(
        options.argv(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        # fd 1 and fd 2 share one pipe: what a runner writes before it redirects its
        # stdio to the connection (or when it fails before connecting) lands here.
        stderr=subprocess.STDOUT,
        cwd=options.cwd,
        env=env,
        start_new_session=True,
        pass_fds=pass_fds,
    )


def signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to the process group led by ``pid``; False if nothing is left to signal."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False


class TailBuffer:
    """The last ``max_lines`` lines of a byte stream (for failure reports)."""

    def __init__(self, max_lines: int = 50, max_line: int = 4096) -> None:
        self.lines: deque[str] = deque(maxlen=max_lines)
        self._partial = b""
        self._max_line = max_line

    def feed(self, data: bytes) -> None:
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        if len(self._partial) > self._max_line:
            complete.append(self._partial)
            self._partial = b""
        for line in complete[-(self.lines.maxlen or 1):]:
            self.lines.append(line[: self._max_line].decode("utf-8", "replace").rstrip("\r"))

    def text(self) -> list[str]:
        tail = list(self.lines)
        if self._partial:
            tail.append(self._partial.decode("utf-8", "replace"))
        return tail
