"""The tiny hub of docs/host_bridge.md runs and prints what the doc says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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


def test_tiny_hub_example_passes_mypy_strict(tmp_path: Path) -> None:
    """The doc says everything is typed: the example a hub author copies must pass mypy --strict."""
    mypy = pytest.importorskip("mypy.api")
    code, _ = _blocks()
    example = tmp_path / "tiny_hub.py"
    example.write_text(code)
    cwd = os.getcwd()
    os.chdir(ROOT)  # host_bridge and runner are found as the packages in the repository
    try:
        out, err, status = mypy.run(["--strict", "--cache-dir", str(tmp_path / "cache"), str(example)])
    finally:
        os.chdir(cwd)
    assert status == 0, out + err
