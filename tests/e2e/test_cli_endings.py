"""Issue 14 items 5, 6 and 8 through the real CLI (``python -m runner run``, runner child).

tests/faults checks the same behaviours against the runner process and host_bridge directly;
these show what a person at the command line sees.
"""

from __future__ import annotations

import signal

import pytest
from cli_helpers import run_cli

RUNNING = "[run] the Sequence is running"  # -v: run() has been called


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_breakpoint_without_inline_says_to_use_inline(tmp_path, verbose):
    """Item 5: no BdbQuit and exit 23, but one hint naming --inline (shown once, though the runner
    writes it to both the Sequence's stderr and its log), and the Sequence goes on."""
    seq = tmp_path / "debugme.py"
    seq.write_text("def run(context, input):\n    breakpoint()\n    breakpoint()\n    return 'after\\n'\n")
    proc = run_cli("run", *verbose, str(seq))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"after\n"
    err = proc.stderr.decode()
    assert err.count("breakpoint() ignored") == 1, err
    assert "python -m runner run --inline" in err, err
    assert "BdbQuit" not in err and "Traceback" not in err


def test_items_that_are_not_text_come_out_one_line_each(tmp_path):
    """Item 6: ints, floats, booleans, None and dicts yielded to text output are one line each
    (their JSON text), not run together ("42.5TrueNone")."""
    seq = tmp_path / "numbers.py"
    seq.write_text("async def run(context, input):\n"
                   "    for item in (4, 2.5, True, None, {'a': 1}, 'text\\n'):\n"
                   "        yield item\n")
    proc = run_cli("run", str(seq))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b'4\n2.5\ntrue\nnull\n{"a": 1}\ntext\n'


def test_the_exit_reason_after_a_stop_says_stopped(tmp_path, running):
    """Item 8: Ctrl-C stops the Sequence cleanly; the runner's reason is "stopped by the host", not
    "killed by the host"."""
    seq = tmp_path / "waits.py"
    seq.write_text("import asyncio\n\nasync def run(context, input):\n    await asyncio.sleep(60)\n")
    r = running("run", "-v", str(seq))
    r.wait_for(RUNNING)
    r.signal(signal.SIGINT)
    assert r.finish() == 138
    assert "exiting with 138: stopped by the host" in r.stderr, r.stderr
    assert "killed by the host" not in r.stderr, r.stderr
    assert "exit 138 (stopped)" in r.stderr.splitlines()[-1], r.stderr  # the summary line
