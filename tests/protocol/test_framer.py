"""Frame encoder/decoder, run against both twins (pure Python and the compiled one).

Parsers are fed whole, one byte at a time and in random splits (h11 style), checked
against golden byte vectors in both directions, and fed garbage: only a
RemoteProtocolError (the peer's) may come out, and memory held stays bounded.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from array import array
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import pytest
from frame_bytes import credit, data, end, message
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.protocol import _framer_py
from runner.protocol.constants import MAX_MAX_FRAME_SIZE
from runner.protocol.errors import (
    FrameTooLarge,
    LocalProtocolError,
    MalformedFrame,
    RemoteProtocolError,
    UnknownChannel,
)

DATA, CREDIT, END, MESSAGE = 0, 1, 2, 3
DATA_CHANNELS = (0, 1, 2, 5, 6, 7)
MESSAGE_CHANNELS = (3, 4, 9)
GOLDEN = json.loads((Path(__file__).parent / "golden_frames.json").read_text())
SETTINGS = settings(max_examples=60, deadline=None)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module", params=["python", "cython"])
def twin(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "python":
        return _framer_py
    try:
        from runner.protocol import _framer_c
    except ImportError as exc:
        if _flag("SEQUENCE_RUNNER_REQUIRE_EXTENSION"):
            pytest.fail(f"SEQUENCE_RUNNER_REQUIRE_EXTENSION is set but the compiled framer is missing: {exc}")
        pytest.skip(
            f"compiled framer runner.protocol._framer_c not built ({exc}); pip install -e . builds it"
        )
    return _framer_c


def norm(frames: list[Any]) -> list[tuple[int, int, int, bytes | None]]:
    return [(k, ch, n, None if p is None else bytes(p)) for k, ch, n, p in frames]


def feed(decoder: Any, stream: bytes, cuts: list[int]) -> list[Any]:
    frames: list[Any] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        frames += decoder.decode(stream[start:cut])
        start = cut
    return frames


SAMPLES = {
    "end": (end(2), [(END, 2, 0, None)]),
    "data_empty": (data(0, b""), [(DATA, 0, 0, b"")]),
    "data_small": (data(1, b"hello"), [(DATA, 1, 0, b"hello")]),
    "data_64k": (data(6, b"\xab" * 65536), [(DATA, 6, 0, b"\xab" * 65536)]),
    "credit": (credit(5, 123456), [(CREDIT, 5, 123456, None)]),
    "message": (message(3, 4001, b"\x81\xa1a\x01"), [(MESSAGE, 3, 4001, b"\x81\xa1a\x01")]),
    "message_empty": (message(9, 65535, b""), [(MESSAGE, 9, 65535, b"")]),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_kind_whole_bytewise_and_split(twin: ModuleType, name: str) -> None:
    stream, expected = SAMPLES[name]
    stream = stream * 3
    expected = expected * 3
    assert norm(twin.FrameDecoder().decode(stream)) == expected
    bytewise = twin.FrameDecoder()
    assert norm(feed(bytewise, stream, list(range(1, len(stream))))) == expected
    assert bytewise.buffered == 0
    rng = random.Random(name)
    for _ in range(20):
        cuts = [rng.randrange(len(stream) + 1) for _ in range(rng.randrange(1, 6))]
        assert norm(feed(twin.FrameDecoder(), stream, cuts)) == expected


def test_payload_of_a_whole_frame_is_a_view_of_the_input(twin: ModuleType) -> None:
    stream = data(1, b"z" * 65536) + message(4, 3001, b"\x90")
    frames = twin.FrameDecoder().decode(stream)
    for frame in frames:
        assert isinstance(frame[3], memoryview)
        assert frame[3].obj is stream  # zero copy: no 64 KiB copy was made
    ba = bytearray(stream)
    assert twin.FrameDecoder().decode(memoryview(ba))[0][3].obj is ba


def test_input_of_any_buffer_type(twin: ModuleType) -> None:
    stream = data(1, b"abcd") + end(1)
    expected = [(DATA, 1, 0, b"abcd"), (END, 1, 0, None)]
    for chunk in (stream, bytearray(stream), memoryview(stream), memoryview(stream)[0:]):
        assert norm(twin.FrameDecoder().decode(chunk)) == expected
    with pytest.raises(TypeError):
        twin.FrameDecoder().decode("not bytes")


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, int, int, bytes]:
    kind = draw(st.sampled_from(["data", "credit", "end", "message"]))
    if kind == "message":
        return (
            kind,
            draw(st.sampled_from(MESSAGE_CHANNELS)),
            draw(st.integers(0, 0xFFFF)),
            draw(st.binary(max_size=80)),
        )
    ch = draw(st.sampled_from(DATA_CHANNELS))
    if kind == "credit":
        return kind, ch, draw(st.integers(1, 0xFFFFFFFF)), b""
    return kind, ch, 0, draw(st.binary(max_size=200)) if kind == "data" else b""


def expected_frames(ops: list[tuple[str, int, int, bytes]], max_size: int) -> list[Any]:
    out: list[Any] = []
    for kind, ch, n, payload in ops:
        if kind == "data":
            parts = [payload[i : i + max_size] for i in range(0, len(payload), max_size)] or [b""]
            out += [(DATA, ch, 0, part) for part in parts]
        elif kind == "credit":
            out.append((CREDIT, ch, n, None))
        elif kind == "end":
            out.append((END, ch, 0, None))
        else:
            out.append((MESSAGE, ch, n, payload))
    return out


def encode(twin: ModuleType, ops: list[tuple[str, int, int, bytes]], max_size: int) -> bytes:
    encoder = twin.FrameEncoder(max_size)
    for kind, ch, n, payload in ops:
        if kind == "data":
            encoder.data(ch, payload)
        elif kind == "credit":
            encoder.credit(ch, n)
        elif kind == "end":
            encoder.end(ch)
        else:
            encoder.message(ch, n, payload)
    return encoder.take_bytes()


@SETTINGS
@given(ops=st.lists(calls(), max_size=25), max_size=st.integers(80, 300), data_=st.data())
def test_round_trip(twin: ModuleType, ops: list[Any], max_size: int, data_: st.DataObject) -> None:
    stream = encode(twin, ops, max_size)
    cuts = data_.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    decoder = twin.FrameDecoder(max_size)
    assert norm(feed(decoder, stream, cuts)) == expected_frames(ops, max_size)
    assert decoder.buffered == 0
    assert decoder.frames_decoded == len(expected_frames(ops, max_size))


def golden_payload(spec: str | list[list[Any]]) -> bytes:
    if isinstance(spec, str):
        return bytes.fromhex(spec)
    return b"".join(bytes.fromhex(hex_) * times for hex_, times in spec)


def golden_frame(frame: dict[str, Any]) -> tuple[int, int, int, bytes | None]:
    kind = {"DATA": DATA, "CREDIT": CREDIT, "END": END, "MESSAGE": MESSAGE}[frame["kind"]]
    payload = golden_payload(frame["payload"]) if "payload" in frame else None
    return kind, frame["channel"], frame.get("number", 0), payload


@pytest.mark.parametrize("vector", GOLDEN, ids=[v["name"] for v in GOLDEN])
def test_golden_vectors(twin: ModuleType, vector: dict[str, Any]) -> None:
    max_size = vector.get("max_frame_size", 1 << 20)
    stream = bytes.fromhex(vector["hex"])
    frames = [golden_frame(f) for f in vector["frames"]]
    assert norm(twin.FrameDecoder(max_size).decode(stream)) == frames
    encoder = twin.FrameEncoder(max_size)
    for kind, ch, number, payload in [golden_frame(f) for f in vector.get("encode", vector["frames"])]:
        if kind == DATA:
            encoder.data(ch, payload)
        elif kind == CREDIT:
            encoder.credit(ch, number)
        elif kind == END:
            encoder.end(ch)
        else:
            encoder.message(ch, number, payload)
    assert encoder.take_bytes().hex() == vector["hex"]


@pytest.mark.parametrize("vector", GOLDEN, ids=[v["name"] for v in GOLDEN])
def test_golden_vectors_are_plain_msgpack(vector: dict[str, Any]) -> None:
    unpacker = msgpack.Unpacker(raw=False, max_bin_len=1 << 20)
    unpacker.feed(bytes.fromhex(vector["hex"]))
    arrays = list(unpacker)
    want: list[list[Any]] = []
    for frame in vector["frames"]:
        payload = golden_payload(frame.get("payload", ""))
        want.append(
            {
                "END": [frame["channel"]],
                "DATA": [frame["channel"], payload],
                "CREDIT": [frame["channel"], frame.get("number")],
                "MESSAGE": [frame["channel"], frame.get("number"), payload],
            }[frame["kind"]]
        )
        if "body" in frame:
            assert msgpack.unpackb(payload, raw=False) == frame["body"]
    assert arrays == want


# Garbage: random bytes, and streams stitched from valid frames, lead bytes and noise,
# which reach the deeper checks (channel tables, sizes, split headers) far more often.
PIECES = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"\x91", b"\x92", b"\x93", b"\xc6", b"\xce", b"\xcd", b"\x00\x00\x00\x40"]),
    st.builds(data, st.integers(0, 12), st.binary(max_size=80)),
    st.builds(credit, st.integers(0, 12), st.integers(0, 0xFFFFFFFF)),
    st.builds(end, st.integers(0, 255)),
    st.builds(message, st.integers(0, 12), st.integers(0, 0xFFFF), st.binary(max_size=80)),
)
GARBAGE = st.one_of(st.binary(max_size=300), st.lists(PIECES, max_size=12).map(b"".join))


@SETTINGS
@given(stream=GARBAGE, max_size=st.integers(1, 100), data_=st.data())
def test_garbage_gives_only_protocol_errors(
    twin: ModuleType, stream: bytes, max_size: int, data_: st.DataObject
) -> None:
    cuts = sorted(data_.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = twin.FrameDecoder(max_size)
    start = 0
    try:
        for cut in [*cuts, len(stream)]:
            decoder.decode(stream[start:cut])
            start = cut
            assert decoder.buffered <= max_size + 10
    except RemoteProtocolError as err:
        assert isinstance(err.frames, list)
        with pytest.raises(type(err)):
            decoder.decode(b"")


@pytest.mark.parametrize(
    "header",
    [data(1, b"x" * 101)[:7], message(3, 3000, b"x" * 101)[:10]],
    ids=["data", "message"],
)
def test_oversized_header_fails_before_its_payload(twin: ModuleType, header: bytes) -> None:
    with pytest.raises(FrameTooLarge):
        twin.FrameDecoder(100).decode(data(1, b"ok") + header)
    decoder = twin.FrameDecoder(100)
    for byte in header[:-1]:
        assert decoder.decode(bytes([byte])) == []
    with pytest.raises(FrameTooLarge):
        decoder.decode(header[-1:])
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    "frame",
    [data(8, b"x"), credit(10, 1), end(200), message(10, 1, b""), message(0x80, 1, b""), data(255, b"")],
)
def test_unknown_channel(twin: ModuleType, frame: bytes) -> None:
    with pytest.raises(UnknownChannel):
        twin.FrameDecoder().decode(frame)
    with pytest.raises(UnknownChannel):
        feed(twin.FrameDecoder(), frame, list(range(1, len(frame))))


@pytest.mark.parametrize(
    "frame",
    [data(3, b"x"), credit(9, 1), end(4), message(1, 3000, b""), message(6, 3000, b"x")],
    ids=["data_on_control", "credit_on_events", "end_on_monitoring", "message_on_stdout", "message_on_out"],
)
def test_frame_kind_on_the_wrong_channel(twin: ModuleType, frame: bytes) -> None:
    with pytest.raises(MalformedFrame, match="does not carry"):
        twin.FrameDecoder().decode(frame)
    with pytest.raises(MalformedFrame, match="does not carry"):
        feed(twin.FrameDecoder(), frame, list(range(1, len(frame))))


@pytest.mark.parametrize(
    "bad",
    [b"\x90", b"\x94\x01", b"\x92\x01\xc4\x00", b"\x93\x03\xcc\x00\x00\xc6\x00\x00\x00\x00", b"\xc1"],
)
def test_malformed_frames(twin: ModuleType, bad: bytes) -> None:
    with pytest.raises(MalformedFrame):
        twin.FrameDecoder().decode(bad)


def test_error_carries_the_frames_before_it(twin: ModuleType) -> None:
    decoder = twin.FrameDecoder()
    decoder.decode(data(1, b"earlier call"))
    with pytest.raises(UnknownChannel) as info:
        decoder.decode(data(1, b"a") + end(1) + data(8, b"bad") + data(1, b"never"))
    assert norm(info.value.frames) == [(DATA, 1, 0, b"a"), (END, 1, 0, None)]
    assert decoder.frames_decoded == 1  # only successful calls count


def test_dead_decoder_raises_again(twin: ModuleType) -> None:
    decoder = twin.FrameDecoder()
    with pytest.raises(MalformedFrame):
        decoder.decode(b"\x92\x01" + b"\x00" * 10)
    for later in (data(1, b"fine"), b""):
        with pytest.raises(MalformedFrame) as info:
            decoder.decode(later)
        assert info.value.frames == []
    assert decoder.buffered == 0


def test_max_frame_size_is_validated(twin: ModuleType) -> None:
    for cls in (twin.FrameDecoder, twin.FrameEncoder):
        assert cls().max_frame_size == 1 << 20
        assert cls(1).max_frame_size == 1
        for bad in (0, -1, MAX_MAX_FRAME_SIZE + 1):
            with pytest.raises(ValueError):
                cls(bad)


def test_encoder_splits_payloads_larger_than_max_frame_size(twin: ModuleType) -> None:
    encoder = twin.FrameEncoder(10)
    encoder.data(2, b"0123456789abcdefghijKLMNO")
    assert encoder.pending == 3 * 7 + 25
    stream = encoder.take_bytes()
    assert stream == data(2, b"0123456789") + data(2, b"abcdefghij") + data(2, b"KLMNO")
    assert norm(twin.FrameDecoder(10).decode(stream)) == [
        (DATA, 2, 0, b"0123456789"),
        (DATA, 2, 0, b"abcdefghij"),
        (DATA, 2, 0, b"KLMNO"),
    ]


def test_encoder_takes_the_byte_length_of_any_buffer(twin: ModuleType) -> None:
    encoder = twin.FrameEncoder()
    encoder.data(1, bytearray(b"ab"))
    encoder.data(1, memoryview(b"xxcdxx")[2:4])
    encoder.message(9, 5001, memoryview(b"ef"))
    wide = array("H", [1, 2])  # len() is 2 items, the frame must say 4 bytes
    encoder.data(1, wide)
    encoder.message(3, 4001, wide)
    assert encoder.take_bytes() == (
        data(1, b"ab")
        + data(1, b"cd")
        + message(9, 5001, b"ef")
        + data(1, wide.tobytes())
        + message(3, 4001, wide.tobytes())
    )
    split = twin.FrameEncoder(4)
    split.data(1, array("I", [1, 2, 3]))
    assert split.take_bytes() == b"".join(data(1, struct.pack("=I", i)) for i in (1, 2, 3))


@pytest.mark.parametrize("method", ["data", "message"])
def test_a_payload_that_is_not_a_buffer_writes_nothing(twin: ModuleType, method: str) -> None:
    encoder = twin.FrameEncoder()
    encoder.end(1)
    with pytest.raises(TypeError):
        if method == "data":
            encoder.data(1, "text")
        else:
            encoder.message(3, 4001, "text")
    assert encoder.pending == 2
    assert encoder.take_bytes() == end(1)


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("data", (3, b"x")),
        ("data", (8, b"x")),
        ("data", (-1, b"x")),
        ("data", (128, b"x")),
        ("data", (2**70, b"x")),
        ("credit", (4, 1)),
        ("credit", (1, 0)),
        ("credit", (1, -5)),
        ("credit", (1, 2**32)),
        ("credit", (1, 2**80)),
        ("end", (9,)),
        ("end", (300,)),
        ("message", (1, 3000, b"")),
        ("message", (10, 3000, b"")),
        ("message", (3, -1, b"")),
        ("message", (3, 65536, b"")),
        ("message", (3, 2**64, b"")),
        ("message", (3, 3000, b"x" * 101)),
    ],
)
def test_encoder_rejects_what_the_protocol_forbids(
    twin: ModuleType, method: str, args: tuple[Any, ...]
) -> None:
    encoder = twin.FrameEncoder(100)
    encoder.end(1)
    with pytest.raises(LocalProtocolError):
        getattr(encoder, method)(*args)
    assert encoder.pending == 2
    assert encoder.take_bytes() == end(1)  # nothing half-written


def test_take_coalesces_small_frames(twin: ModuleType) -> None:
    encoder = twin.FrameEncoder()
    for i in range(1000):
        encoder.data(1, b"%04d" % i)
    encoder.credit(0, 7)
    encoder.end(1)
    assert encoder.pending == 1000 * 11 + 7 + 2
    chunks = encoder.take()
    assert len(chunks) == 1 and isinstance(chunks[0], bytes)
    assert chunks[0] == b"".join(data(1, b"%04d" % i) for i in range(1000)) + credit(0, 7) + end(1)
    assert encoder.pending == 0
    assert encoder.take() == []
    assert encoder.take_bytes() == b""


def test_large_payloads_are_not_copied_into_the_buffer(twin: ModuleType) -> None:
    big = bytearray(twin.COPY_THRESHOLD)
    encoder = twin.FrameEncoder()
    encoder.data(1, b"a")
    encoder.data(1, big)
    encoder.data(1, b"b")
    chunks = encoder.take()
    assert len(chunks) == 3
    assert chunks[0] == data(1, b"a") + data(1, big)[:7]
    assert chunks[1] is big
    assert chunks[2] == data(1, b"b")


def _outcome(twin: ModuleType, stream: bytes, cuts: list[int], max_size: int) -> tuple[int, str]:
    """(frames decoded, error class name or "") for ``stream`` fed in pieces split at ``cuts``."""
    decoder = twin.FrameDecoder(max_size)
    count, start = 0, 0
    try:
        for cut in [*cuts, len(stream)]:
            count += len(decoder.decode(stream[start:cut]))
            start = cut
    except RemoteProtocolError as err:
        return count + len(err.frames), type(err).__name__
    return count, ""


@SETTINGS
@given(stream=GARBAGE, max_size=st.integers(1, 100), data_=st.data())
def test_the_error_does_not_depend_on_where_reads_end(
    twin: ModuleType, stream: bytes, max_size: int, data_: st.DataObject
) -> None:
    cuts = sorted(data_.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    whole = _outcome(twin, stream, [], max_size)
    assert _outcome(twin, stream, cuts, max_size) == whole
    assert _outcome(twin, stream, list(range(len(stream))), max_size) == whole


def test_the_compiled_framer_does_not_load_its_pure_python_twin() -> None:
    """Every runner imports the framer before its PING: the unused twin would be ~0.2 ms of it."""
    probe = ("import sys, runner.protocol.framer as f;"
             "print(f.IMPLEMENTATION, 'runner.protocol._framer_py' in sys.modules, f.KIND_DATA, f.KIND_MESSAGE)")
    try:
        from runner.protocol import _framer_c  # noqa: F401
    except ImportError:
        pytest.skip("the compiled framer is not built")
    for pure, expected in (("", "cython False 0 3"), ("1", "python True 0 3")):
        env = {**os.environ, "SEQUENCE_RUNNER_PURE_PYTHON": pure, "SEQUENCE_RUNNER_REQUIRE_EXTENSION": ""}
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == expected.split()
