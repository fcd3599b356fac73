"""Differential tests: the compiled framer must behave exactly like the pure-Python one.

The same byte stream, cut the same way, goes through both decoders; they must give
the same frames (payload bytes compared), hold the same number of bytes after each
chunk, and fail with the same exception class and message after the same frames.
The same encoder calls must give the same output buffers, byte for byte.
"""

from __future__ import annotations

import itertools
import os
from types import ModuleType
from typing import Any

import pytest
from frame_bytes import credit, data, end, message
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.protocol import _framer_py
from runner.protocol.errors import RemoteProtocolError


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def twins() -> tuple[ModuleType, ModuleType]:
    try:
        from runner.protocol import _framer_c
    except ImportError as exc:
        if _flag("SEQUENCE_RUNNER_REQUIRE_EXTENSION"):
            pytest.fail(f"SEQUENCE_RUNNER_REQUIRE_EXTENSION is set but the compiled framer is missing: {exc}")
        pytest.skip(
            f"compiled framer runner.protocol._framer_c not built ({exc}); pip install -e . builds it"
        )
    return _framer_py, _framer_c


SETTINGS = settings(max_examples=150, deadline=None)


DATA_CH = st.sampled_from([0, 1, 2, 5, 6, 7])
MESSAGE_CH = st.sampled_from([3, 4, 9])
ANY_CH = st.integers(0, 255)
VALID_FRAME = st.one_of(
    st.builds(data, DATA_CH, st.binary(max_size=120)),
    st.builds(credit, DATA_CH, st.integers(0, 0xFFFFFFFF)),
    st.builds(end, DATA_CH),
    st.builds(message, MESSAGE_CH, st.integers(0, 0xFFFF), st.binary(max_size=120)),
)
VALID = st.lists(VALID_FRAME, max_size=15).map(b"".join)
# Pieces that reach the deeper checks: right lead bytes with wrong channels,
# type bytes, lengths near the limit, and headers cut anywhere.
PIECE = st.one_of(
    VALID_FRAME,
    st.builds(data, ANY_CH, st.binary(max_size=60)),
    st.builds(credit, ANY_CH, st.integers(0, 0xFFFFFFFF)),
    st.builds(end, ANY_CH),
    st.builds(message, ANY_CH, st.integers(0, 0xFFFF), st.binary(max_size=60)),
    st.sampled_from([b"\x91", b"\x92", b"\x93", b"\xc6", b"\xce", b"\xcd", b"\x00\x00\x01\x00", b"\xff"]),
    st.binary(max_size=10),
)
STITCHED = st.lists(PIECE, max_size=12).map(b"".join)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    stream = bytearray(draw(VALID))
    for _ in range(draw(st.integers(1, 3))):
        if stream:
            stream[draw(st.integers(0, len(stream) - 1))] = draw(st.integers(0, 255))
    return bytes(stream)


STREAMS = {
    "valid": VALID,
    "garbage": st.binary(max_size=300),
    "valid_then_garbage": st.tuples(VALID, st.binary(min_size=1, max_size=60)).map(b"".join),
    "stitched": STITCHED,
    "mutated": mutated(),
}


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def run_decoder(module: ModuleType, chunks: list[bytes], max_size: int) -> dict[str, Any]:
    decoder = module.FrameDecoder(max_size)
    frames: list[Any] = []
    buffered: list[int] = []
    error: tuple[type, str] | None = None
    try:
        for chunk in chunks:
            frames += decoder.decode(chunk)
            buffered.append(decoder.buffered)
    except RemoteProtocolError as err:
        frames += err.frames
        error = (type(err), str(err))
        with pytest.raises(type(err)):
            decoder.decode(b"")
    return {
        "frames": [(k, ch, n, None if p is None else bytes(p)) for k, ch, n, p in frames],
        "buffered": buffered,
        "error": error,
        "frames_decoded": decoder.frames_decoded,
    }


@pytest.mark.parametrize("kind", list(STREAMS))
def test_decoders_agree(twins: tuple[ModuleType, ModuleType], kind: str) -> None:
    @SETTINGS
    @given(stream=STREAMS[kind], max_size=st.sampled_from([1, 16, 64, 100, 1 << 20]), data_=st.data())
    def check(stream: bytes, max_size: int, data_: st.DataObject) -> None:
        cuts = data_.draw(st.lists(st.integers(0, len(stream)), max_size=10))
        chunks = chunked(stream, cuts)
        pure, compiled = (run_decoder(module, chunks, max_size) for module in twins)
        assert compiled == pure

    check()


@pytest.mark.parametrize("kind", ["valid", "stitched"])
def test_decoders_agree_byte_by_byte(twins: tuple[ModuleType, ModuleType], kind: str) -> None:
    @settings(max_examples=60, deadline=None)
    @given(stream=STREAMS[kind], max_size=st.sampled_from([16, 100, 1 << 20]))
    def check(stream: bytes, max_size: int) -> None:
        chunks = [stream[i : i + 1] for i in range(len(stream))]
        pure, compiled = (run_decoder(module, chunks, max_size) for module in twins)
        assert compiled == pure

    check()


PAYLOAD = st.one_of(
    st.binary(max_size=100),
    # Around COPY_THRESHOLD (16384), where payloads stop being copied into the buffer.
    st.integers(16380, 16390).map(lambda n: bytes(range(256)) * (n // 256) + b"\x07" * (n % 256)),
)
CALL = st.one_of(
    st.tuples(st.just("data"), st.integers(-2, 260), PAYLOAD),
    st.tuples(st.just("credit"), st.integers(-2, 12), st.integers(-(2**33), 2**33)),
    st.tuples(st.just("end"), st.integers(-2, 260)),
    st.tuples(st.just("message"), st.integers(-2, 12), st.integers(-2, 0x10002), st.binary(max_size=200)),
    st.tuples(st.just("take")),
    st.tuples(st.just("data_header"), st.integers(-2, 260), st.integers(-2, (1 << 20) + 2)),
)


def run_encoder(module: ModuleType, calls: list[tuple[Any, ...]], max_size: int) -> list[Any]:
    encoder = module.FrameEncoder(max_size)
    trace: list[Any] = []
    for name, *args in calls:
        if name == "take":
            trace.append([bytes(chunk) for chunk in encoder.take()])
            continue
        try:
            getattr(encoder, name)(*args)
            trace.append((name, encoder.pending))
        except Exception as exc:  # noqa: BLE001 - the class is what we compare
            trace.append((name, type(exc), str(exc), encoder.pending))
    trace.append([bytes(chunk) for chunk in encoder.take()])
    trace.append(encoder.take_bytes())
    return trace


@SETTINGS
@given(calls=st.lists(CALL, max_size=20), max_size=st.sampled_from([1, 50, 20000, 1 << 20]))
def test_encoders_agree(
    twins: tuple[ModuleType, ModuleType], calls: list[tuple[Any, ...]], max_size: int
) -> None:
    pure, compiled = (run_encoder(module, calls, max_size) for module in twins)
    assert compiled == pure


def run_detaching_decoder(module: ModuleType, chunks: list[bytes], channel: int) -> dict[str, Any]:
    """Decode ``chunks``; after each one, detach a held DATA frame on ``channel`` and take its
    rest from the following chunks as the caller does (os.splice): the frames decoded, the
    detached payloads rebuilt, what was buffered and the error, to compare between twins."""
    decoder = module.FrameDecoder(1 << 20)
    frames: list[Any] = []
    detached: list[bytes] = []
    buffered: list[int] = []
    error: tuple[type, str] | None = None
    owed, taken = 0, bytearray()
    try:
        for chunk in chunks:
            if owed:
                take, chunk = chunk[:owed], chunk[owed:]
                taken += take
                owed -= len(take)
                if owed:
                    continue
                detached.append(bytes(taken))
                taken = bytearray()
            frames += [(k, ch, n, None if p is None else bytes(p)) for k, ch, n, p in decoder.decode(chunk)]
            held = decoder.detach_payload(channel)
            if held is not None:
                head, owed = held
                assert owed > 0
                taken = bytearray(head)
            buffered.append(decoder.buffered)
    except RemoteProtocolError as err:
        error = (type(err), str(err))
    return {"frames": frames, "detached": detached, "buffered": buffered, "error": error}


@pytest.mark.parametrize("kind", ["valid", "stitched", "mutated"])
def test_detached_payloads_agree(twins: tuple[ModuleType, ModuleType], kind: str) -> None:
    """``detach_payload`` hands over the same bytes from both twins, and what follows a
    detached payload decodes the same; a stream of whole frames loses no byte to it."""

    @SETTINGS
    @given(stream=STREAMS[kind], channel=DATA_CH, data_=st.data())
    def check(stream: bytes, channel: int, data_: st.DataObject) -> None:
        cuts = data_.draw(st.lists(st.integers(0, len(stream)), max_size=10))
        chunks = chunked(stream, cuts)
        pure, compiled = (run_detaching_decoder(module, chunks, channel) for module in twins)
        assert compiled == pure

    check()


def test_a_detached_payload_is_the_frame_s_payload(twins: tuple[ModuleType, ModuleType]) -> None:
    stream = data(1, b"abc") + data(2, bytes(range(200))) + end(2) + credit(1, 7)
    for module in twins:
        for cut in (17, 18, 30, 100):  # right after the second header, and inside its payload
            result = run_detaching_decoder(module, [stream[:cut], stream[cut:]], 2)
            assert result["detached"] == [bytes(range(200))], (module.__name__, cut)
            assert [f[:2] for f in result["frames"]] == [(0, 1), (2, 2), (1, 1)]
        # no held frame on another channel, a cut header or a whole frame: nothing is detached
        decoder = module.FrameDecoder()
        decoder.decode(stream[:14])
        assert decoder.detach_payload(1) is None
        assert decoder.buffered == 4
        decoder = module.FrameDecoder()
        decoder.decode(stream[:13])
        assert decoder.detach_payload(2) is None


def run_filling_decoder(module: ModuleType, stream: bytes, cuts: list[int], fills: list[int]) -> dict[str, Any]:
    """Decode ``stream`` as a reader using ``pending_view`` does: whenever a payload is pending,
    the next bytes are written into its view (as many as ``fills`` says, at most what it
    lacks and what is left), else the next chunk goes to ``decode``."""
    decoder = module.FrameDecoder(1 << 20)
    frames: list[Any] = []
    buffered: list[int] = []
    error: tuple[type, str] | None = None
    pos, steps = 0, 0
    bounds = sorted({*cuts, len(stream)})
    try:
        while pos < len(stream) and steps < 200:
            steps += 1
            view = decoder.pending_view()
            if view is not None:
                n = min(len(view), len(stream) - pos, max(1, fills[steps % len(fills)] if fills else len(view)))
                view[:n] = stream[pos : pos + n]
                view.release()
                got = decoder.pending_filled(n)
                pos += n
            else:
                end = next((b for b in bounds if b > pos), len(stream))
                got = decoder.decode(stream[pos:end])
                pos = end
            frames += [(k, ch, n_, None if p is None else bytes(p)) for k, ch, n_, p in got]
            buffered.append(decoder.buffered)
    except RemoteProtocolError as err:
        error = (type(err), str(err))
    return {"frames": frames, "buffered": buffered, "error": error, "decoded": decoder.frames_decoded}


@pytest.mark.parametrize("kind", ["valid", "stitched", "mutated"])
def test_payloads_filled_in_place_agree(twins: tuple[ModuleType, ModuleType], kind: str) -> None:
    """``pending_view``/``pending_filled`` (recv_into a pending payload) decode what ``decode`` would,
    in both twins alike."""

    @SETTINGS
    @given(stream=STREAMS[kind], data_=st.data())
    def check(stream: bytes, data_: st.DataObject) -> None:
        cuts = data_.draw(st.lists(st.integers(0, len(stream)), max_size=10))
        fills = data_.draw(st.lists(st.integers(1, 200), max_size=5))
        pure, compiled = (run_filling_decoder(module, stream, cuts, fills) for module in twins)
        assert compiled == pure
        whole = run_decoder(twins[0], chunked(stream, cuts), 1 << 20)
        if whole["error"] is None and pure["error"] is None:
            assert pure["frames"] == whole["frames"]

    check()


def test_a_pending_view_is_the_rest_of_the_payload(twins: tuple[ModuleType, ModuleType]) -> None:
    stream = data(1, b"abc") + data(2, bytes(range(200))) + end(2)
    for module in twins:
        decoder = module.FrameDecoder()
        assert [(k, ch, bytes(p)) for k, ch, _, p in decoder.decode(stream[:30])] == [(0, 1, b"abc")]
        assert decoder.pending_view(at_least=188) is None  # 187 bytes are missing
        view = decoder.pending_view(at_least=187)
        assert view is not None and len(view) == 187 and not view.readonly
        view[:] = bytes(range(13, 200))
        view.release()
        (frame,) = decoder.pending_filled(187)
        assert frame[:2] == (0, 2) and bytes(frame[3]) == bytes(range(200))
        assert decoder.pending_view() is None
        with pytest.raises(ValueError):
            decoder.pending_filled(1)
        assert [f[:2] for f in decoder.decode(stream[-2:])] == [(2, 2)]


def test_the_twins_number_the_frame_kinds_alike(twins: tuple[ModuleType, ModuleType]) -> None:
    """runner.protocol.framer takes KIND_* from whichever twin it uses."""
    for name in ("KIND_DATA", "KIND_CREDIT", "KIND_END", "KIND_MESSAGE"):
        assert getattr(twins[0], name) == getattr(twins[1], name), name
