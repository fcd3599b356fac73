"""Input sent with os.sendfile (``write_input_file``) and output spliced into a pipe (``splice_output``):
every byte through, in order, beside the ordinary paths; a pipe that stops being read, a reader that
goes away, events and KILL in the middle of a transfer; and nothing written between a frame's header
and its payload."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import anyio
import pytest
from hb_helpers import collect, real_runner_available, spawn_fake
from received_into import count_received_into

from host_bridge import Bridge, ChannelClosed, Instance, InstanceNotRunning
from host_bridge.link import Link, SocketStream
from host_bridge.splice import PipeSplice
from runner.protocol import Channel, Event, Ping, Pong, Role
from runner.protocol.connection import Connection
from runner.protocol.framer import KIND_CREDIT, KIND_DATA, FrameDecoder

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(os, "splice") or not hasattr(os, "sendfile"), reason="Linux splice/sendfile"),
]
ROOT = Path(__file__).resolve().parent.parent.parent
PASSTHROUGH = str(ROOT / "sample_sequences" / "binary-passthrough")
OCTET = "application/octet-stream"
needs_runner = pytest.mark.skipif(not real_runner_available(), reason="python -m runner is not available")


class PipeReader:
    """The read end of a pipe drained by a thread, which can pause (a slow or stopped reader)."""

    def __init__(self, keep: bool = False) -> None:
        self.read_fd, self.write_fd = os.pipe()
        fcntl.fcntl(self.write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)  # as run does
        self.kept = bytearray() if keep else None
        self.digest = hashlib.sha256()
        self.nbytes = 0
        self.go = threading.Event()
        self.go.set()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.go.wait()
            data = os.read(self.read_fd, 1 << 16)
            if not data:
                return
            self.digest.update(data)
            self.nbytes += len(data)
            if self.kept is not None:
                self.kept += data

    def finish(self) -> str:
        os.close(self.write_fd)
        self._thread.join(30)
        os.close(self.read_fd)
        return self.digest.hexdigest()


class Writer:
    """What ``run`` does with output(): a thread writes it to the pipe; idle when all is written."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.unwritten = 0
        self.through_output = 0
        self.lock = threading.Lock()

    def idle(self) -> bool:
        return self.unwritten == 0

    async def pump(self, inst: Instance) -> None:
        async for chunk in inst.output():
            self.through_output += len(chunk)
            with self.lock:
                self.unwritten += 1
            await anyio.to_thread.run_sync(self._write, chunk)

    def _write(self, chunk: bytes) -> None:
        try:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self.fd, view):]
        finally:
            with self.lock:
                self.unwritten -= 1


def _file(tmp_path: Path, size: int) -> tuple[int, str]:
    data = os.urandom(size)
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY), hashlib.sha256(data).hexdigest()


async def _through_kernel(inst: Instance, fd: int, reader: PipeReader,
                          cut: bool = False) -> tuple[Writer, PipeSplice | None]:
    """Send the file with sendfile, splice the output into the reader's pipe (after the first chunk,
    as ``run`` does); return the writer and the splicer. ``cut``: the Instance may end first."""
    writer = Writer(reader.write_fd)
    spliced: list[int] = []
    assert await inst.wait_started()
    ended = (ChannelClosed, InstanceNotRunning) if cut else ()

    async def feed() -> None:
        try:
            sent = await inst.write_input_file(fd, content_type=OCTET)
            assert sent == os.fstat(fd).st_size
            await inst.end_input()
        except ended:
            pass

    async def pump() -> None:
        async for first in inst.output():
            assert inst.splice_output(reader.write_fd, writer.idle, spliced.append, lambda: None)
            writer.through_output += len(first)
            writer.unwritten += 1
            await anyio.to_thread.run_sync(writer._write, first)
            break
        await writer.pump(inst)

    async with anyio.create_task_group() as tg:
        tg.start_soon(feed)
        tg.start_soon(pump)
    assert inst._link is not None
    return writer, inst._link.splice


@needs_runner
async def test_sendfile_in_and_splice_out_keep_every_byte(bridge: Bridge, tmp_path: Path) -> None:
    fd, digest = _file(tmp_path, 24 << 20)
    inst = await bridge.spawn(PASSTHROUGH)
    reader = PipeReader()
    try:
        with anyio.fail_after(60):
            writer, splice = await _through_kernel(inst, fd, reader)
            assert await inst.wait() == 0
    finally:
        os.close(fd)
    assert reader.finish() == digest and reader.nbytes == 24 << 20
    assert splice is not None and splice.spliced > 0  # the fast path carried bytes
    assert splice.spliced + writer.through_output <= 24 << 20


@needs_runner
async def test_a_pipe_that_stops_being_read_gets_the_rest_in_order(bridge: Bridge, tmp_path: Path) -> None:
    """The reader pauses mid-transfer: the splice waits PIPE_STALL at most, the rest of the frame and
    the frames after it go through output() and the writer, and the pipe gets it all in order."""
    fd, digest = _file(tmp_path, 24 << 20)
    inst = await bridge.spawn(PASSTHROUGH)
    reader = PipeReader()

    async def pause() -> None:
        while reader.nbytes < 4 << 20:
            await anyio.sleep(0.005)
        reader.go.clear()
        await anyio.sleep(1.0)
        reader.go.set()

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pause)
                writer, splice = await _through_kernel(inst, fd, reader)
            assert await inst.wait() == 0
    finally:
        os.close(fd)
    assert reader.finish() == digest
    assert splice is not None and splice.spliced > 0 and writer.through_output > 1 << 20


@needs_runner
async def test_kill_in_the_middle_of_a_spliced_transfer(bridge: Bridge, tmp_path: Path) -> None:
    """KILL while frames are being spliced: the Instance ends, and what reached the pipe is the
    start of the input, in order."""
    fd, _ = _file(tmp_path, 64 << 20)
    data = (tmp_path / "in.bin").read_bytes()
    inst = await bridge.spawn(PASSTHROUGH)
    reader = PipeReader(keep=True)

    async def kill_midway() -> None:
        while reader.nbytes < 8 << 20:
            await anyio.sleep(0.005)
        await inst.kill()

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(kill_midway)
                tg.start_soon(_through_kernel, inst, fd, reader, True)
            await inst.wait()
    finally:
        os.close(fd)
    reader.finish()
    assert inst.done.is_set() and inst.kill_requested
    assert reader.kept is not None and len(reader.kept) >= 8 << 20
    assert reader.kept == data[: len(reader.kept)]


async def test_splice_output_needs_a_pipe(bridge: Bridge, tmp_path: Path) -> None:
    inst = await spawn_fake(bridge)
    assert await inst.wait_started()
    regular = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)
    try:
        assert not inst.splice_output(regular, lambda: True, lambda n: None, lambda: None)
    finally:
        os.close(regular)
    await inst.end_input()
    with anyio.fail_after(30):
        assert await collect(inst.output()) == b""
        assert await inst.wait() == 0


def _connected_pair() -> tuple[Connection, Connection]:
    runner, host = Connection(Role.RUNNER), Connection(Role.HOST, window=1 << 16)
    runner.send(Ping(instance_id="i", token="t"))
    host.receive_data(b"".join(bytes(b) for b in runner.data_to_send()))
    assert isinstance(host.next_event(), Ping)
    host.send(Pong())
    runner.receive_data(b"".join(bytes(b) for b in host.data_to_send()))
    assert isinstance(runner.next_event(), Pong)
    return runner, host


async def test_nothing_comes_between_a_sent_file_frame_s_header_and_its_payload(tmp_path: Path) -> None:
    """send_file waits for earlier writes; credit queued meanwhile must go before the header or
    after the payload (it once went between them, and the runner read it as payload)."""
    ours, theirs = socket.socketpair()
    _, host = _connected_pair()
    failures: list[str] = []
    link = Link(SocketStream(ours), host, lambda events: None, lambda text, _: failures.append(text))
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)  # the event below cannot go at once
    size = 200_000
    fd, _ = _file(tmp_path, size)
    payload = (tmp_path / "in.bin").read_bytes()
    received = bytearray()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(link.run)
            host.send(Event(name="big", message="x" * 900_000))  # more than the socket takes at once
            link.flush()
            assert link._pending  # the writer task finishes it
            tg.start_soon(link.send_file, Channel.IN, fd, 0, size)
            await anyio.sleep(0.05)
            host.consumed(Channel.OUT, 1 << 16)  # credit queued while send_file waits
            link.flush()
            drainer = threading.Thread(target=_drain_socket, args=(theirs, received, 900_000 + size), daemon=True)
            drainer.start()
            with anyio.fail_after(10):
                while drainer.is_alive():
                    await anyio.sleep(0.01)
            link.abort()
    finally:
        os.close(fd)
        theirs.close()
    frames = FrameDecoder(1 << 20).decode(bytes(received))
    data = [bytes(p) for kind, ch, _, p in frames if kind == KIND_DATA]
    assert data == [payload] and not failures
    assert [ch for kind, ch, _, _ in frames if kind == KIND_CREDIT] == [Channel.OUT]


def _drain_socket(sock: socket.socket, out: bytearray, at_least: int) -> None:
    sock.settimeout(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            return
        if not chunk:
            return
        out += chunk
        if len(out) >= at_least + 7 + 7 + 10:  # the credit, the data header, the message header
            return


@needs_runner
async def test_large_output_frames_are_received_into_their_own_buffers(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a splice, a large payload cut by a read is received straight into its buffer (the
    Link's recv_into): the bytes still come through output() whole and in order."""
    into = count_received_into(monkeypatch)
    blocks = [os.urandom(1 << 20) for _ in range(12)]
    inst = await bridge.spawn(PASSTHROUGH, window=8 << 20)
    assert await inst.wait_started()

    async def feed() -> None:
        for block in blocks:
            await inst.write_input(block, content_type=OCTET)
        await inst.end_input()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(feed)
            out = await collect(inst.output())
        assert await inst.wait() == 0
    assert hashlib.sha256(out).digest() == hashlib.sha256(b"".join(blocks)).digest()
    assert sum(into) > len(out) // 2


@needs_runner
async def test_a_pipe_reader_that_goes_away_ends_splicing_and_the_run_completes(
    bridge: Bridge, tmp_path: Path
) -> None:
    """EPIPE in the middle of a spliced frame: on_gone is told once, the rest of the output is
    dropped through output()'s discard (credit flows back), and the Sequence completes."""
    fd, _ = _file(tmp_path, 32 << 20)
    inst = await bridge.spawn(PASSTHROUGH)
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    gone: list[bool] = []
    writer = Writer(write_fd)
    assert await inst.wait_started()

    def on_gone() -> None:
        gone.append(True)
        inst.discard("output")

    async def feed() -> None:
        await inst.write_input_file(fd, content_type=OCTET)
        await inst.end_input()

    async def pump() -> None:
        async for first in inst.output():
            assert inst.splice_output(write_fd, writer.idle, lambda n: None, on_gone)
            del first  # not written: the reader is about to go
            break
        os.close(read_fd)  # the reader goes away with frames in flight
        async for _ in inst.output():
            pass  # whatever came before the discard

    try:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed)
                tg.start_soon(pump)
            assert await inst.wait() == 0
    finally:
        os.close(fd)
        os.close(write_fd)
    assert gone == [True]
    assert inst._link is not None and inst._link.splice is not None and not inst._link.splice.active
