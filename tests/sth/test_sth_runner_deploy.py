"""deploy/sth: the runner.py shim STH's process adapter starts.

The Docker image (deploy/Dockerfile, target sth) is built and run in real containers by
tests/containers/test_container_sth.py; PID-1 behaviour without Docker is tested in
test_sth_runner_transport.py (a PID namespace instead of a container).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_sth_runner_support import ROOT, collect, new_host, seq

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SHIM = ROOT / "deploy" / "sth" / "runner.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_shim_runs_the_runner_in_the_spawned_process(tmp_path: Path) -> None:
    """`python3 <dir>/runner.py ./python-runner-startup.log`, as STH's process adapter runs it."""
    runner_dir = tmp_path / "python-runner"  # stands for node_modules/@scramjet/python-runner
    runner_dir.mkdir()
    shutil.copy(SHIM, runner_dir / "runner.py")
    async with new_host(tmp_path, runner_command=[str(runner_dir / "runner.py")]) as host:
        inst = await host.start(seq("argv-check"))
        assert inst._process is not None and inst.pid == inst._process.pid  # no extra process
        report = json.loads(await collect(inst.output()))
        assert report["argv"] == []
        assert await inst.wait() == 0
        assert inst.exit_code_from_file == 0


async def test_shim_finds_the_package_through_sequence_runner_home(tmp_path: Path) -> None:
    runner_dir = tmp_path / "python-runner"
    runner_dir.mkdir()
    shutil.copy(SHIM, runner_dir / "runner.py")
    envs = {"SEQUENCE_RUNNER_HOME": str(ROOT)}
    async with new_host(tmp_path, runner_command=[str(runner_dir / "runner.py")],
                        runner_pythonpath=str(tmp_path / "elsewhere"), runner_envs=envs) as host:
        inst = await host.start(seq("hello"))
        await inst.send_input(b"shim\n")
        await inst.end_input()
        assert await collect(inst.output()) == b"Hello shim!\n"
        assert await inst.wait() == 0



def test_shim_without_the_package_says_how_to_install_it_and_exits_20(tmp_path: Path) -> None:
    """`-S`: no site-packages, so no sequence-runner (it is installed there, editable)."""
    import os
    import subprocess
    import sys

    runner_dir = tmp_path / "python-runner"
    runner_dir.mkdir()
    shutil.copy(SHIM, runner_dir / "runner.py")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEQUENCE_RUNNER_HOME")}
    env["SEQUENCE_RUNNER_HOME"] = str(tmp_path / "no-checkout")
    proc = subprocess.Popen([sys.executable, "-S", str(runner_dir / "runner.py"), "./startup.log"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    exit_file = Path(f"/tmp/runner-{proc.pid}")
    try:
        assert proc.returncode == 20 and out == b""
        assert exit_file.read_text() == "20"
    finally:
        exit_file.unlink(missing_ok=True)
    message = err.decode()
    assert f"cannot be imported by {sys.executable}" in message
    assert f"SEQUENCE_RUNNER_HOME={tmp_path / 'no-checkout'} holds no runner/__main__.py" in message
    assert f"'{sys.executable} -m pip install /path/to/sequence-runner'" in message
    assert f"--target {runner_dir / '__pypackages__'}" in message
