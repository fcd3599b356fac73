"""The tiny hub of docs/host_bridge.md runs and prints what the doc says."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hb_helpers import ROOT, real_runner_available


def _blocks() -> tuple[str, str]:
    text = (ROOT / "docs" / "host_bridge.md").read_text()
    section = text.split("## A tiny hub", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    output = re.search(r"Output:\n\n```\n(.*?)```", section, re.DOTALL)
    assert code and output
    return code.group(1), output.group(1)


@pytest.mark.skipif(not real_runner_available(), reason="python -m runner is not available")
def test_tiny_hub_example_runs() -> None:
    code, expected = _blocks()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected
