"""Issue 11 items 8 and 9, issue 14 items 4 and 5: every way a Sequence ends is classified and
goes through the runner's one exit path (ERROR, EXITING, the exit budget), with only the user's
frames in the traceback, the same in child and --inline mode. Real runner processes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from runner_fault_helpers import REPO, TestHost, runner_env, sequence_file

from runner.protocol import Channel, Code

pytestmark = pytest.mark.timeout(90)

#: A non-daemon thread that never ends: the interpreter's own exit would wait for it for ever.
STUCK_THREAD = """
import threading, time
threading.Thread(target=lambda: time.sleep(3600), daemon=False).start()
"""
RUNNER_FRAMES = ("runner/app.py", "runner/sequence/shapes.py", "asyncio/", "anyio/", "runner/sequence/loader.py")


def _no_runner_frames(stack: str) -> None:
    for frame in RUNNER_FRAMES:
        assert frame not in stack, f"{frame} in the traceback:\n{stack}"


def _finish(host: TestHost) -> tuple[int, str, float]:
    started = time.monotonic()
    code, err = host.finish(timeout=15)
    return code, err, time.monotonic() - started


def test_sys_exit_n_with_a_live_non_daemon_thread_exits_23_through_the_exit_path(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, STUCK_THREAD + """
async def run(context, input):
    yield "before\\n"
    helper()

def helper():
    import sys
    sys.exit(3)
""")
    with TestHost(path) as host:
        host.send_end(Channel.IN)
        code, err, took = _finish(host)
    assert code == 23, host.summary()
    assert took < 5
    error = host.messages(Code.ERROR)[0]
    assert error["message"] == "the Sequence called sys.exit(3)" and error["exitCode"] == 23
    assert "in helper" in error["stack"] and "seq.py" in error["stack"]
    _no_runner_frames(error["stack"])
    assert host.messages(Code.EXITING)[-1]["exitCode"] == 23
    assert bytes(host.data[Channel.OUT]) == b"before\n"
    assert "runner: Sequence failed during execution: the Sequence called sys.exit(3)" in err


@pytest.mark.parametrize("call", ["sys.exit()", "sys.exit(0)", "sys.exit(None)"])
def test_sys_exit_0_in_run_completes_as_if_run_returned(tmp_path: Path, call: str) -> None:
    path = sequence_file(tmp_path, STUCK_THREAD + f"""
import sys
async def run(context, input):
    yield "one\\n"
    yield "two\\n"
    {call}
    yield "never\\n"
""")
    with TestHost(path) as host:
        host.send_end(Channel.IN)
        code, _err, took = _finish(host)
    assert code == 0, host.summary()
    assert took < 5
    assert bytes(host.data[Channel.OUT]) == b"one\ntwo\n"
    codes = host.codes()
    assert Code.SEQUENCE_COMPLETED in codes and codes[-1] == Code.EXITING
    assert not host.messages(Code.ERROR)
    assert host.messages(Code.EXITING)[-1]["exitCode"] == 0


def test_keyboard_interrupt_raised_in_run_is_a_failure_not_a_signal(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, STUCK_THREAD + """
def run(context, input):
    raise KeyboardInterrupt
""")
    with TestHost(path) as host:
        code, _err, _ = _finish(host)
    assert code == 23, host.summary()
    error = host.messages(Code.ERROR)[0]
    assert error["message"] == "the Sequence raised KeyboardInterrupt"
    assert "seq.py" in error["stack"]
    _no_runner_frames(error["stack"])
    assert host.messages(Code.EXITING)[-1]["exitCode"] == 23


@pytest.mark.parametrize(("statement", "message"), [
    ("raise KeyboardInterrupt", "raised KeyboardInterrupt while"),
    ("import sys; sys.exit(5)", "called sys.exit(5) while"),
    ("import sys; sys.exit(0)", "called sys.exit(0) while"),
])
def test_keyboard_interrupt_or_sys_exit_at_import_is_exit_22(tmp_path: Path, statement: str, message: str) -> None:
    path = sequence_file(tmp_path, STUCK_THREAD + statement + "\ndef run(context, input):\n    pass\n")
    with TestHost(path) as host:
        code, err, took = _finish(host)
    assert code == 22, host.summary()
    assert took < 5
    error = host.messages(Code.ERROR)[0]
    assert message in error["message"] and error["exitCode"] == 22
    _no_runner_frames(error["stack"])
    assert "seq.py" in error["stack"]
    assert host.messages(Code.EXITING)[-1]["exitCode"] == 22
    assert "runner: Sequence failed on start: the Sequence" in err


def test_sys_exit_in_an_event_callback_goes_through_the_exit_path(tmp_path: Path) -> None:
    """asyncio lets SystemExit out of the loop from a callback: it still ends through the exit path."""
    path = sequence_file(tmp_path, STUCK_THREAD + """
import asyncio, sys
async def run(context, input):
    context.on("quit", lambda message: sys.exit(int(message)))
    print("ready", flush=True)
    await asyncio.sleep(60)
""")
    with TestHost(path) as host:
        host.wait_data(Channel.STDOUT, b"ready\n")
        host.send(Code.EVENT, {"eventName": "quit", "message": 4})
        code, _err, took = _finish(host)
    assert code == 23, host.summary()
    assert took < 5
    assert host.messages(Code.ERROR)[0]["message"] == "the Sequence called sys.exit(4)"
    assert host.messages(Code.EXITING)[-1]["exitCode"] == 23


def test_run_time_errors_show_only_the_users_frames_unless_asked(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
async def run(context, input):
    async for line in input:
        yield parse(line)

def parse(line):
    return int(line)
""")
    stacks = {}
    for full in ("", "1"):
        with TestHost(path, env={"SEQUENCE_RUNNER_FULL_TRACEBACK": full}) as host:
            host.send_data(Channel.IN, b"12\nnot a number\n")
            host.send_end(Channel.IN)
            code, _err, _ = _finish(host)
        assert code == 23
        stacks[full] = host.messages(Code.ERROR)[0]["stack"]
        assert "in parse" in stacks[full] and "ValueError: invalid literal for int()" in stacks[full]
    _no_runner_frames(stacks[""])
    assert stacks[""].count('File "') == 2  # run and parse, nothing else
    assert "runner/sequence/shapes.py" in stacks["1"]  # the full traceback when asked for


@pytest.mark.parametrize(("content_type", "data", "message"), [
    ("text/plain", b"good\nbad \xff line\n", "input error: text/plain input is not valid UTF-8 at byte offset 9"),
    ("application/x-ndjson", b'{"a": 1}\n2\n{oops\n', "input error: application/x-ndjson input line 3: invalid JSON"),
])
def test_input_decoding_errors_are_one_line(tmp_path: Path, content_type: str, data: bytes, message: str) -> None:
    path = sequence_file(tmp_path, """
async def run(context, input):
    async for item in input:
        yield f"{item!r}\\n"
""")
    with TestHost(path) as host:
        host.wait_message(Code.PANG)
        host.send(Code.INPUT_CONTENT_TYPE, {"contentType": content_type})
        host.send_data(Channel.IN, data)
        host.send_end(Channel.IN)
        code, err, _ = _finish(host)
    assert code == 23
    error = host.messages(Code.ERROR)[0]
    assert error["message"].startswith(message), error
    assert error["stack"] == error["message"] + "\n"
    assert host.text(Channel.STDERR) == error["stack"]
    assert "Traceback" not in err


def test_breakpoint_without_inline_says_to_use_inline_and_goes_on(tmp_path: Path) -> None:
    path = sequence_file(tmp_path, """
def run(context, input):
    breakpoint()
    breakpoint()
    return "after the breakpoints\\n"
""")
    with TestHost(path, env={"PYTHONBREAKPOINT": ""}) as host:
        host.send_end(Channel.IN)
        code, _err, _ = _finish(host)
    assert code == 0, host.summary()
    assert bytes(host.data[Channel.OUT]) == b"after the breakpoints\n"
    stderr = host.text(Channel.STDERR)
    assert stderr.count("breakpoint() ignored") == 1 and "python -m runner run --inline" in stderr
    assert "BdbQuit" not in stderr


# -- the same result in child and --inline mode ----------------------------------------------------
ENDINGS = {
    "sys.exit(3)": ("def run(context, input):\n    import sys\n    sys.exit(3)\n", 23, "sys.exit(3)"),
    "KeyboardInterrupt": ("def run(context, input):\n    raise KeyboardInterrupt\n", 23, "KeyboardInterrupt"),
    "sys.exit(0)": ("async def run(context, input):\n    yield 'x\\n'\n    import sys\n    sys.exit(0)\n",
                    0, ""),
    "KeyboardInterrupt at import": ("raise KeyboardInterrupt\n", 22, "KeyboardInterrupt"),
    "bad input": ("async def run(context, input):\n    async for x in input:\n        yield x\n", 23,
                  "input error: text/plain input is not valid UTF-8 at byte offset 2"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_child_and_inline_agree(tmp_path: Path, ending: str) -> None:
    code, expected, needle = ENDINGS[ending]
    path = sequence_file(tmp_path, STUCK_THREAD + code)
    results = {}
    for mode in ("child", "inline"):
        done = subprocess.run([sys.executable, "-m", "runner", "run", str(path),
                               *(["--inline"] if mode == "inline" else [])],
                              input=b"ok\xff\n", capture_output=True, env=runner_env(), cwd=str(REPO),
                              timeout=60, check=False)
        results[mode] = done.returncode
        stderr = done.stderr.decode("utf-8", "replace")
        assert needle in stderr, f"{mode}: {stderr}"
        assert "runner/sequence/shapes.py" not in stderr and "runner/app.py" not in stderr, f"{mode}: {stderr}"
        if expected == 0:
            assert done.stdout == b"x\n"
    assert results == {"child": expected, "inline": expected}
