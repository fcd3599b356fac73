"""Issue 14 items 6 and 7: successes that used to say nothing, and charsets.

* a run() that never reads the input it was given completes with one warning;
* what items that are not str or bytes become, per output content type;
* ``text/plain; charset=...`` is honoured (input and output), an unknown charset refused clearly.

Real runners (the test host and the CLI).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from runner_fault_helpers import REPO, TestHost, runner_env, sequence_file

from runner.protocol import Channel, Code

pytestmark = pytest.mark.timeout(60)

WARNING = "completed without reading its input"


def _warnings(host: TestHost) -> list[str]:
    return [r["msg"] for r in host.log_records() if r.get("level") == "WARN" and r.get("from") == "runner"]


@pytest.mark.parametrize(("body", "warned"), [
    ("    await asyncio.sleep(0.5)\n", True),  # forgot to return: the input is never read
    ("    await asyncio.sleep(0.5)\n    return input\n", False),
    ("    await asyncio.sleep(0.5)\n    async for _ in input:\n        pass\n", False),
])
def test_input_given_but_never_read_is_warned_once(tmp_path: Path, body: str, warned: bool) -> None:
    path = sequence_file(tmp_path, "import asyncio\n\nasync def run(context, input):\n" + body)
    with TestHost(path) as host:
        host.send_data(Channel.IN, b"one\ntwo\n")
        host.send_end(Channel.IN)
        assert host.finish()[0] == 0, host.summary()
    unread = [w for w in _warnings(host) if WARNING in w]
    assert len(unread) == (1 if warned else 0), _warnings(host)
    if warned:
        assert "8 bytes arrived on IN" in unread[0]


def test_the_cli_shows_the_unread_input_warning(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, "import time\n\ndef run(context, input):\n    time.sleep(0.5)\n")
    done = subprocess.run([sys.executable, "-m", "runner", "run", str(path)], input=b"data\n",
                          capture_output=True, env=runner_env(), cwd=str(REPO), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().count(WARNING) == 1, done.stderr


VALUES = """
class Thing:
    def __str__(self):
        return "a thing"

ITEMS = ["text ", b"bytes\\n", 4, 2.5, True, None, {"a": [1, "\u017c"]}, [1, 2], Thing()]
"""


@pytest.mark.parametrize(("content_type", "expected"), [
    ("text/plain", 'text bytes\n4\n2.5\ntrue\nnull\n{"a": [1, "\u017c"]}\n[1, 2]\na thing\n'.encode()),
    ("text/csv", 'text bytes\n4\n2.5\ntrue\nnull\n{"a": [1, "\u017c"]}\n[1, 2]\na thing\n'.encode()),
])
def test_items_that_are_not_text_become_one_line_each(tmp_path: Path, content_type: str, expected: bytes) -> None:
    path = sequence_file(tmp_path, VALUES + f"""
provides = {{"provides": "", "contentType": "{content_type}"}}

async def run(context, input):
    for item in ITEMS:
        yield item
""")
    with TestHost(path) as host:
        host.send_end(Channel.IN)
        assert host.finish()[0] == 0, host.summary()
    assert bytes(host.data[Channel.OUT]) == expected


def test_ndjson_output_writes_any_json_value_and_refuses_bytes_clearly(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
provides = {"provides": "", "contentType": "application/x-ndjson"}

async def run(context, input):
    for item in ["s", 4, True, None, {"a": 1}, [2]]:
        yield item
    yield b"raw"
""")
    with TestHost(path) as host:
        host.send_end(Channel.IN)
        code, _ = host.finish()
    assert code == 23
    assert bytes(host.data[Channel.OUT]) == b'"s"\n4\ntrue\nnull\n{"a": 1}\n[2]\n'
    error = host.messages(Code.ERROR)[0]
    assert error["message"].startswith("OutputEncodeError: application/x-ndjson output: cannot write an item "
                                       "of type bytes")
    assert error["stack"].count("\n") == 1  # nothing but runner frames: the exception line alone


def test_binary_output_refuses_a_number_naming_its_type(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
provides = {"provides": "", "contentType": "application/octet-stream"}

def run(context, input):
    return [b"ok", "text", 7]
""")
    with TestHost(path) as host:
        host.send_end(Channel.IN)
        code, _ = host.finish()
    assert code == 23
    assert host.messages(Code.ERROR)[0]["message"] == (
        "OutputEncodeError: application/octet-stream output: cannot write an item of type int "
        "(expected bytes, bytearray, memoryview or str)")


# -- charset ---------------------------------------------------------------------------------------
def test_text_input_in_latin_1_is_decoded_with_its_charset(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
async def run(context, input):
    async for line in input:
        yield f"{len(line.strip())}:{line}"
""")
    with TestHost(path) as host:
        host.wait_message(Code.PANG)
        host.send(Code.INPUT_CONTENT_TYPE, {"contentType": "text/plain; charset=latin-1"})
        host.send_data(Channel.IN, "café\nżółw?\n".encode("latin-1", "replace"))
        host.send_end(Channel.IN)
        assert host.finish()[0] == 0, host.summary()
    assert bytes(host.data[Channel.OUT]).decode() == "4:café\n5:?ó?w?\n"


def test_text_output_in_latin_1_is_encoded_and_announced(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
provides = {"provides": "", "contentType": "text/plain; charset=ISO-8859-1"}

def run(context, input):
    return ["café\\n", 1]
""")
    with TestHost(path) as host:
        host.send_end(Channel.IN)
        assert host.finish()[0] == 0, host.summary()
    assert bytes(host.data[Channel.OUT]) == "café\n1\n".encode("latin-1")
    assert host.messages(Code.PANG)[-1]["contentType"] == "text/plain; charset=iso-8859-1"


@pytest.mark.parametrize(("content_type", "message"), [
    ("text/plain; charset=klingon",
     "input error: content type 'text/plain; charset=klingon': unknown charset 'klingon'"),
    ("application/x-ndjson; charset=latin-1",
     "input error: content type 'application/x-ndjson; charset=latin-1': application/x-ndjson input is UTF-8"),
])
def test_a_charset_that_cannot_be_honoured_is_refused_in_one_line(tmp_path: Path, content_type: str,
                                                                   message: str) -> None:
    path = sequence_file(tmp_path, "async def run(context, input):\n    async for x in input:\n        yield x\n")
    with TestHost(path) as host:
        host.wait_message(Code.PANG)
        host.send(Code.INPUT_CONTENT_TYPE, {"contentType": content_type})
        host.send_data(Channel.IN, b"x\n")
        host.send_end(Channel.IN)
        code, _ = host.finish()
    assert code == 23
    error = host.messages(Code.ERROR)[0]
    assert error["message"].startswith(message), error
    assert error["stack"] == error["message"] + "\n"


def test_the_cli_checks_the_charset_before_starting_anything(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, "def run(context, input):\n    return input\n")
    done = subprocess.run([sys.executable, "-m", "runner", "run", str(path), "-t", "text/plain; charset=klingon"],
                          input=b"x\n", capture_output=True, env=runner_env(), cwd=str(REPO), timeout=60,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert b"klingon" in done.stderr
    ok = subprocess.run([sys.executable, "-m", "runner", "run", str(path), "-t", "text/plain; charset=latin-1"],
                        input="é\n".encode("latin-1"), capture_output=True, env=runner_env(), cwd=str(REPO),
                        timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "é\n".encode()  # decoded from latin-1, written as UTF-8 text


# -- nothing lost before an input error ------------------------------------------------------------
ECHO_REPR = """
async def run(context, input):
    async for item in input:
        yield f"got {item!r}\\n"
"""


@pytest.mark.parametrize(("content_type", "data", "delivered", "message"), [
    ("text/plain", b"one\ntwo\nbad \xff\nafter\n", b"got 'one\\n'\ngot 'two\\n'\n",
     "input error: text/plain input is not valid UTF-8 at byte offset 12"),
    ("text/plain; charset=utf-8", b"one\ntwo\nba", b"got 'one\\n'\ngot 'two\\n'\n",  # + "d \xff" below
     "input error: text/plain input is not valid UTF-8 at byte offset 12"),
    ("application/x-ndjson", b'"one"\n"two"\n"bad \xff"\n"after"\n', b"got 'one'\ngot 'two'\n",
     "input error: application/x-ndjson input line 3: not valid UTF-8"),
])
def test_lines_before_an_invalid_byte_in_the_same_read_reach_the_sequence(
        tmp_path: Path, content_type: str, data: bytes, delivered: bytes, message: str) -> None:
    path = sequence_file(tmp_path, ECHO_REPR)
    with TestHost(path) as host:
        host.wait_message(Code.PANG)
        host.send(Code.INPUT_CONTENT_TYPE, {"contentType": content_type})
        host.send_data(Channel.IN, data)
        if data.endswith(b"ba"):  # the bad byte comes with the rest of an incomplete line
            host.send_data(Channel.IN, b"d \xff\nafter\n")
        host.send_end(Channel.IN)
        code, _ = host.finish()
    assert code == 23, host.summary()
    assert bytes(host.data[Channel.OUT]) == delivered
    assert host.messages(Code.ERROR)[0]["message"].startswith(message), host.summary()


def test_the_cli_writes_the_lines_before_an_invalid_byte(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, ECHO_REPR)
    for mode in ([], ["--inline"]):
        done = subprocess.run([sys.executable, "-m", "runner", "run", str(path), *mode],
                              input=b"one\ntwo\nbad \xff\nafter\n", capture_output=True, env=runner_env(),
                              cwd=str(REPO), timeout=60, check=False)
        assert done.returncode == 23, (mode, done.stderr)
        assert done.stdout == b"got 'one\\n'\ngot 'two\\n'\n", (mode, done.stderr)
        assert b"not valid UTF-8 at byte offset 12" in done.stderr, (mode, done.stderr)
