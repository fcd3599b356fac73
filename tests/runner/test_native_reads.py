"""The runner's reader thread receives large payloads straight into their own buffers (recv_into a
pending payload): every input byte arrives, in order, in whole frames, with small frames and
messages between them, whichever framer is in use."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import pytest
from received_into import count_received_into

from runner.protocol import Channel, Connection, Event, Ping, Pong, Role
from runner.protocol.events import Message
from runner.transport.native import NativeTransport

pytestmark = pytest.mark.timeout(60)


class Collector:
    def __init__(self) -> None:
        self.chunks: dict[int, list[bytes]] = {int(Channel.IN): [], int(Channel.STDIN): []}
        self.messages: list[Message] = []
        self.ended: list[int] = []
        self.closed = threading.Event()

    def on_message(self, message: Message) -> None:
        self.messages.append(message)

    def on_data(self, channel: int, chunks: list[bytes]) -> None:
        self.chunks[channel].extend(chunks)

    def on_end(self, channel: int) -> None:
        self.ended.append(channel)

    def on_closed(self, error: BaseException | None) -> None:
        assert error is None
        self.closed.set()


def _send(sock: socket.socket, host: Connection, pace: bool) -> None:
    data = b"".join(bytes(b) for b in host.data_to_send())
    if not pace:
        sock.sendall(data)
        return
    for start in range(0, len(data), 100_003):  # cut anywhere, with pauses: reads end inside payloads
        sock.sendall(data[start:start + 100_003])
        time.sleep(0.001)


@pytest.mark.parametrize("pace", [False, True])
def test_large_payloads_arrive_whole_and_in_order(pace: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    into = count_received_into(monkeypatch)
    ours, theirs = socket.socketpair()
    transport = NativeTransport(theirs, window=64 << 20)
    host = Connection(Role.HOST, window=1 << 20)
    handler = Collector()
    pong_sent = threading.Event()

    def host_side() -> None:
        data = ours.recv(1 << 16)
        host.receive_data(data)
        assert isinstance(host.next_event(), Ping)
        host.send(Pong())
        ours.sendall(b"".join(bytes(b) for b in host.data_to_send()))
        pong_sent.set()

    thread = threading.Thread(target=host_side)
    thread.start()
    transport.handshake(Ping(instance_id="i", token="t"), 10)
    thread.join()
    assert pong_sent.is_set()
    transport.start(handler)
    payloads = [os.urandom(1 << 20) for _ in range(6)] + [os.urandom(300_001), os.urandom(70_000)]
    stdin = []
    for i, payload in enumerate(payloads):
        host.send_data(Channel.IN, payload)
        host.send_data(Channel.STDIN, b"s%d" % i)
        host.send(Event(name="between", message=i))
        _send(ours, host, pace)
        stdin.append(b"s%d" % i)
    host.send_end(Channel.IN)
    _send(ours, host, pace)
    ours.shutdown(socket.SHUT_WR)
    assert handler.closed.wait(30)
    transport.close()
    ours.close()
    got = handler.chunks[int(Channel.IN)]
    assert all(type(chunk) is bytes for chunk in got)
    assert hashlib.sha256(b"".join(got)).digest() == hashlib.sha256(b"".join(payloads)).digest()
    assert [len(c) for c in got] == [len(p) for p in payloads]  # whole frames, never joined or cut
    assert b"".join(handler.chunks[int(Channel.STDIN)]) == b"".join(stdin)
    assert [m.message for m in handler.messages if isinstance(m, Event)] == list(range(len(payloads)))
    assert handler.ended == [int(Channel.IN)]
    assert sum(into) > sum(map(len, payloads)) // 2  # most bytes went straight into their payloads
