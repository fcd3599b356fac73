"""TestHost's runner, cold (``subprocess.Popen``) or, with HOST_BRIDGE_WARM=1, forked from a
warm-start template (host_bridge.zygote): the same tests then check both ways of starting.

``WarmPopen`` offers what the tests use of ``Popen``: pid, poll, wait, kill, send_signal,
stdout/stderr (separate pipes, read at the end) and returncode.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from host_bridge.zygote import CONNECTION_FD, Zygote, decode_status

_lock = threading.Lock()
_zygote: Zygote | None = None


def warm_enabled() -> bool:
    return os.environ.get("HOST_BRIDGE_WARM", "").strip() == "1"


def _template(env: dict[str, str]) -> Zygote:
    global _zygote
    with _lock:
        if _zygote is None:
            zygote = Zygote(sys.executable, env)
            zygote.start()
            atexit.register(zygote.close)
            _zygote = zygote
        return _zygote


class WarmPopen:
    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: str, zygote: Zygote, fd: int) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid, self._status = zygote.fork(list(args), env, cwd, None, fd, out_w, err_w)
        finally:
            os.close(out_w)
            os.close(err_w)
        self.stdout: IO[bytes] | None = os.fdopen(out_r, "rb")
        self.stderr: IO[bytes] | None = os.fdopen(err_r, "rb")
        self.returncode: int | None = None

    def _read_status(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            self._status.settimeout(timeout)
            try:
                data = self._status.recv(4)
            except (TimeoutError, BlockingIOError):
                return None
            code = decode_status(data)
            self.returncode = code if code is not None else -int(signal.SIGKILL)
            self._status.close()
        return self.returncode

    def poll(self) -> int | None:
        return self._read_status(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._read_status(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(["warm runner"], timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def start_runner(args: Sequence[str], env: dict[str, str], cwd: str, fd: int, base_env: dict[str, str]) -> Any:
    """``python -m runner ARGS`` with ``fd`` as its connection (``args`` name it as ``--fd <fd>``)."""
    if warm_enabled():
        zygote = _template(base_env)
        if zygote.compatible(sys.executable, env):
            warm_args = [str(CONNECTION_FD) if a == str(fd) and i and args[i - 1] == "--fd" else a
                         for i, a in enumerate(args)]
            return WarmPopen(warm_args, env, cwd, zygote, fd)
    return subprocess.Popen([sys.executable, "-m", "runner", *args], pass_fds=[fd], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
