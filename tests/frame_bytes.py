"""Frame builders written from the byte layout in docs/protocol.md, independent of the
encoders under test (shared by the framer tests and the twin parity tests)."""

from __future__ import annotations

import struct


def end(ch: int) -> bytes:
    return bytes([0x91, ch])


def data(ch: int, payload: bytes) -> bytes:
    return bytes([0x92, ch, 0xC6]) + struct.pack(">I", len(payload)) + payload


def credit(ch: int, n: int) -> bytes:
    return bytes([0x92, ch, 0xCE]) + struct.pack(">I", n)


def message(ch: int, code: int, body: bytes) -> bytes:
    return bytes([0x93, ch, 0xCD]) + struct.pack(">H", code) + b"\xc6" + struct.pack(">I", len(body)) + body
