"""``run --env FILE`` (issue 14 item 12): dotenv-style variables reach the Sequence's os.environ,
in a runner child and inline, and a bad file is a usage error naming file and line."""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_cli

SEQUENCE = """\
import os

NAMES = ("PLAIN", "QUOTED", "SINGLE", "ESCAPED", "EMPTY", "EXPORTED", "LATER", "HOME_AT_IMPORT")
HOME_AT_IMPORT = os.environ.get("PLAIN")  # set before the Sequence is imported


async def run(context, input):
    env = {name: os.environ.get(name) for name in NAMES}
    env["HOME_AT_IMPORT"] = HOME_AT_IMPORT
    yield __import__("json").dumps(env) + "\\n"
"""

ENV_FILE = """\
# settings for the test
PLAIN=value with spaces   # and a comment
QUOTED="a \\"b\\" # not a comment\\nsecond line"
SINGLE='$HOME stays \\n as written'

export EXPORTED=yes
EMPTY=
LATER=first
"""


@pytest.mark.parametrize("mode", [(), ("--inline",)], ids=["child", "inline"])
def test_env_files_reach_the_sequence(tmp_path, mode):
    (tmp_path / "seq.py").write_text(SEQUENCE)
    (tmp_path / "a.env").write_text(ENV_FILE)
    (tmp_path / "b.env").write_text("LATER=second\n")
    proc = run_cli("run", *mode, str(tmp_path / "seq.py"), "--env", str(tmp_path / "a.env"),
                   "--env", str(tmp_path / "b.env"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "PLAIN": "value with spaces",
        "QUOTED": 'a "b" # not a comment\nsecond line',
        "SINGLE": "$HOME stays \\n as written",
        "ESCAPED": None,
        "EMPTY": "",
        "EXPORTED": "yes",
        "LATER": "second",
        "HOME_AT_IMPORT": "value with spaces",
    }


@pytest.mark.parametrize(("content", "says"), [
    ("GOOD=1\nthis is not an assignment\n", ":2: expected NAME=VALUE"),
    ("1BAD=x\n", ":1: '1BAD' is not a variable name"),
    ('OPEN="never closed\n', ":1: the value '\"never closed' has no closing \""),
    ("Q='x' trailing\n", ":1: unexpected 'trailing' after the closing quote"),
])
def test_a_bad_env_file_is_a_usage_error_naming_the_line(tmp_path, content, says):
    (tmp_path / "seq.py").write_text(SEQUENCE)
    env = tmp_path / "bad.env"
    env.write_text(content)
    proc = run_cli("run", str(tmp_path / "seq.py"), "--env", str(env))
    assert proc.returncode == 2
    assert f"--env {env}{says}" in proc.stderr.decode(), proc.stderr


def test_a_missing_env_file_is_a_usage_error(tmp_path):
    proc = run_cli("run", str(tmp_path / "seq.py"), "--env", str(tmp_path / "nope.env"))
    assert proc.returncode == 2
    assert b"nope.env: cannot read: No such file or directory" in proc.stderr
