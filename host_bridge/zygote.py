"""Warm starts: runners forked from a template process that has done its imports.

``Bridge(warm=True)`` keeps one template (runner/warm_template.py, started with
the bridge's interpreter and environment) and forks each spawned Instance's runner
from it instead of starting ``python -m runner``: the interpreter's start-up and the
runner's imports are paid once, and the forks share the template's pages until they
write them. Each fork is made to look like a cold start (its own session and process
group, fds 0-3 only, default signal handlers, the Instance's environment, cwd, argv
and sys.path, random state reseeded by ``os.fork``), then runs ``python -m runner``'s
main as a cold runner does; the runner starts its threads after the fork.

``Zygote`` is the synchronous core (one lock around the control socket; used by
host_bridge through a worker thread and by tests directly); ``WarmProcess`` is the
``anyio.abc.Process`` the Supervisor watches. Limits are in docs/host_bridge.md.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from .errors import SpawnError
from .link import wait_readable

#: Waiting on a pipe's fd needs anyio >= 4.7 (``wait_readable`` takes any fd); older: cold starts only.
wait_fd_readable: Any = getattr(anyio, "wait_readable", None)

STATUS = struct.Struct("=i")
#: The fd a forked runner finds its connection on (runner.warm_template.CONNECTION_FD).
CONNECTION_FD = 3
#: Variables read when the interpreter or the runner's modules start (a fork cannot take a
#: different value from the Instance's environment): an Instance whose value differs from the
#: template's is started cold instead.
START_TIME_PREFIXES = ("PYTHON", "LD_", "MALLOC_")
START_TIME_NAMES = frozenset({"SEQUENCE_RUNNER_PURE_PYTHON", "SEQUENCE_RUNNER_REQUIRE_EXTENSION"})


class ZygoteError(SpawnError):
    """The template could not be started, or could not fork."""


def template_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The bridge's environment with the project on PYTHONPATH, as a cold spawn gets it."""
    env = dict(os.environ if base is None else base)
    import runner

    root = str(Path(runner.__file__).resolve().parent.parent)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root if not old else f"{root}{os.pathsep}{old}"
    return env


def _start_time_part(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items()
            if (k.startswith(START_TIME_PREFIXES) and k != "PYTHONPATH") or k in START_TIME_NAMES}


class Zygote:
    """One template process, and forks of it on request. Thread-safe; blocking calls."""

    def __init__(self, python: str = sys.executable, env: Mapping[str, str] | None = None,
                 timeout: float = 30.0) -> None:
        self.python = python
        self.env = template_environment() if env is None else dict(env)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.missing: list[str] = []  # preload modules the template could not import

    # -- the template ----------------------------------------------------------------------
    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [self.python, "-m", "runner.warm_template", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True,  # a hub's Ctrl-C is not for it
            )
        except OSError as exc:
            ours.close()
            raise ZygoteError(f"cannot start the warm-start template: {exc}") from exc
        finally:
            theirs.close()
        ours.settimeout(self.timeout)
        reason: Exception | None = None
        try:
            hello = json.loads(ours.recv(1 << 16) or b"null")
        except (OSError, ValueError) as exc:
            hello, reason = None, exc
        if not isinstance(hello, dict) or not hello.get("ready"):
            ours.close()
            self._reap_template(kill=True)
            raise ZygoteError(f"the warm-start template did not come up: {reason or 'it exited'} "
                              f"(exit code {self._process.returncode})")
        self.pid = int(hello["pid"])
        self.missing = list(hello.get("missing") or [])
        self._control = ours

    def compatible(self, python: str, env: Mapping[str, str]) -> bool:
        """Whether a runner with this interpreter and environment may be forked from the template."""
        return python == self.python and _start_time_part(env) == _start_time_part(self.env)

    @property
    def alive(self) -> bool:
        return self._control is not None and self._process is not None and self._process.poll() is None

    def fork(self, args: list[str], env: Mapping[str, str], cwd: str | None, memory_limit: int | None,
             connection: int, stdout: int, stderr: int) -> tuple[int, socket.socket]:
        """A runner ``python -m runner ARGS`` forked from the template; returns its pid and the
        socket on which its wait status arrives when the template reaps it."""
        pid, status, _ = self.fork_into(args, env, cwd, memory_limit, connection, stdout, stderr, None)
        return pid, status

    def fork_into(self, args: list[str], env: Mapping[str, str], cwd: str | None, memory_limit: int | None,
                  connection: int, stdout: int, stderr: int, cgroup: str | None
                  ) -> tuple[int, socket.socket, bool]:
        """``fork``, born in the cgroup directory ``cgroup`` when the system allows it (clone3 with
        CLONE_INTO_CGROUP: no migration afterwards, which costs 1-10 ms of the kernel's RCU);
        the last value says whether it was."""
        request, status_ours, status_theirs = _fork_request(args, env, cwd, memory_limit, cgroup)
        fds = [connection, stdout, stderr, status_theirs.fileno()]
        try:
            with self._lock:
                control = self._send(request, fds)
                reply = json.loads(control.recv(1 << 16) or b"null")
        except (OSError, ValueError) as exc:
            status_ours.close()
            raise ZygoteError(f"the warm-start template did not answer: {exc}") from exc
        finally:
            status_theirs.close()
        return _forked(reply, status_ours)

    async def fork_into_async(self, args: list[str], env: Mapping[str, str], cwd: str | None,
                              memory_limit: int | None, connection: int, stdout: int, stderr: int,
                              cgroup: str | None) -> tuple[int, socket.socket, bool]:
        """``fork_into`` from an event loop: the request goes out from the loop's thread and the
        reply is awaited there (a hop to a worker thread before the fork cost 0.2-0.7 ms of every
        warm start). While a thread's exchange holds the socket, this one waits in a thread."""
        request, status_ours, status_theirs = _fork_request(args, env, cwd, memory_limit, cgroup)
        if not self._lock.acquire(blocking=False):
            status_ours.close()
            status_theirs.close()
            return await anyio.to_thread.run_sync(
                lambda: self.fork_into(args, env, cwd, memory_limit, connection, stdout, stderr, cgroup))
        fds = [connection, stdout, stderr, status_theirs.fileno()]
        try:
            # shielded: a reply left unread would answer the next request
            with anyio.CancelScope(shield=True), anyio.fail_after(self.timeout):
                control = self._send(request, fds)
                await wait_readable(control)
                reply = json.loads(control.recv(1 << 16) or b"null")
        except (OSError, ValueError, TimeoutError) as exc:
            status_ours.close()
            why = str(exc) or f"no reply within {self.timeout:g} s"
            raise ZygoteError(f"the warm-start template did not answer: {why}") from exc
        finally:
            self._lock.release()
            status_theirs.close()
        return _forked(reply, status_ours)

    def _send(self, request: bytes, fds: list[int]) -> socket.socket:
        """One request on the control socket (the caller holds the lock); the socket, for the reply."""
        control = self._control
        if control is None:
            raise ZygoteError("the warm-start template is closed")
        control.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
        return control

    def close(self) -> None:
        """The template exits (its control socket closes); runners forked from it live on."""
        with self._lock:
            control, self._control = self._control, None
        if control is not None:
            control.close()
        self._reap_template(kill=False)

    def _reap_template(self, kill: bool) -> None:
        if self._process is None:
            return
        try:
            if kill:
                self._process.kill()
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)


def _fork_request(args: list[str], env: Mapping[str, str], cwd: str | None, memory_limit: int | None,
                  cgroup: str | None) -> tuple[bytes, socket.socket, socket.socket]:
    """The request's bytes and the status socketpair (ours, the template's) of one fork."""
    # the cgroup first, alone: the template needs it before the fork, and only the child parses the JSON
    request = json.dumps({"args": args, "env": dict(env), "cwd": cwd, "memory_limit": memory_limit})
    status_ours, status_theirs = socket.socketpair()
    return os.fsencode(cgroup or "") + b"\0" + request.encode(), status_ours, status_theirs


def _forked(reply: Any, status_ours: socket.socket) -> tuple[int, socket.socket, bool]:
    if not isinstance(reply, dict) or "pid" not in reply:
        status_ours.close()
        why = reply.get("error") if isinstance(reply, dict) else "the template is gone"
        raise ZygoteError(f"the warm-start template could not fork: {why}")
    return int(reply["pid"]), status_ours, bool(reply.get("in_cgroup"))


def decode_status(data: bytes) -> int | None:
    """A wait status from the template -> subprocess's convention (-N for signal N)."""
    if len(data) != STATUS.size:
        return None
    return os.waitstatus_to_exitcode(STATUS.unpack(data)[0])


class _PipeReceiver(anyio.abc.ByteReceiveStream):
    """The runner's fd 1/2 (one pipe, as in a cold start) as an anyio byte stream."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            try:
                data = os.read(self.fd, max_bytes)
            except BlockingIOError:
                await wait_fd_readable(self.fd)
                continue
            except OSError:
                data = b""
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class WarmProcess(anyio.abc.Process):
    """A runner forked from the template, watched like an ``anyio.abc.Process``."""

    def __init__(self, pid: int, output: int, status: socket.socket) -> None:
        self._pid = pid
        self._stdout = _PipeReceiver(output)
        status.setblocking(False)
        self._status = status
        self._returncode: int | None = None
        self._waited: anyio.Event | None = None
        self.in_cgroup = False  # born in its Instance's cgroup (nothing left to adopt)

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def stdin(self) -> None:
        return None

    @property
    def stdout(self) -> anyio.abc.ByteReceiveStream:
        return self._stdout

    @property
    def stderr(self) -> None:
        return None

    async def wait(self) -> int:
        if self._returncode is not None:
            return self._returncode
        if self._waited is not None:  # another task reads the status
            await self._waited.wait()
            assert self._returncode is not None
            return self._returncode
        self._waited = anyio.Event()
        data = b""
        while len(data) < STATUS.size:
            try:
                chunk = self._status.recv(STATUS.size - len(data))
            except BlockingIOError:
                await wait_readable(self._status)
                continue
            except OSError:
                chunk = b""
            if not chunk:
                break
            data += chunk
        code = decode_status(data)
        if code is None:
            # The template went away before reaping it: the status is lost. End the runner's
            # group so nothing of it outlives this answer, and report it as killed.
            _kill_group(self._pid)
            code = -int(signal.SIGKILL)
        self._returncode = code
        self._waited.set()
        return code

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def send_signal(self, sig: int) -> None:
        if self._returncode is None:
            try:
                os.kill(self._pid, sig)
            except ProcessLookupError:
                pass

    async def aclose(self) -> None:
        await self._stdout.aclose()
        self._status.close()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def start_warm(zygote: Zygote, args: list[str], env: Mapping[str, str], cwd: str | None,
                     memory_limit: int | None, connection: int, cgroup: str | None = None) -> WarmProcess:
    """Fork a runner for ``args`` (``--fd``/``--sequence``...) with fd 1 and 2 on one pipe, as a
    cold spawn has them."""
    ours, theirs = os.pipe()
    try:
        pid, status, in_cgroup = await zygote.fork_into_async(args, env, cwd, memory_limit, connection,
                                                              theirs, theirs, cgroup)
    except BaseException:
        os.close(ours)
        raise
    finally:
        os.close(theirs)
    process = WarmProcess(pid, ours, status)
    process.in_cgroup = in_cgroup
    return process


class WarmStarts:
    """A Bridge's warm starts: its template, started once (in a worker thread, at the bridge's
    start), and the choice per spawn. A spawn that cannot be forked is started cold:
    ``command`` replaced, another interpreter, a listener instead of a socketpair, an
    environment that differs in what is read at start-up (START_TIME_*), or no template."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.zygote: Zygote | None = None
        self.error: str | None = None  # why there is no template (then every spawn is cold)
        self._lock = anyio.Lock()

    async def ready(self) -> Zygote | None:
        async with self._lock:
            if self.zygote is None and self.error is None:
                zygote = Zygote(self.python)
                try:
                    await anyio.to_thread.run_sync(zygote.start)
                except ZygoteError as exc:
                    self.error = str(exc)
                else:
                    self.zygote = zygote
            return self.zygote

    async def start(self, spec: Any, env: Mapping[str, str], connection: int | None,
                    cgroup: str | None = None) -> WarmProcess | None:
        """``spec`` is a host_bridge.process.SpawnOptions; None means: start this one cold."""
        if spec.command is not None or connection is None or wait_fd_readable is None:
            return None
        zygote = await self.ready()
        if zygote is None or not zygote.alive or not zygote.compatible(spec.python, env):
            return None
        args = ["--fd", str(CONNECTION_FD), "--sequence", str(spec.sequence), *spec.extra_args]
        try:
            return await start_warm(zygote, args, env, spec.cwd, spec.memory_limit, connection, cgroup)
        except ZygoteError as exc:  # the template is gone or broken: cold from now on
            self.error = str(exc)
            await self.aclose()
            return None

    async def aclose(self) -> None:
        if self.zygote is not None:
            zygote, self.zygote = self.zygote, None
            await anyio.to_thread.run_sync(zygote.close)
