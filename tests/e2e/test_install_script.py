"""scripts/install (called by scripts/test, which .ci/run calls) runs pip only when something
changed (issue 14 item 15); scripts/install_check.py makes that decision."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import REPO

CHECK = REPO / "scripts" / "install_check.py"


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=REPO)


def test_the_check_notices_missing_records_other_checkouts_and_changed_inputs(tmp_path):
    root = tmp_path / "checkout"
    (root / "_speedups").mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(REPO / name, root / name)
    (root / "_speedups" / "framer.pyx").write_text("# cython source\n")
    stamp = tmp_path / "stamp.json"
    args = ("--root", str(root), "--stamp", str(stamp))

    first = check(*args)
    assert first.returncode == 1 and "no record of a previous install" in first.stderr

    assert check(*args, "--record").returncode == 0
    same = check(*args)  # inputs unchanged: the next question is where the install comes from
    assert same.returncode == 1 and "not from" in same.stderr and "changed" not in same.stderr

    (root / "_speedups" / "framer.pyx").write_text("# cython source, edited\n")
    edited = check(*args)
    assert edited.returncode == 1 and "changed since the last install" in edited.stderr

    assert check(*args, "--record").returncode == 0
    with (root / "pyproject.toml").open("a") as f:
        f.write("\n# a new dependency would go here\n")
    assert "changed since the last install" in check(*args).stderr


def test_the_check_passes_for_this_checkout_once_recorded(tmp_path):
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip("the tests do not run in this checkout's .venv")
    stamp = tmp_path / "stamp.json"
    assert check("--stamp", str(stamp), "--record").returncode == 0
    current = check("--stamp", str(stamp))
    assert current.returncode == 0, current.stderr


def test_scripts_install_skips_pip_when_nothing_changed():
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip("the tests do not run in this checkout's .venv")
    if check().returncode != 0:
        pytest.skip("this .venv is not current by scripts/install_check.py (bash scripts/install updates it)")
    env = {k: v for k, v in os.environ.items() if k != "SEQUENCE_RUNNER_REINSTALL"}
    started = time.monotonic()
    done = subprocess.run(["bash", str(REPO / "scripts" / "install")], capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "install: up to date (pip skipped)"
    assert took < 30, f"scripts/install took {took:.1f} s with nothing to do"
