"""Unit tests of runner/protocol/sth.py (sans-IO STH protocol pieces)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.protocol import Channel, ProtocolError, sth
from runner.protocol.errors import LocalProtocolError

IID = "0123456789abcdef0123456789abcdef0123"  # 36 characters


# -- channels and codes ------------------------------------------------------------------


def test_channel_numbers_match_protocol_v1() -> None:
    for ch in Channel:
        if ch <= 7:
            assert sth.STHChannel(int(ch)).name == ch.name
    assert sth.STHChannel.PACKAGE == 8
    assert sth.CHANNEL_COUNT == 9


def test_code_sets_per_direction() -> None:
    assert sth.RUNNER_TO_HOST_CODES == {3000, 3001, 3002, 3003, 3004, 3006, 3007, 3010, 3011, 3012, 5001}
    assert sth.HOST_TO_RUNNER_CODES == {4000, 4001, 4002, 4003, 4004, 5001, 3013}


# -- preamble ----------------------------------------------------------------------------


def test_preamble_roundtrip() -> None:
    for ch in range(9):
        raw = sth.encode_preamble(IID, ch)
        assert raw == IID.encode() + str(ch).encode()
        assert sth.parse_preamble(raw) == (IID, ch)


@pytest.mark.parametrize("bad_id", ["short", "x" * 37, "é" * 36])
def test_preamble_rejects_bad_ids_locally(bad_id: str) -> None:
    with pytest.raises(LocalProtocolError):
        sth.encode_preamble(bad_id, 0)


def test_preamble_rejects_bad_channel_locally() -> None:
    with pytest.raises(LocalProtocolError):
        sth.encode_preamble(IID, 9)


@pytest.mark.parametrize(
    "raw",
    [IID.encode() + b"9", IID.encode() + b"x", b" " * 36 + b"1", IID.encode()[:35] + b"\x00" + b"1", b"abc"],
)
def test_parse_preamble_errors(raw: bytes) -> None:
    with pytest.raises(sth.BadPreamble):
        sth.parse_preamble(raw)


@given(st.integers(0, 8), st.lists(st.integers(1, 10), max_size=40), st.binary(max_size=20))
def test_preamble_reader_any_split(ch: int, sizes: list[int], rest: bytes) -> None:
    raw = sth.encode_preamble(IID, ch) + rest
    reader = sth.PreambleReader()
    pos, result = 0, None
    for size in sizes + [len(raw)]:
        piece = raw[pos : pos + size]
        pos += len(piece)
        result = reader.feed(piece)
        if result is not None:
            break
    assert result is not None
    iid, channel, tail = result
    assert (iid, channel) == (IID, ch)
    assert tail + raw[pos:] == rest


def test_preamble_reader_eof_early() -> None:
    reader = sth.PreambleReader()
    reader.feed(IID.encode()[:10])
    with pytest.raises(sth.BadPreamble, match="10 of 37"):
        reader.eof()


# -- JSON lines --------------------------------------------------------------------------


def test_decoder_skips_empty_lines_and_cr() -> None:
    dec = sth.MessageDecoder()
    data = b'\n\r\n[3000,{"id":"x"}]\r\n   \n[3001, {"healthy": true}]\n\r\n'
    assert dec.feed(data) == [(3000, {"id": "x"}), (3001, {"healthy": True})]
    assert dec.buffered == 0


def test_decoder_last_line_without_newline_at_eof() -> None:
    dec = sth.MessageDecoder()
    assert dec.feed(b"[4004,{}]") == []
    assert dec.eof() == [(4004, {})]
    assert dec.eof() == []


@pytest.mark.parametrize(
    "line",
    [b"garbage", b"{}", b"[1]", b"[1,2]", b'["1",{}]', b"[true,{}]", b"[1,{},3]", b"[1.5,{}]", b"\xff\xfe"],
)
def test_decoder_bad_lines(line: bytes) -> None:
    dec = sth.MessageDecoder()
    with pytest.raises(sth.BadLine) as info:
        dec.feed(b"[3001,{}]\r\n\r\n" + line + b"\r\n[3012,{}]\r\n")
    err = info.value
    assert isinstance(err, ProtocolError)
    assert err.line_number == 3
    assert "line 3" in str(err)
    assert err.frames == [(3001, {})]  # messages before the bad line are not lost
    # the decoder stays usable: the bad line is consumed, the lines after it are kept
    assert dec.feed() == [(3012, {})]
    assert dec.feed(b"[4004,{}]\n") == [(4004, {})]


def test_decoder_continues_after_several_bad_lines() -> None:
    dec = sth.MessageDecoder()
    got: list = []
    errors = 0
    data = b"x\n[1,{}]\ny\nz\n[2,{}]\n[3,"
    while True:
        try:
            got += dec.feed(data)
        except sth.BadLine as err:
            got += err.frames
            errors += 1
            data = b""
            continue
        break
    assert errors == 3 and got == [(1, {}), (2, {})]
    assert dec.feed(b"{}]") == [] and dec.eof() == [(3, {})]


def test_decoder_line_too_long_without_newline() -> None:
    dec = sth.MessageDecoder(max_line=100)
    dec.feed(b"[3001," + b" " * 50)
    with pytest.raises(sth.LineTooLong):
        dec.feed(b" " * 60)
    assert dec.buffered == 0


def test_decoder_line_too_long_complete() -> None:
    dec = sth.MessageDecoder(max_line=100)
    with pytest.raises(sth.LineTooLong):
        dec.feed(b"[1,{" + b" " * 200 + b"}]\n")


def test_decoder_memory_bounded_by_limit() -> None:
    dec = sth.MessageDecoder(max_line=1000)
    for _ in range(200):
        assert dec.feed(b"[3001,{}]\r\n[3001,{") == [(3001, {})]
        assert dec.feed(b"}]\r\n") == [(3001, {})]
    assert dec.buffered < 1000


_messages = st.lists(
    st.tuples(
        st.sampled_from(sorted(sth.RUNNER_TO_HOST_CODES)),
        st.dictionaries(
            st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=10), st.booleans()), max_size=3
        ),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(_messages, st.lists(st.integers(0, 400), max_size=12), st.booleans())
def test_decoder_any_split(messages: list[tuple[int, dict]], cuts: list[int], host_style: bool) -> None:
    encode = sth.encode_host_message if host_style else sth.encode_runner_message
    if host_style:
        messages = [(3013 if c == 3000 else 4004, d) for c, d in messages]
    stream = b"\n".join(encode(c, d) for c, d in messages)
    points = sorted({min(c, len(stream)) for c in cuts})
    dec = sth.MessageDecoder()
    got: list = []
    prev = 0
    for p in points + [len(stream)]:
        got += dec.feed(stream[prev:p])
        prev = p
    got += dec.eof()
    assert got == messages


# -- encoders ----------------------------------------------------------------------------


def test_encoders_terminators_and_code_checks() -> None:
    assert sth.encode_runner_message(3001, {"healthy": True}) == b'[3001,{"healthy":true}]\r\n'
    assert sth.encode_host_message(4004) == b"[4004,{}]\n"
    assert sth.encode_host_message(5001, {"eventName": "e"}) == b'[5001,{"eventName":"e"}]\n'
    for code in (3013, 3020, 4000, 4004, 4010, 7001):
        with pytest.raises(LocalProtocolError):
            sth.encode_runner_message(code, {})
    for code in (3000, 3001, 3012, 4010):
        with pytest.raises(LocalProtocolError):
            sth.encode_host_message(code, {})
    with pytest.raises(LocalProtocolError):
        sth.encode_runner_message(3001, {"x": float("nan")})
    with pytest.raises(LocalProtocolError):
        sth.encode_runner_message(5001, {"message": object()})
    with pytest.raises(LocalProtocolError):
        sth.encode_runner_message(5001, [1])  # type: ignore[arg-type]


def test_ping_and_pong_data() -> None:
    ping = sth.ping_data(IID, {"id": "s"}, {"args": ["a"]}, 42, created_ms=5)
    assert ping == {
        "id": IID,
        "sequenceInfo": {"id": "s"},
        "created": 5,
        "payload": {"args": ["a"], "system": {"processPID": "42"}},
        "status": "starting",
        "inputHeadersSent": False,
    }
    assert sth.pong_data() == {}
    assert sth.pong_data({}, None) == {"appConfig": {}}
    assert sth.pong_data(None, []) == {"args": []}
    json.dumps(ping)


def test_exit_code_file() -> None:
    assert sth.exit_code_file(123) == "/tmp/runner-123"


# -- header block --------------------------------------------------------------------------

BLOCK = b"Content-Type: text/plain\r\nX-Other:  v: w \r\n\r\n"


def test_header_block_whole() -> None:
    reader = sth.InputHeaderReader()
    assert reader.feed(BLOCK + b"body\r\n\r\nmore") == b"body\r\n\r\nmore"
    assert reader.headers == {"content-type": "text/plain", "x-other": "v: w"}
    assert reader.content_type == "text/plain"
    assert reader.feed(b"next") == b"next"


def test_header_block_split_at_every_byte() -> None:
    data = BLOCK + b"hello\r\n\r\nworld"
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            reader = sth.InputHeaderReader()
            body = bytes(reader.feed(data[:i])) + bytes(reader.feed(data[i:j])) + bytes(reader.feed(data[j:]))
            assert body == b"hello\r\n\r\nworld", (i, j)
            assert reader.content_type == "text/plain"


def test_header_block_byte_by_byte() -> None:
    reader = sth.InputHeaderReader()
    out = b"".join(bytes(reader.feed(bytes([b]))) for b in BLOCK + b"xy")
    assert out == b"xy" and reader.done


def test_header_block_encode_roundtrip() -> None:
    reader = sth.InputHeaderReader()
    assert reader.feed(sth.encode_header_block("application/octet-stream")) == b""
    assert reader.content_type == "application/octet-stream"
    with pytest.raises(LocalProtocolError):
        sth.encode_header_block("a\r\nb")


def test_header_block_not_expected() -> None:
    reader = sth.InputHeaderReader(expect_headers=False)
    assert reader.feed(BLOCK) == BLOCK
    assert reader.headers == {} and reader.content_type is None
    reader2 = sth.InputHeaderReader()
    reader2.no_headers()
    assert reader2.feed(b"raw") == b"raw"


def test_header_block_too_large() -> None:
    reader = sth.InputHeaderReader(max_size=64)
    reader.feed(b"Content-Type: " + b"x" * 40)
    with pytest.raises(sth.HeaderBlockTooLarge):
        reader.feed(b"y" * 40)
    reader = sth.InputHeaderReader(max_size=30)
    with pytest.raises(sth.HeaderBlockTooLarge):
        reader.feed(b"Content-Type: " + b"x" * 40 + b"\r\n\r\nbody")


def test_header_block_bad_line_and_eof() -> None:
    with pytest.raises(sth.BadHeaderBlock, match="key: value"):
        sth.InputHeaderReader().feed(b"nocolon\r\n\r\n")
    reader = sth.InputHeaderReader()
    reader.feed(b"Content-Type: te")
    with pytest.raises(sth.BadHeaderBlock, match="inside the header"):
        reader.eof()
    sth.InputHeaderReader().eof()  # no input at all is fine


@given(st.binary(max_size=200), st.lists(st.integers(0, 300), max_size=6))
def test_header_reader_body_preserved(body: bytes, cuts: list[int]) -> None:
    data = b"Content-Type: application/octet-stream\r\n\r\n" + body
    reader = sth.InputHeaderReader()
    out = b""
    prev = 0
    for p in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
        out += bytes(reader.feed(data[prev:p]))
        prev = p
    assert out == body
    assert reader.content_type == "application/octet-stream"
