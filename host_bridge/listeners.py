"""Sockets runners connect to, and what is kept about connections that were refused.

A listener is a unix socket or a TCP port. Every accepted connection must send
its PING within the handshake timeout; at most ``max_pending`` connections may
be in that phase at once (each holds a task and a file descriptor), so a flood
of connections that never say anything cannot use up the hub's descriptors:
the ones over the cap are closed unread and counted, and ``Bridge.spawn`` keeps
working.

Unix sockets are created 0600 whatever the umask: the socket is bound inside a
fresh 0700 directory (``tempfile.mkdtemp``) and, when the caller named a path,
renamed into place, so there is no moment at which it is reachable with the
umask's mode. Without a path it stays in that private directory.

Refusals are kept for the hub to inspect, bounded by count and by bytes; text
the peer chose (the instance id it claimed) is cut to ``PEER_TEXT`` characters.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc

from .errors import BridgeError
from .link import SocketStream, notify_closing, wait_readable

#: Characters of peer-supplied text (a claimed instance id) kept in a refusal.
PEER_TEXT = 64
#: Refusals kept in ``Bridge.refused`` (the oldest go first), and their total text.
MAX_REFUSALS = 256
MAX_REFUSAL_BYTES = 64 * 1024
#: Connections that may be waiting for their PING at once, across the bridge's listeners.
MAX_PENDING_HANDSHAKES = 64


def peer_text(value: object) -> str:
    """``repr(value)`` cut to PEER_TEXT characters, saying how long it was."""
    text = repr(value)
    if len(text) <= PEER_TEXT:
        return text
    size = len(value) if isinstance(value, (str, bytes)) else len(text)
    return f"{text[:PEER_TEXT]}... ({size} characters)"


@dataclass(frozen=True)
class Refusal:
    """A connection the bridge refused (kept in ``Bridge.refused`` for the hub to inspect).

    ``instance_id`` is the id the peer claimed, cut to PEER_TEXT characters."""

    instance_id: str | None
    reason: str


class Refusals:
    """The refused connections: the newest ``max_count`` kept, at most ``max_bytes`` of text."""

    def __init__(self, max_count: int = MAX_REFUSALS, max_bytes: int = MAX_REFUSAL_BYTES) -> None:
        self.items: list[Refusal] = []
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.total = 0  # every refusal ever
        self.dropped = 0  # refusals no longer in ``items``
        self._bytes = 0

    def add(self, instance_id: str | None, reason: str) -> None:
        kept_id = instance_id if instance_id is None or len(instance_id) <= PEER_TEXT else peer_text(instance_id)
        refusal = Refusal(kept_id, reason[: self.max_bytes // 4])
        self.items.append(refusal)
        self._bytes += _size(refusal)
        self.total += 1
        cut = 0
        while len(self.items) - cut > self.max_count or (self._bytes > self.max_bytes and cut < len(self.items)):
            self._bytes -= _size(self.items[cut])
            cut += 1
        if cut:
            del self.items[:cut]
            self.dropped += cut


def _size(refusal: Refusal) -> int:
    return len(refusal.reason) + len(refusal.instance_id or "")


def bind_unix(path: str | None) -> tuple[socket.socket, str, str | None]:
    """A listening unix socket, mode 0600 from the start; (socket, its path, private dir to remove)."""
    parent = None
    if path is not None:
        try:
            existing = os.lstat(path)
        except FileNotFoundError:
            existing = None
        if existing is not None and not stat.S_ISSOCK(existing.st_mode):
            raise BridgeError(f"cannot listen on {path}: it exists and is not a socket")
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, mode=0o700, exist_ok=True)
    private = tempfile.mkdtemp(prefix="hb-", dir=parent)  # always 0700
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _bind_private(sock, private)
        sock.listen(128)
        sock.setblocking(False)
        inner = os.path.join(private, _INNER)
        if path is None:
            return sock, inner, private
        os.replace(inner, path)  # atomic; replaces a stale socket of a previous run
    except BaseException:
        sock.close()
        shutil.rmtree(private, ignore_errors=True)
        raise
    os.rmdir(private)
    return sock, path, None


_INNER = "runner.sock"


def _bind_private(sock: socket.socket, directory: str) -> None:
    """Bind ``sock`` to ``directory/_INNER`` and make it 0600 (nobody else can reach it yet: the
    directory is 0700). Through /proc/self/fd where there is one, so a long directory name does
    not hit the ~107-byte limit of a socket address."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        via_fd = f"/proc/self/fd/{fd}/{_INNER}"
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            sock.bind(via_fd)
        else:  # pragma: no cover - no /proc (macOS)
            sock.bind(os.path.join(directory, _INNER))
        os.chmod(_INNER, 0o600, dir_fd=fd)
    finally:
        os.close(fd)


def bind_tcp(host: str, port: int) -> socket.socket:
    sock = socket.create_server((host, port), reuse_port=False)
    sock.setblocking(False)
    return sock


class Listener:
    """A unix socket or TCP port runners connect to (``--connect <address>``)."""

    def __init__(
        self,
        sock: socket.socket,
        address: str,
        path: str | None,
        private_dir: str | None,
        handle: Callable[[SocketStream], Awaitable[None]],
        pending: PendingHandshakes,
    ) -> None:
        self._sock = sock
        self.address = address
        self._path = path
        self._private_dir = private_dir
        self._handle = handle
        self._pending = pending
        self._scope = anyio.CancelScope()
        self._closed = False

    async def _serve(self, tg: anyio.abc.TaskGroup) -> None:
        sock = self._sock
        with self._scope:
            while not self._closed:
                try:
                    client, _addr = sock.accept()
                except (BlockingIOError, InterruptedError):
                    try:
                        await wait_readable(sock)
                    except anyio.ClosedResourceError:
                        return
                    continue
                except OSError:
                    if self._closed:
                        return
                    await anyio.sleep(0.05)  # e.g. out of file descriptors: do not spin
                    continue
                if not self._pending.admit(client):
                    continue
                tg.start_soon(self._handshake, SocketStream(client))

    async def _handshake(self, stream: SocketStream) -> None:
        try:
            await self._handle(stream)
        finally:
            self._pending.done()

    async def aclose(self) -> None:
        self._closed = True
        self._scope.cancel()
        if notify_closing is not None:
            try:
                notify_closing(self._sock)
            except Exception:  # noqa: BLE001, S110 - nothing was waiting
                pass
        self._sock.close()
        await anyio.lowlevel.checkpoint()
        if self._path is not None:
            try:
                os.unlink(self._path)
            except OSError:
                pass
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)


class PendingHandshakes:
    """How many accepted connections wait for their PING; the ones over the cap are closed unread."""

    def __init__(self, limit: int, refusals: Refusals) -> None:
        self.limit = limit
        self.count = 0
        self.turned_away = 0
        self._refusals = refusals

    def admit(self, client: socket.socket) -> bool:
        if self.count >= self.limit:
            client.close()
            self.turned_away += 1
            self._refusals.add(None, f"too many connections waiting for their handshake ({self.limit}); closed unread")
            return False
        self.count += 1
        return True

    def done(self) -> None:
        self.count -= 1
