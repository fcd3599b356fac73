"""runner.sequence.content: input decoders (batches) and output encoders."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runner.sequence.content import (
    InputDecodeError,
    OutputEncodeError,
    UnsupportedContentType,
    decode_input,
    is_ndjson,
    normalize_content_type,
    output_encoder,
)

pytestmark = pytest.mark.anyio

STH_TEXT = "foo\nbar baz\nżółw\n"


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def decode(ct: str, parts: list[bytes]) -> list[list[Any]]:
    return [b async for b in decode_input(ct, _chunks(parts))]


def flat(batches: list[list[Any]]) -> list[Any]:
    return [x for b in batches for x in b]


# ------------------------------------------------------------------ text


async def test_sth_text_lengths() -> None:
    items = flat(await decode("text/plain", [STH_TEXT.encode()]))
    assert items == ["foo\n", "bar baz\n", "żółw\n"]
    assert [len(x) for x in items] == [4, 8, 5]


async def test_sth_binary_one_chunk() -> None:
    data = STH_TEXT.encode()
    items = flat(await decode("application/octet-stream", [data]))
    assert items == [data] and len(items[0]) == 20


async def test_text_multibyte_split_at_every_point() -> None:
    data = STH_TEXT.encode()
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            parts = [data[:i], data[i:j], data[j:]]
            assert flat(await decode("text/plain", parts)) == ["foo\n", "bar baz\n", "żółw\n"], (i, j)


async def test_text_byte_by_byte() -> None:
    data = "a€b\n😀\nlast".encode()
    assert flat(await decode("text/plain", [data[i : i + 1] for i in range(len(data))])) == [
        "a€b\n", "😀\n", "last"
    ]


async def test_text_final_line_without_newline_and_crlf() -> None:
    assert flat(await decode("text/plain", [b"a\r\nb", b"c"])) == ["a\r\n", "bc"]


async def test_text_only_splits_on_newline() -> None:
    # str.splitlines() would split on these; readline() (STH-Py) does not
    text = "a\rb\x0bc\x1cd\u2028e\n"
    assert flat(await decode("text/plain", [text.encode()])) == [text]


async def test_text_batches_per_chunk() -> None:
    batches = await decode("text/plain", [b"a\nb\nc", b"d\n", b"", b"e"])
    assert batches == [["a\n", "b\n"], ["cd\n"], ["e"]]


async def test_text_long_line_across_many_chunks() -> None:
    parts = [b"x" * 1000] * 200 + [b"\n"]
    assert flat(await decode("text/plain", parts)) == ["x" * 200_000 + "\n"]


async def test_text_invalid_utf8_names_offset() -> None:
    with pytest.raises(InputDecodeError, match="byte offset 6"):
        await decode("text/plain", [b"ok\nab", b"c\xffd\n"])


async def test_text_invalid_utf8_split_sequence_offset() -> None:
    # "ż" is c5 bc; c5 followed by "a" is invalid at offset 3
    with pytest.raises(InputDecodeError, match="byte offset 3"):
        await decode("text/plain", [b"ab\n\xc5", b"a\n"])


async def _until_error(ct: str, parts: list[bytes]) -> tuple[list[Any], str]:
    items: list[Any] = []
    with pytest.raises(InputDecodeError) as failed:
        async for batch in decode_input(ct, _chunks(parts)):
            items.extend(batch)
    return items, str(failed.value)


@pytest.mark.parametrize(("ct", "parts", "lines", "offset"), [
    ("text/plain", [b"a\nb\nc\xffd\ne\n"], ["a\n", "b\n"], 5),  # the good lines of the bad byte's chunk
    ("text/plain", [b"a\n", b"b\n\xc5", b"a\n"], ["a\n", "b\n"], 4),  # bad after a split character
    ("text/plain", [b"a\nb", b"c\nd\xff\n"], ["a\n", "bc\n"], 6),  # a line across chunks, then the bad byte
    ("text/plain", [b"\xff\n"], [], 0),
    ("text/plain; charset=ascii", [b"a\n\xc5\xbcb\n"], ["a\n"], 2),
    ("text/plain; charset=utf-16-le", ["x\ny\n".encode("utf-16-le") + b"\x00\xdc"], ["x\n", "y\n"], 8),
])
async def test_text_delivers_the_complete_lines_before_an_invalid_byte(
        ct: str, parts: list[bytes], lines: list[str], offset: int) -> None:
    items, error = await _until_error(ct, parts)
    assert items == lines
    assert f"byte offset {offset} " in error, error


async def test_text_truncated_at_end() -> None:
    with pytest.raises(InputDecodeError, match="ends inside a UTF-8 character at byte offset 2"):
        await decode("text/plain", [b"ab\xc5"])


# ------------------------------------------------------------------ binary


async def test_binary_chunks_as_received() -> None:
    assert await decode("application/octet-stream", [b"ab", b"", bytearray(b"cd")]) == [[b"ab"], [b"cd"]]


# ------------------------------------------------------------------ ndjson


async def test_ndjson_values_split_across_chunks() -> None:
    data = b'{"a": 1}\n[1,2]\n\n"\xc5\xbc"\n  \n3\r\n'
    for i in range(len(data) + 1):
        assert flat(await decode("application/x-ndjson", [data[:i], data[i:]])) == [{"a": 1}, [1, 2], "ż", 3]


async def test_ndjson_last_line_without_newline() -> None:
    assert flat(await decode("application/x-ndjson", [b"1\n2"])) == [1, 2]


async def test_ndjson_invalid_line_number() -> None:
    with pytest.raises(InputDecodeError, match=r"line 4: invalid JSON at column 2"):
        await decode("application/x-ndjson", [b'1\n\n{"a":', b' 2}\n{x}\n5\n'])


async def test_ndjson_invalid_line_number_in_later_chunk() -> None:
    with pytest.raises(InputDecodeError, match=r"line 3:"):
        await decode("application/x-ndjson", [b"1\n2\n", b"nope\n"])


async def test_ndjson_two_values_on_a_line_is_an_error() -> None:
    with pytest.raises(InputDecodeError, match="line 2"):
        await decode("application/x-ndjson", [b"1\n1 2\n"])


async def test_ndjson_invalid_utf8_line() -> None:
    with pytest.raises(InputDecodeError, match="line 2: not valid UTF-8"):
        await decode("text/x-ndjson", [b'"a"\n"\xff"\n'])


async def test_ndjson_unterminated_last_line() -> None:
    with pytest.raises(InputDecodeError, match="line 2"):
        await decode("application/x-ndjson", [b'1\n{"a"'])


@pytest.mark.parametrize(
    "ct", ["application/x-ndjson", "TEXT/X-NDJSON; charset=utf-8", "application/jsonl", "application/json-lines"]
)
async def test_ndjson_aliases(ct: str) -> None:
    assert is_ndjson(ct)
    assert flat(await decode(ct, [b"1\n"])) == [1]


# ------------------------------------------------------------------ content type matching


def test_content_type_normalisation() -> None:
    assert normalize_content_type("Text/Plain; charset=UTF-8") == "text/plain"
    assert normalize_content_type("") == "text/plain"
    assert normalize_content_type(None) == "text/plain"


async def test_text_with_parameters() -> None:
    assert flat(await decode("text/plain; charset=utf-8", [b"a\n"])) == ["a\n"]


def test_unknown_input_content_type() -> None:
    with pytest.raises(UnsupportedContentType, match="image/png"):
        decode_input("image/png", _chunks([]))


# ------------------------------------------------------------------ encoders


def test_text_encoder() -> None:
    enc = output_encoder("text/plain")
    assert enc(["a\n", "ż"]) == "a\nż".encode()
    # str and bytes as they are; any other item one line of JSON (else str()) (issue 14 item 6)
    assert enc(["a", b"\xff", 3, 1.5, None, bytearray(b"!")]) == b"a\xff3\n1.5\nnull\n!"
    assert enc([]) == b""


def test_ndjson_encoder() -> None:
    enc = output_encoder("application/x-ndjson; charset=utf-8")
    items = [{"a": "ż", "b": [1, 2.5, None, True]}, "s", 3, [], float("inf")]
    out = enc(items)
    assert out == b"".join((json.dumps(x, ensure_ascii=False) + "\n").encode() for x in items)
    assert enc([]) == b""


def test_ndjson_encoder_rejects_bytes_naming_type() -> None:
    enc = output_encoder("application/x-ndjson")
    with pytest.raises(OutputEncodeError, match="type bytes"):
        enc([1, b"raw"])
    with pytest.raises(TypeError, match="type set"):
        enc([{1, 2}])
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(OutputEncodeError, match="type list"):
        enc([circular])
    assert enc([1]) == b"1\n"  # still fine afterwards


def test_binary_encoder() -> None:
    enc = output_encoder("application/octet-stream")
    assert enc([b"a", bytearray(b"b"), memoryview(b"c"), "ż"]) == b"abc" + "ż".encode()
    with pytest.raises(OutputEncodeError, match="type int"):
        enc([b"a", 1])


def test_other_output_types() -> None:
    assert output_encoder("text/csv")(["a,b\n", 1]) == b"a,b\n1\n"
    assert output_encoder("image/png")([b"\x89PNG"]) == b"\x89PNG"
