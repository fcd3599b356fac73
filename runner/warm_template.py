"""The warm-start template process: ``python -m runner.warm_template FD`` (host_bridge.zygote starts it).

It imports what a runner needs (``runner.warm.preload``), freezes those objects out of
the garbage collector's reach (so a child's collections do not copy the template's
pages), says "ready" on its control socket (FD, a SOCK_SEQPACKET socketpair end held by
host_bridge.zygote) and then only waits. Each request is one message: the cgroup directory
to fork into (empty: none), a NUL byte, then JSON (argv for ``python -m runner``,
environment, cwd, RLIMIT_AS) and, as SCM_RIGHTS, the fds the runner gets (its connection,
its fd 1 and fd 2) plus a status socket. The template forks; the child parses the JSON and
becomes the runner (``_become_runner``), the template answers ``{"pid": N}``,
and when it reaps the child it writes the raw wait status on that child's status socket
and closes it: host_bridge awaits that socket instead of the pid (the runner is the
template's child, not the hub's).

Every page the template writes between two forks stays, in its old content, with the runner
forked before: that runner alone maps it then, and pays for it as private memory. So the
template's round between forks allocates and frees as little as it can: the request arrives
in a buffer kept for it, only the child parses it, status sockets are kept as bare fds, and
the reply is formatted bytes.

The template stays single-threaded (a fork copies only the calling thread: any other
thread's locks would stay held in the child) and never runs Sequence code. It ends when
the host closes the control socket; runners it forked live on (their own sessions).
"""

from __future__ import annotations

import array
import ctypes
import gc
import json
import mmap
import os
import resource
import runpy
import select
import signal
import socket
import struct
import sys
import threading
import weakref
from collections.abc import KeysView, Mapping, MappingView
from typing import Any

#: The fd numbers a forked runner gets: 0 /dev/null, 1 and 2 as sent, its connection here.
CONNECTION_FD = 3
MAX_REQUEST = 1 << 20
MAX_FDS = 4
STATUS = struct.Struct("=i")


def _python_path_entries(env: dict[str, str]) -> list[str]:
    return [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


class Template:
    def __init__(self, control: socket.socket, runner_main: tuple[str, Any, Any] | None = None,
                 compiled: Any = None) -> None:
        self.control = control
        #: runner._warm_serve_c (imported before the start-up rounds: see main), None: the Python loop
        self.compiled = compiled
        self.children: dict[int, int] = {}  # pid -> the fd of its status socket
        # an anonymous mapping: pages are touched only as far as requests reach
        self.buffer = mmap.mmap(-1, MAX_REQUEST, flags=mmap.MAP_PRIVATE)  # not shared with the forks
        own = _python_path_entries(dict(os.environ))
        # the interpreter's own part of sys.path (stdlib, site-packages): a runner puts its cwd
        # and its PYTHONPATH in front of it, as `python -m runner` would
        self.base_path = [p for p in sys.path[1:] if p not in own]
        # fds the imports opened (a library's own, e.g. a loop's global signal pipe, which the
        # library itself renews at fork): a cold runner has them too, so a fork keeps them; every
        # other fd of the template is its job's (control, wakeup pipe, status and received fds)
        self.library_fds = _open_fds() - {0, 1, 2, control.fileno()}
        #: runner/__main__.py's (name, spec, code), as ``python -m runner`` finds them; None: each
        #: fork lets runpy find them itself
        self.runner_main = runner_main
        if compiled is not None:  # after library_fds: its signalfd is the template's, not a fork's
            compiled.setup()

    # -- the loop -------------------------------------------------------------------------
    def serve(self) -> None:
        if self.compiled is None or threading.active_count() != 1:  # the Python loop refuses to fork then
            self.serve_in_python()
        else:
            self.serve_compiled(self.compiled)

    def serve_compiled(self, compiled: Any) -> None:
        """runner/_warm_serve_c.pyx serves the requests: between two forks the template then runs
        no Python and makes no object (each page written then is one more private page for every
        runner forked before); it comes back here in a new child, for a refused request, and when
        the host is gone."""
        control = self.control.fileno()
        while True:
            outcome = compiled.serve(control, self.buffer, MAX_FDS)
            if outcome[0] == "child":
                _, size, cut, fds = outcome
                self._child(cut + 1, size, fds)  # ends the process
            if outcome[0] != "refused":
                return
            _, size, reason, fds = outcome
            for fd in fds:
                os.close(fd)
            self.buffer[:size] = bytes(size)
            self.control.send(json.dumps({"error": reason}).encode())

    def serve_in_python(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wakeup fd needs a handler
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.wake = (wake_r, wake_w)
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == wake_r:
                    os.read(wake_r, 512)
                    self.reap()
                elif not self.handle_request():
                    return

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = self.children.pop(pid, None)
            if fd is not None:
                try:
                    os.write(fd, STATUS.pack(status))
                except OSError:
                    pass  # the host stopped waiting for it
                os.close(fd)

    def handle_request(self) -> bool:
        """One fork request; False when the host is gone."""
        try:
            size, ancdata, flags, _ = self.control.recvmsg_into([self.buffer], socket.CMSG_LEN(MAX_FDS * 4))
        except OSError:
            return False
        if not size:
            return False
        fds = _received_fds(ancdata)
        del ancdata  # freed before the fork, not after it (see above)
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                raise ValueError(f"a fork request is at most {MAX_REQUEST} bytes and {MAX_FDS} fds")
            pid, in_cgroup = self.fork(size, fds)
            reply = b'{"pid": %d, "in_cgroup": %s}' % (pid, b"true" if in_cgroup else b"false")
        except Exception as exc:  # noqa: BLE001 - a bad request is answered, never fatal
            reply = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            if fds:
                os.close(fds[-1])
        finally:
            for fd in fds[:-1]:  # the status socket (last) stays: it reports the exit
                os.close(fd)
            self.buffer[:size] = bytes(size)  # no instance's token (in its environment) stays here
        self.control.send(reply)
        return True

    def fork(self, size: int, fds: list[int]) -> tuple[int, bool]:
        if len(fds) != 4:
            raise ValueError(f"expected 4 fds (connection, stdout, stderr, status), got {len(fds)}")
        if threading.active_count() != 1:
            raise RuntimeError("the template has started a thread: it can no longer fork safely")
        cut = self.buffer.find(b"\0", 0, size)
        if cut < 0:
            raise ValueError("a fork request starts with the cgroup directory (or nothing) and a NUL byte")
        pid, in_cgroup = fork_into(self.buffer[:cut] or None)
        if pid == 0:
            self._child(cut + 1, size, fds)
        self.children[pid] = fds[3]
        return pid, in_cgroup

    # -- in the child ---------------------------------------------------------------------
    def _child(self, start: int, end: int, fds: list[int]) -> None:
        code = 70
        try:
            request = json.loads(self.buffer[start:end])
            self.buffer.close()  # unmapped: the request (a token in its environment) stays only in `request`
            job_fds = _open_fds() - self.library_fds - {0, 1, 2}
            code = self._become_runner(request, fds, job_fds)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - reported on the process's stderr, like a cold start
            import traceback  # not at the top: linecache and textwrap would run before preload defers them

            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code)

    def _become_runner(self, request: dict[str, Any], fds: list[int], job_fds: set[int]) -> int:
        """Make this fork look like ``python -m runner ARGS`` started fresh, then run it."""
        os.setsid()  # its own session and process group, as start_new_session does
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        conn, out, err, _ = fds
        # fds: 0 /dev/null, 1 and 2 as given, the connection at CONNECTION_FD (inheritable, as
        # pass_fds leaves it), nothing else
        null = os.open(os.devnull, os.O_RDONLY)
        high = fcntl_dup(conn, 64)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.dup2(high, CONNECTION_FD)
        self.control.detach()  # closed below by number; the object must never close a reused fd
        self.children.clear()  # their fds are closed below
        for fd in (job_fds | {null, high}) - {0, 1, 2, CONNECTION_FD}:
            try:
                os.close(fd)
            except OSError:
                pass
        env = {str(k): str(v) for k, v in request["env"].items()}
        _replace_environment(env)
        if request.get("cwd"):
            os.chdir(request["cwd"])
        if request.get("memory_limit") is not None:
            limit = int(request["memory_limit"])
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        sys.path[:] = [os.getcwd(), *_python_path_entries(env), *self.base_path]
        sys.argv = ["-m", *request["args"]]
        # os.environ and sys.argv hold them now: no other copy of a token (forgotten after the
        # handshake, runner/credentials.py) stays in the frames below the runner
        request.clear()
        env.clear()
        if self.runner_main is None:
            runpy._run_module_as_main("runner")  # type: ignore[attr-defined]  # what `python -m` calls
            return 0
        # what runpy._run_module_as_main("runner") does after finding runner/__main__.py, whose
        # spec and code the template found once (~0.6 ms a fork: stats, reading and unmarshalling)
        _, spec, code = self.runner_main
        sys.argv[0] = spec.origin
        runpy._run_code(code, sys.modules["__main__"].__dict__, None, "__main__", spec)  # type: ignore[attr-defined]
        return 0


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup")]


_SYS_CLONE3 = {"x86_64": 435, "aarch64": 435}.get(os.uname().machine)
_CLONE_INTO_CGROUP = 0x200000000
_clone3_works = _SYS_CLONE3 is not None


_LIBC: list[ctypes.PyDLL] = []


def _libc() -> ctypes.PyDLL:
    """libc for clone3, loaded once (PyDLL: the GIL stays held across the call)."""
    if not _LIBC:
        _LIBC.append(ctypes.PyDLL(None, use_errno=True))
    return _LIBC[0]


def fork_into(cgroup: str | bytes | None) -> tuple[int, bool]:
    """``os.fork()``, with the child born in the cgroup directory ``cgroup`` when given and the
    kernel allows it (clone3 CLONE_INTO_CGROUP, Linux 5.7, cgroup v2): moving a process into a
    cgroup later waits for an RCU grace period (1-10 ms here), being born in it does not. The
    Python side of the fork is os.fork's own (PyOS_BeforeFork / PyOS_AfterFork_*: at-fork hooks,
    locks, the random reseed), called with the GIL held. Falls back to os.fork (the host then
    moves the runner) when the cgroup cannot be opened or clone3 is refused."""
    global _clone3_works
    if cgroup is None or not _clone3_works:
        return os.fork(), False
    try:
        dirfd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return os.fork(), False
    number = _SYS_CLONE3
    assert number is not None
    libc = _libc()
    args = _CloneArgs(flags=_CLONE_INTO_CGROUP, exit_signal=signal.SIGCHLD, cgroup=dirfd)
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = int(libc.syscall(ctypes.c_long(number), ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args))))
    if pid == 0:
        api.PyOS_AfterFork_Child()
    else:
        api.PyOS_AfterFork_Parent()
    os.close(dirfd)  # in both: the child must not keep it
    if pid == 0:
        return 0, True
    if pid > 0:
        return pid, True
    _clone3_works = False  # ENOSYS, EPERM, a v1-only cgroup: fork, and the host moves it
    return os.fork(), False


def _compiled_loop() -> Any:
    """runner._warm_serve_c, or None: not built, or SEQUENCE_RUNNER_PURE_PYTHON set (the framer's rule)."""
    if os.environ.get("SEQUENCE_RUNNER_PURE_PYTHON", "").strip().lower() not in ("", "0", "false", "no"):
        return None
    try:
        from runner import _warm_serve_c
    except ImportError:
        return None
    return _warm_serve_c


def _runner_main_details() -> tuple[str, Any, Any] | None:
    try:
        details: tuple[str, Any, Any] = runpy._get_module_details("runner")  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - runpy's own error (and exit) comes from the fork's runpy call
        return None
    return details


def _fork_path_code(runner_main: tuple[str, Any, Any] | None) -> list[Any]:
    """The code a fork runs that the template never runs: this module's side of the fork, the
    at-fork hooks, runpy's, and runner/__main__.py's module and functions."""
    import logging

    functions = [Template.serve_compiled, Template._child, Template._become_runner, _replace_environment, _python_path_entries,
                 _open_fds, fcntl_dup, fork_into, runpy._run_code, socket.socket.detach,  # type: ignore[attr-defined]
                 os._Environ.__setitem__, os._Environ.__delitem__, os._Environ.__iter__,
                 os._Environ.__getitem__, Mapping.get, Mapping.__contains__, Mapping.keys,
                 KeysView.__iter__, MappingView.__init__, weakref.WeakValueDictionary.__init__]
    # the at-fork hooks, and what runs first in a new thread (before a profiler would see it); by
    # name: private, and another Python may not have them all
    for owner, name in ((threading, "_after_fork"), (logging, "_after_at_fork_child_reinit_locks"),
                        (logging.Handler, "_at_fork_reinit"), (threading.Thread, "_reset_internal_locks"),
                        (threading.Thread, "_bootstrap"), (threading.Thread, "_bootstrap_inner"),
                        (threading.Thread, "_set_ident"), (threading.Thread, "_set_native_id"),
                        (threading.Thread, "_set_tstate_lock"), (threading, "_enumerate"),
                        (threading.Condition, "_at_fork_reinit"), (threading.Event, "_at_fork_reinit")):
        function = getattr(owner, name, None)
        if function is not None:
            functions.append(function)
    codes = [f.__code__ for f in functions]
    if runner_main is not None:
        codes.append(runner_main[2])  # runner/__main__.py's module code, and the functions it makes
    return codes


def _replace_environment(env: dict[str, str]) -> None:
    """``os.environ`` (and the C environment a subprocess inherits) becomes ``env``. By difference:
    the Instance's environment is mostly the template's, and every putenv/unsetenv in a fork
    writes (copies) pages; clearing and refilling 40 variables took ~0.6 ms a fork."""
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _received_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
            fds.extend(received)
    return fds


def _open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def fcntl_dup(fd: int, lowest: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)


def main() -> None:
    from runner import deferred_imports

    deferred_imports.install()  # first, as runner/__main__.py does: what only others import runs when used
    control = socket.socket(fileno=int(sys.argv[1]))
    # before the start-up rounds: importing it registers Cython's memoryview types with the
    # collections ABCs, which empties every ABC's negative cache; refilled by the rounds, not by
    # each fork (measured: ~45 more pages a fork when it was imported after them)
    compiled = _compiled_loop()
    from runner.warm import preload
    from runner.warm_codes import fill_malloc_holes, fill_pools

    runner_main = _runner_main_details()
    missing, copies = preload(_fork_path_code(runner_main))
    if runner_main is not None:  # the fork runs the packed copy of runner/__main__.py's code
        name, spec, code = runner_main
        runner_main = (name, spec, copies.get(id(code), code))
    gc.collect()
    fill_pools()  # after the collection, whose garbage leaves free blocks: a fork's objects go elsewhere
    gc.freeze()  # what the template made stays out of the children's collections (no copied pages)
    template = Template(control, runner_main, compiled)
    # last, after everything the template mallocs and frees itself: a fork's mallocs then come
    # from the heap's top, not from holes scattered over pages it shares (~40 pages a fork)
    fill_malloc_holes()
    control.send(json.dumps({"ready": True, "pid": os.getpid(), "missing": missing}).encode())
    template.serve()


if __name__ == "__main__":
    main()
