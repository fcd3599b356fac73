"""Issue 11 item 7: a .tar.gz package is unpacked into ``<root>/runner-<pid>`` and removed on
every exit path (success, bad package.json, import error, run() failing, KILL, stop deadline),
in child and --inline mode. Real runner processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from runner_fault_helpers import REPO, TestHost, make_tgz, runner_env

from runner.protocol import Channel, Code

pytestmark = pytest.mark.timeout(60)

PRINT_CWD = "import os, sys\nprint('cwd=' + os.getcwd(), flush=True)\n"


def package(tmp_path: Path, main: str, package_json: bytes | None = None) -> Path:
    pj = package_json if package_json is not None else json.dumps({"name": "pkg", "main": "main.py"}).encode()
    return make_tgz(tmp_path / "pkg.tar.gz", [("package.json", pj, {}), ("main.py", main.encode(), {}),
                                              ("data/blob.bin", b"\1" * 100_000, {})])


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


CASES = {
    "completes": (PRINT_CWD + "def run(context, input):\n    return 'done\\n'\n", None, 0),
    "bad package.json": ("", b"{not json", 21),
    "import error": ("import no_such_module_here\n", None, 22),
    "run() raises": (PRINT_CWD + "def run(context, input):\n    raise RuntimeError('boom')\n", None, 23),
    "killed": (PRINT_CWD + "import asyncio\nasync def run(context, input):\n    await asyncio.sleep(60)\n",
               None, 137),
    "stop deadline passes": (PRINT_CWD + "import time\n"
                             "def run(context, input):\n"
                             "    context.set_stop_handler(lambda *a: time.sleep(30))\n"
                             "    print('ready', flush=True)\n"
                             "    import asyncio\n    return asyncio.sleep(60)\n", None, 138),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_unpacked_package_is_removed_on_every_exit(tmp_path: Path, case: str) -> None:
    main, pj, expected = CASES[case]
    root = tmp_path / "root"
    tgz = package(tmp_path, main, pj)
    with TestHost(tgz, env={"SEQUENCE_RUNNER_EXTRACT_ROOT": str(root)}) as host:
        own_dir = root / f"runner-{host.proc.pid}"
        if "cwd=" in main:
            out = host.wait_data(Channel.STDOUT, b"\n").decode()
            assert out.startswith(f"cwd={own_dir}"), out  # the documented place, while it runs
            assert (own_dir / "data" / "blob.bin").stat().st_size == 100_000
        if case == "killed":
            host.send(Code.KILL)
        elif case == "stop deadline passes":
            host.wait_data(Channel.STDOUT, b"ready\n")
            host.send(Code.STOP, {"timeout": 300, "canCallKeepalive": False})
        elif case == "completes":
            host.send_end(Channel.IN)
        code, err = host.finish()
    assert code == expected, err
    assert _leftovers(root) == [], f"left behind after exit {code}: {_leftovers(root)}"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "runner", "run", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, env=runner_env(env), cwd=str(REPO), timeout=60, check=False)


@pytest.mark.parametrize("mode", ["child", "inline"])
@pytest.mark.parametrize(("main", "expected"), [
    (PRINT_CWD + "def run(context, input):\n    return 'done\\n'\n", 0),
    ("raise SystemExit(3)\n", 22),
    (PRINT_CWD + "def run(context, input):\n    raise RuntimeError('boom')\n", 23),
])
def test_cli_runs_leave_nothing_behind(tmp_path: Path, mode: str, main: str, expected: int) -> None:
    root = tmp_path / "root"
    tgz = package(tmp_path, main)
    done = _cli(str(tgz), *(["--inline"] if mode == "inline" else []),
                env={"SEQUENCE_RUNNER_EXTRACT_ROOT": str(root)})
    assert done.returncode == expected, done.stderr.decode()
    if expected == 0:
        assert done.stdout == b"done\n"
    assert f"cwd={root}{os.sep}runner-".encode() in done.stderr + done.stdout or "cwd=" not in main
    assert _leftovers(root) == []


def test_a_stale_directory_of_a_reused_pid_is_replaced(tmp_path: Path) -> None:
    from runner.sequence import archive

    stale = archive.extraction_dir(pid=4242, env={archive.EXTRACT_ROOT_ENV: str(tmp_path)})
    (stale / "old").mkdir(parents=True)
    (stale / "old" / "file").write_bytes(b"x")
    os.chmod(stale / "old", 0o500)  # not writable: removal must still work
    archive.prepare_extraction_dir(stale)
    assert stale.is_dir() and list(stale.iterdir()) == []
    assert (tmp_path.stat().st_mode & 0o777) != 0 and oct(stale.stat().st_mode & 0o777) == oct(0o700)
