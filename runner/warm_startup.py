"""A runner's whole start-up, run inside a warm-start template before it forks (runner/warm.py).

Every Instance forked from the template runs the runner's start-up once, after the fork: PING,
the handshake, the Runtime and its parts, the transport's, heartbeat's and stdio's threads,
signals, loading the Sequence, PANG, the loop and the first heartbeat with a verdict. Code that
CPython 3.11 runs for the first times is written into (its warm-up count, then its quickened
bytecode and the counters of its specialising instructions), and the type attribute cache fills
with what it looks up: done in a fork, each copies pages the fork shared with the template. So
the template runs that start-up itself, against a host of its own on a socketpair (a thread
here), with runner/warm_sequence.py as the Sequence, and then undoes everything it changed in
the process: threads joined, fds closed, fds 1 and 2, ``sys.std*``, signal handlers, loggers,
cwd, ``sys.path`` and ``sys.modules`` as they were. ``ProcessState.check`` raises if anything is
left that a fork would inherit.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from .logs import RUNNER_LOGGER, SEQUENCE_LOGGER
from .protocol import NEED_DATA, Channel, Event, Monitoring, Ping, Pong, Role
from .protocol.connection import Connection

#: Bounds every wait of a round: a round that takes longer is a bug, and the template fails to start.
ROUND_TIMEOUT = 10.0
SEQUENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "warm_sequence.py")
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_ENDED_BY_THE_HOST = frozenset({"runner-reader", "runner-writer", "runner-heartbeat"})


class StartupError(RuntimeError):
    """A start-up round failed or left something behind: the template must not fork."""


class _Host(threading.Thread):
    """The host's side: PONG for PING; the Sequence's event once a heartbeat carries a verdict
    (the loop runs and answered the health probe); the end of IN once the Sequence answered."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(name="warm-host", daemon=True)
        self.sock = sock
        self.error: BaseException | None = None
        self._conn = Connection(Role.HOST)
        self._asked = False

    def run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # noqa: BLE001 - handed to the round, which raises it
            self.error = exc

    def _serve(self) -> None:
        conn, sock = self._conn, self.sock
        sock.settimeout(ROUND_TIMEOUT)
        while data := sock.recv(65536):
            conn.receive_data(data, time.monotonic())
            while (event := conn.next_event()) is not NEED_DATA:
                self._answer(event)
            if conn.bytes_to_send:
                sock.sendall(b"".join(bytes(buf) for buf in conn.data_to_send()))

    def _answer(self, event: Any) -> None:
        conn = self._conn
        if isinstance(event, Ping):
            conn.send(Pong(app_config={}, args=[]))
        elif isinstance(event, Monitoring) and "loopLagMs" in (event.stats or {}) and not self._asked:
            self._asked = True
            conn.send(Event(name="ping", message={"warm": True}))
        elif isinstance(event, Event) and event.name == "pong":
            conn.send_end(int(Channel.IN))

    def close(self) -> None:
        """The host goes away (the runner's writes fail from now on, as when a host dies)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _KeepProcess:
    """The ControlHandler, except that the end of the connection does not end the process."""

    def __init__(self, control: Any) -> None:
        self.on_message = control.on_message
        self.on_data = control.on_data
        self.on_end = control.on_end

    def on_closed(self, error: BaseException | None) -> None:
        pass


def startup_round(use_uvloop: bool) -> None:
    """One runner start-up, from PING to the Sequence's end, and everything undone after it."""
    state = ProcessState()
    host_end, runner_end = socket.socketpair()
    host = _Host(host_end)
    sock = socket.socket(fileno=os.dup(runner_end.fileno()))
    runner_end.close()
    try:
        host.start()
        _run_runner(sock, host, use_uvloop)
    finally:
        host.close()
        host.join(ROUND_TIMEOUT)
        host_end.close()
        sock.close()
        state.restore()
    if host.error is not None:
        raise StartupError(f"the start-up round's host failed: {host.error!r}") from host.error
    state.check()


def _run_runner(sock: socket.socket, host: _Host, use_uvloop: bool) -> None:
    """What runner/__main__.py, App.run and Runtime.run do, in order, up to the loop."""
    from . import loop, signals
    from .app import App
    from .config import parse
    from .credentials import TOKEN_ENV, forget_token
    from .hello import send_ping
    from .logs import setup
    from .runtime import Runtime
    from .sequence.context import AppContext
    from .sequence.topics import declared_topics
    from .stdio import install_breakpoint_hint
    from .transport.native import NativeTransport

    secret = "warm-" + os.urandom(8).hex()
    settings = parse(["--fd", str(sock.fileno()), "--instance-id", "warm", "--sequence", SEQUENCE],
                     {TOKEN_ENV: secret})
    sent = send_ping(settings)
    sock.settimeout(None)
    transport = NativeTransport(sock, sent_ping=sent.frame)
    pong = App(settings, transport, sent).handshake()
    signals.handshake_done()
    if TOKEN_ENV not in os.environ:  # it pops the variable: never the template's own
        forget_token(settings.token)
    settings.token = ""
    sent.forget()
    runtime = Runtime(settings, transport)
    setup(transport.writer(Channel.LOG), settings.log_level)
    transport.start(_KeepProcess(runtime.control))
    runtime.heartbeat.start()
    runtime.stdio.install()
    install_breakpoint_hint()
    signals.install()
    signals.hand_over(runtime.stops.on_signal)
    runtime.runner_log.info("connected; loading %s", settings.sequence)
    seq = runtime.load()
    runtime.load_topics = declared_topics(seq)
    runtime.announcer.loaded(runtime.load_topics)
    context = AppContext(runtime.backend, config=pong.app_config or {}, instance_id=settings.instance_id,
                         logger=runtime.sequence_log, exit_timeout_ms=transport.exit_timeout_ms)
    runtime.exits.use_kill_handlers(context.run_kill_handlers)
    try:
        loop.run(_serve(runtime, seq, context, host), use_uvloop)
    finally:
        runtime.stdio.flush(ROUND_TIMEOUT)  # fds 1 and 2 to /dev/null: the pumps read to the end and end
        if runtime.stdio.pump is not None:
            runtime.stdio.pump.release()
        transport.close()


async def _serve(runtime: Any, seq: Any, context: Any, host: _Host) -> None:
    """Runtime._main up to the Sequence's end, then the host goes and the runner's threads end."""
    import asyncio

    from .loop import TaskSet

    main = asyncio.current_task()
    assert main is not None
    bridge = runtime.attach_loop(TaskSet(main), context)
    await asyncio.wait_for(runtime._guard(runtime._run_sequence(bridge, seq, context, [])), ROUND_TIMEOUT)
    host.close()
    runtime.heartbeat.set_rate(1000.0)  # its next beats find the connection broken, and it ends
    deadline = time.monotonic() + ROUND_TIMEOUT
    while _runner_threads() and time.monotonic() < deadline:
        await asyncio.sleep(0.001)


def _runner_threads() -> list[threading.Thread]:
    """The transport's and the heartbeat's (the fd pumps end with stdio's flush, after the loop)."""
    return [t for t in threading.enumerate() if t.name in _ENDED_BY_THE_HOST]


class ProcessState:
    """What a start-up round changes in the process, saved before it and put back after it."""

    def __init__(self) -> None:
        from . import stdio

        self.fds = _open_fds()
        self.cwd = os.getcwd()
        self.path = list(sys.path)
        self.modules = set(sys.modules)
        self.importer_cache = set(sys.path_importer_cache)
        self.streams = (sys.stdin, sys.stdout, sys.stderr, sys.breakpointhook)
        self.handlers = {sig: signal.getsignal(sig) for sig in _SIGNALS}
        self.saved_fds = {fd: os.dup(fd) for fd in (1, 2) if fd in self.fds}
        self.original_stderr_fd = stdio._original_stderr_fd
        self.loggers = {name: _logger_state(name) for name in (RUNNER_LOGGER, SEQUENCE_LOGGER)}

    def restore(self) -> None:
        from . import signals, stdio

        for fd, saved in self.saved_fds.items():
            os.dup2(saved, fd)
            os.close(saved)
        if stdio._original_stderr_fd != self.original_stderr_fd and stdio._original_stderr_fd is not None:
            os.close(stdio._original_stderr_fd)
        stdio._original_stderr_fd = self.original_stderr_fd
        sys.stdin, sys.stdout, sys.stderr, sys.breakpointhook = self.streams
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)
        signals._handler = None
        signals._handshake_done = False
        del signals._pending[:]
        for name, logger_state in self.loggers.items():
            _restore_logger(name, logger_state)
        os.chdir(self.cwd)
        sys.path[:] = self.path
        for name in set(sys.modules) - self.modules:
            if name.startswith("sequence_"):  # the Sequence's module; imports of the runner's own stay
                del sys.modules[name]
        for key in set(sys.path_importer_cache) - self.importer_cache:
            del sys.path_importer_cache[key]

    def check(self) -> None:
        threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        left = sorted(_open_fds() - self.fds)
        if threads or left:
            raise StartupError(f"a start-up round left threads {threads} and fds {left} behind")


def _open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def _logger_state(name: str) -> tuple[bool, int, list[logging.Handler], bool, bool] | None:
    logger = logging.Logger.manager.loggerDict.get(name)
    if not isinstance(logger, logging.Logger):
        return None
    return True, logger.level, list(logger.handlers), logger.propagate, logger.disabled


def _restore_logger(name: str, saved: tuple[bool, int, list[logging.Handler], bool, bool] | None) -> None:
    logger = logging.getLogger(name)
    if saved is None:  # made by the round: back as a cold runner makes it
        saved = (True, logging.NOTSET, [], True, False)
    _, level, handlers, propagate, disabled = saved
    logger.handlers[:] = handlers
    logger.propagate = propagate
    logger.disabled = disabled
    logger.setLevel(level)
