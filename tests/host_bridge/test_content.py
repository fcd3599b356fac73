"""Decoding of byte channels into items, fed chunk boundaries everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from host_bridge.content import NDJSON, OCTET_STREAM, TEXT, decode_items, encode_item, log_records

pytestmark = pytest.mark.anyio


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _all(aiter: AsyncIterator[object]) -> list[object]:
    return [item async for item in aiter]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
async def test_text_lines_survive_any_chunking(size: int) -> None:
    data = "héllo\nworld\n\nlast".encode()
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    assert await _all(decode_items(_chunks(*parts), TEXT)) == ["héllo\n", "world\n", "\n", "last"]


async def test_ndjson_skips_blank_lines_and_joins_split_values() -> None:
    items = await _all(decode_items(_chunks(b'{"a":', b' 1}\n\n[2', b"]\n3"), NDJSON))
    assert items == [{"a": 1}, [2], 3]


async def test_octet_stream_keeps_chunks() -> None:
    assert await _all(decode_items(_chunks(b"\n\x00", b"\xff"), OCTET_STREAM)) == [b"\n\x00", b"\xff"]


async def test_long_line_over_many_chunks() -> None:
    parts = [b"x" * 1000] * 500 + [b"\n"]
    assert await _all(decode_items(_chunks(*parts), TEXT)) == ["x" * 500_000 + "\n"]


async def test_log_records_and_invalid_lines() -> None:
    records = await _all(log_records(_chunks(b'{"level": "INFO", "msg": "a"}\nnot json\n[1]\n')))
    assert records[0] == {"level": "INFO", "msg": "a"}
    assert records[1] == {"level": "INFO", "msg": "not json", "invalid": True}
    assert records[2]["invalid"] is True


def test_encode_item() -> None:
    assert encode_item({"a": [1]}, NDJSON) == b'{"a":[1]}\n'
    assert encode_item("x\n", TEXT) == b"x\n"
    assert encode_item(bytearray(b"\x00"), NDJSON) == b"\x00"


@pytest.mark.parametrize("size", [1, 2, 3, 5])
async def test_a_multibyte_charset_survives_characters_split_across_chunks(size: int) -> None:
    text = "日本語のテキスト\n二行目\n末尾"
    data = text.encode("shift_jis")
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    items = await _all(decode_items(_chunks(*parts), "text/plain; charset=Shift_JIS"))
    assert items == ["日本語のテキスト\n", "二行目\n", "末尾"]


async def test_latin1_text_is_decoded_in_latin1() -> None:
    items = await _all(decode_items(_chunks(b"Jos\xe9\n\xdc", b"ber\n"), 'text/plain; charset="ISO-8859-1"'))
    assert items == ["José\n", "Über\n"]


async def test_a_newline_byte_inside_a_utf16_character_is_not_a_line_end() -> None:
    # "\u0a0a" is b"\n\n" in UTF-16-LE: only the decoded text says where a line ends.
    data = "a\u0a0ab\nc\n".encode("utf-16-le")
    items = await _all(decode_items(_chunks(data[:3], data[3:]), "text/plain; charset=utf-16-le"))
    assert items == ["a\u0a0ab\n", "c\n"]


async def test_an_unknown_charset_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown charset 'no-such-charset'"):
        await _all(decode_items(_chunks(b"x\n"), "text/plain; charset=no-such-charset"))
    with pytest.raises(ValueError, match="unknown charset 'no-such-charset'"):
        encode_item("x\n", "text/plain; charset=no-such-charset")


def test_encode_item_in_the_content_types_charset() -> None:
    assert encode_item("José\n", "text/plain; charset=latin-1") == b"Jos\xe9\n"
    assert encode_item("José\n", "text/plain") == "José\n".encode()
    assert encode_item({"é": 1}, "application/x-ndjson; charset=latin-1") == b'{"\\u00e9":1}\n'
    with pytest.raises(ValueError, match="cannot encode '€' in iso8859-1"):
        encode_item("5 €\n", "text/plain; charset=latin-1")
