"""``python -m runner pack``: the archive a hub accepts, and running it."""

from __future__ import annotations

import base64
import hashlib
import shutil
import tarfile
import zipfile

from cli_helpers import run_cli, sample


def members(path) -> list[str]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getnames()


def test_pack_hello_and_run_the_archive(tmp_path):
    out = tmp_path / "hello.tar.gz"
    proc = run_cli("pack", sample("hello"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    names = members(out)
    assert names[0] == "package.json"
    assert sorted(names) == ["README.md", "main.py", "package.json"]
    with tarfile.open(out, "r:gz") as tar:
        for info in tar.getmembers():
            assert info.isfile() and info.uid == 0 and info.gid == 0 and info.mtime == 0
    run = run_cli("run", str(out), input=b"packed\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"Hello packed!\n"


def test_pack_is_deterministic_and_excludes_junk(tmp_path):
    src = tmp_path / "seq"
    shutil.copytree(sample("counter"), src)
    for junk in ("__pycache__/main.cpython-311.pyc", ".git/HEAD", ".venv/bin/python", "sub/__pycache__/x.pyc",
                 "stale.pyc"):
        path = src / junk
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"junk")
    (src / "sub" / "data.txt").write_text("kept\n")
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    assert run_cli("pack", str(src), "-o", str(a)).returncode == 0
    (src / "main.py").touch()  # a newer mtime must not change the bytes
    assert run_cli("pack", str(src), "-o", str(b)).returncode == 0
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    assert members(a) == ["package.json", "README.md", "main.py", "sub/data.txt"]
    run = run_cli("run", str(a), "2")
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"1\n2\n"


def test_pack_default_output_name(tmp_path):
    proc = run_cli("pack", sample("pipeline"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pipeline.tar.gz").is_file()


def test_pack_refuses_broken_package_json(tmp_path):
    src = tmp_path / "broken"
    src.mkdir()
    (src / "package.json").write_text('{"main": ')
    proc = run_cli("pack", str(src), "-o", str(tmp_path / "x.tar.gz"))
    assert proc.returncode == 21
    assert str(src / "package.json").encode() in proc.stderr
    assert not (tmp_path / "x.tar.gz").exists()


def test_pack_refuses_missing_main(tmp_path):
    src = tmp_path / "nomain"
    src.mkdir()
    (src / "package.json").write_text('{"main": "app.py"}')
    proc = run_cli("pack", str(src), "-o", str(tmp_path / "x.tar.gz"))
    assert proc.returncode == 21
    assert b"app.py" in proc.stderr
    proc = run_cli("pack", str(tmp_path / "missing"), "-o", str(tmp_path / "x.tar.gz"))
    assert proc.returncode == 21 and b"does not exist" in proc.stderr


def _wheel(directory, name: str, module_source: str):
    """A minimal pure-Python wheel, so --install-deps needs no network."""
    dist = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": module_source.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def test_pack_install_deps_into_pypackages(tmp_path):
    wheel = _wheel(tmp_path, "tinydep_e2e", "GREETING = 'hello from a dependency'\n")
    src = tmp_path / "withdeps"
    src.mkdir()
    (src / "package.json").write_text('{"name": "withdeps", "main": "main.py"}')
    (src / "main.py").write_text(
        "import tinydep_e2e\n"
        "async def run(context, input):\n"
        "    yield tinydep_e2e.GREETING + '\\n'\n"
    )
    (src / "requirements.txt").write_text(f"{wheel}\n")
    out = tmp_path / "withdeps.tar.gz"
    proc = run_cli("pack", str(src), "-o", str(out), "--install-deps", timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = members(out)
    assert "__pypackages__/tinydep_e2e.py" in names
    assert not (src / "__pypackages__").exists()  # the source directory is left alone
    run = run_cli("run", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"hello from a dependency\n"


def test_pack_install_deps_needs_requirements(tmp_path):
    proc = run_cli("pack", sample("hello"), "-o", str(tmp_path / "x.tar.gz"), "--install-deps")
    assert proc.returncode == 21
    assert b"requirements.txt" in proc.stderr
