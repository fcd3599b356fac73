"""host_bridge's own socket data path: SocketStream writes, kept payload views, ByteChannel hand-over,
and input buffers that must not be read after the caller changed them."""

from __future__ import annotations

import os
import socket
import threading

import anyio
import anyio.lowlevel
import pytest
from hb_helpers import collect, spawn_fake

from host_bridge import Bridge
from host_bridge.channels import ByteChannel, keepable
from host_bridge.inputs import YIELD_EVERY
from host_bridge.link import SocketStream

pytestmark = pytest.mark.anyio


def _drain(sock: socket.socket, total: int, out: bytearray) -> None:
    sock.setblocking(True)
    while len(out) < total:
        chunk = sock.recv(7919)  # small odd reads: the writer sees many partial writes
        if not chunk:
            return
        out += chunk


async def test_send_all_resumes_partial_writes() -> None:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stream = SocketStream(ours)
    payload = os.urandom(3 << 20)
    buffers = [payload[:5], memoryview(payload)[5 : 1 << 20], b"", bytearray(payload[1 << 20 : 2 << 20]),
               payload[2 << 20 :]]
    got = bytearray()
    reader = threading.Thread(target=_drain, args=(theirs, len(payload), got))
    reader.start()
    try:
        with anyio.fail_after(20):
            await stream.send_all(buffers)
    finally:
        await anyio.to_thread.run_sync(reader.join)
        await stream.aclose()
        theirs.close()
    assert bytes(got) == payload


async def test_receive_and_close_wakes_waiter() -> None:
    ours, theirs = socket.socketpair()
    stream = SocketStream(ours)
    theirs.sendall(b"abc")
    assert await stream.receive() == b"abc"
    theirs.close()
    assert await stream.receive() == b""
    await stream.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await stream.receive()


def test_keepable_keeps_large_views_of_bytes_and_copies_the_rest() -> None:
    buf = bytes(range(256)) * 1024  # 256 KiB, like one read
    big = memoryview(buf)[100 : 100 + (1 << 16)]
    assert keepable(big) is big
    small = memoryview(buf)[:100]
    kept = keepable(small)
    assert type(kept) is bytes and kept == buf[:100]  # would pin 256 KiB for 100 bytes
    mutable = memoryview(bytearray(buf))[: 1 << 17]
    assert type(keepable(mutable)) is bytes
    assert keepable(buf) is buf


def test_byte_channel_hands_out_bytes_without_joining_large_chunks() -> None:
    consumed: list[int] = []
    channel = ByteChannel(5, lambda ch, n: consumed.append(n))
    whole = os.urandom(1 << 16)
    read = os.urandom(1 << 18)
    channel.feed(memoryview(whole))  # a payload that is a whole bytes object
    channel.feed(memoryview(read)[: 1 << 17])  # a large slice of a read
    for i in range(3):
        channel.feed(memoryview(read)[(1 << 17) + i * 10 : (1 << 17) + i * 10 + 10])
    first = channel.receive_nowait()
    assert first is whole  # no copy at all
    second = channel.receive_nowait()
    assert type(second) is bytes and second == read[: 1 << 17]
    third = channel.receive_nowait()
    assert type(third) is bytes and third == read[1 << 17 : (1 << 17) + 30]  # small ones joined
    assert channel.receive_nowait() == b""
    channel.end()
    assert channel.receive_nowait() is None
    assert sum(consumed) == (1 << 16) + (1 << 17) + 30


async def test_mutable_input_buffers_are_not_read_after_write_returns(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    assert await inst.wait_started()
    expected = bytearray()
    data = bytearray(b"a" * 300_000)  # more than the fake runner's window: some waits for credit
    await inst.write_input(data, content_type="application/octet-stream")
    expected += data
    data[:] = b"b" * len(data)  # the caller reuses its buffer at once
    view = memoryview(bytearray(b"c" * 70_000))
    await inst.write_input(view)
    expected += view
    view[:] = b"d" * len(view)
    ro = memoryview(b"e" * 80_000)  # a view of bytes is kept as it is
    await inst.write_input(ro)
    expected += ro
    await inst.end_input()
    with anyio.fail_after(30):
        out = await collect(inst.output())
        assert await inst.wait() == 0
    assert out == bytes(expected)


async def test_concurrent_writers_do_not_interleave_partial_writes(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    assert await inst.wait_started()
    blocks = [bytes([65 + i]) * 200_000 for i in range(4)]  # each larger than the fake's window
    async with anyio.create_task_group() as tg:
        for block in blocks:
            tg.start_soon(inst.write_input, block)
    await inst.end_input()
    with anyio.fail_after(30):
        out = await collect(inst.output())
        assert await inst.wait() == 0
    assert len(out) == 800_000
    runs = [out[i : i + 200_000] for i in range(0, len(out), 200_000)]
    assert sorted(runs) == sorted(blocks)  # every block whole, in some order


async def test_large_bulk_roundtrip_is_exact(bridge: Bridge) -> None:
    inst = await spawn_fake(bridge)
    assert await inst.wait_started()
    payload = os.urandom(8 << 20)

    async def write() -> None:
        view = memoryview(payload)
        for start in range(0, len(payload), 1 << 16):
            await inst.write_input(view[start : start + (1 << 16)])
        await inst.end_input()

    got = bytearray()
    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        with anyio.fail_after(60):
            async for chunk in inst.output():
                assert type(chunk) is bytes
                got += chunk
    assert bytes(got) == payload


async def test_writes_that_never_wait_still_let_other_tasks_run_and_stay_in_order(bridge: Bridge) -> None:
    """write_input yields to other tasks on every YIELD_EVERY-th write that need not wait (not on
    every one): a writer that never waits cannot starve the rest of the program, and the chunks
    arrive whole and in order."""
    inst = await spawn_fake(bridge)
    assert await inst.wait_started()
    await inst.write_input(b"", content_type="application/octet-stream")
    chunks = [b"%05d" % i * 20 for i in range(YIELD_EVERY * 10)]  # 100 B each: well within credit
    turns = 0
    stop = anyio.Event()

    async def other_task() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other_task)
        await anyio.lowlevel.checkpoint()
        before = turns
        for chunk in chunks:
            await inst.write_input(chunk)
        ran = turns - before
        stop.set()
    # Once per yield of the writer; one fewer at the edges, as trio orders the tasks it runs
    # in one batch at random. A writer that never yielded would let it run at most once.
    assert ran >= len(chunks) // YIELD_EVERY - 1
    await inst.end_input()
    with anyio.fail_after(30):
        out = await collect(inst.output())
        assert await inst.wait() == 0
    assert out == b"".join(chunks)


async def test_every_write_is_a_cancellation_point(bridge: Bridge) -> None:
    """A write in a cancelled scope raises before anything is queued, also on the writes that do
    not yield to other tasks: nothing of it reaches the Sequence."""
    inst = await spawn_fake(bridge)
    assert await inst.wait_started()
    await inst.write_input(b"first;", content_type="application/octet-stream")
    written = 0
    with anyio.CancelScope() as scope:
        scope.cancel()
        for _ in range(YIELD_EVERY + 1):
            try:
                await inst.write_input(b"lost;")
            except anyio.get_cancelled_exc_class():
                continue
            written += 1
    assert written == 0
    await inst.write_input(b"last")
    await inst.end_input()
    with anyio.fail_after(30):
        out = await collect(inst.output())
        assert await inst.wait() == 0
    assert out == b"first;last"
