"""A hub author's own project type-checks against this install (issue 14 items 13 and 14).

mypy runs in a directory outside the repository with no PYTHONPATH/MYPYPATH, so it
sees host_bridge only through the installed package: with the README's editable
install that works because pyproject.toml makes it a static .pth file (an import
hook, setuptools' default for this layout, is invisible to type checkers). The
hub it checks is the tiny hub of docs/host_bridge.md, which claims mypy --strict.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import REPO

pytestmark = pytest.mark.timeout(240)

WRONG = """\
from host_bridge import Bridge, Instance


async def spawn(bridge: Bridge) -> int:
    instance: Instance = await bridge.spawn("x")
    return instance.status  # a Status, not an int: only visible if mypy sees host_bridge
"""


def tiny_hub() -> str:
    section = (REPO / "docs" / "host_bridge.md").read_text(encoding="utf-8").split("## A tiny hub", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code, "docs/host_bridge.md lost its tiny hub"
    return code.group(1)


def mypy_strict(project: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull, *files],
        cwd=project, env=env, capture_output=True, text=True, timeout=200, check=False,
    )


def test_a_hub_project_outside_the_checkout_type_checks_against_host_bridge(tmp_path):
    project = tmp_path / "my-hub"
    project.mkdir()
    (project / "tiny_hub.py").write_text(tiny_hub(), encoding="utf-8")
    (project / "wrong.py").write_text(WRONG, encoding="utf-8")

    good = mypy_strict(project, "tiny_hub.py")
    assert good.returncode == 0, good.stdout + good.stderr

    bad = mypy_strict(project, "wrong.py")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert 'Incompatible return value type (got "Status", expected "int")' in bad.stdout, bad.stdout
    assert "import-not-found" not in bad.stdout and "import-untyped" not in bad.stdout
