"""The project supports Python 3.10 (pyproject's requires-python), but CI runs the suite on the
machine's python3. Grammar and compiler rules that changed in 3.11 (an ``await`` inside a
comprehension nested in another, ``except*``) would only show on 3.10, so every Python file of
the repository is compiled by a 3.10 interpreter when one is installed (pyenv or PATH).
Running the suite itself on 3.10 is a separate matter (a venv with the dependencies)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def python310() -> str | None:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python")))
    return found[-1] if found else shutil.which("python3.10")


def tracked_python_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        pytest.skip(f"not a git checkout: {out.stderr.strip()}")
    return out.stdout.split()


COMPILE_ALL = """
import sys
failed = []
for path in sys.argv[1:]:
    try:
        compile(open(path, "rb").read(), path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        failed.append(f"{path}:{exc.lineno}: {exc.msg}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_python_file_compiles_on_python_310() -> None:
    interpreter = python310()
    if interpreter is None:
        pytest.skip("no Python 3.10 here (pyenv or python3.10 on PATH)")
    files = tracked_python_files()
    assert len(files) > 100, files  # the whole repository, not an empty listing
    done = subprocess.run([interpreter, "-c", COMPILE_ALL, *files], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
