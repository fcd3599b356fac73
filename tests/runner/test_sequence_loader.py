"""runner.sequence.loader: directories, .tar.gz packages, .py files, and every error."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from runner.sequence.loader import (
    LoadedSequence,
    SequenceLoadError,
    SequencePathError,
    extract_package,
    load_sequence,
)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_sequences"


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    cwd = os.getcwd()
    path = list(sys.path)
    modules = set(sys.modules)
    yield
    os.chdir(cwd)
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        if name.startswith(("sequence_", "helper_mod_")):
            del sys.modules[name]


def make_pkg(tmp: Path, main_src: str = "def run(context, input):\n    return None\n", **pj: object) -> Path:
    root = tmp / "pkg"
    root.mkdir()
    package = {"name": "demo", "version": "1.2.3", "main": "main.py", "engines": {"python3": "3.10.0"}}
    package.update(pj)
    (root / "package.json").write_text(json.dumps(package))
    (root / "main.py").write_text(main_src)
    return root


# ------------------------------------------------------------------ success


def test_load_directory_reads_package_json(tmp_path: Path) -> None:
    root = make_pkg(
        tmp_path,
        "provides = {'provides': 't', 'contentType': 'application/x-ndjson'}\n"
        "requires = {'requires': 'r', 'contentType': 'text/plain'}\n"
        "output_type = 'application/octet-stream'\n"
        "def run(context, input, *args):\n    return args\n",
        args=[1, "two"],
    )
    seq = load_sequence(root)
    assert isinstance(seq, LoadedSequence)
    assert seq.root == root.resolve()
    assert seq.main == (root / "main.py").resolve()
    assert (seq.name, seq.version, seq.default_args) == ("demo", "1.2.3", [1, "two"])
    assert seq.provides == {"provides": "t", "contentType": "application/x-ndjson"}
    assert seq.requires == {"requires": "r", "contentType": "text/plain"}
    assert seq.output_type == "application/octet-stream"
    assert seq.input_content_type == "text/plain"
    assert seq.output_content_type == "application/x-ndjson"
    assert callable(seq.entry)
    assert sys.modules[seq.module.__name__] is seq.module
    assert seq.module.__name__.startswith("sequence_demo")
    assert os.getcwd() == str(root.resolve())


def test_module_names_are_unique(tmp_path: Path) -> None:
    a = make_pkg(tmp_path)
    s1 = load_sequence(a, chdir=False)
    s2 = load_sequence(a, chdir=False)
    assert s1.module.__name__ != s2.module.__name__
    assert s1.module is not s2.module


def test_chdir_happens_before_import_and_pypackages_first(tmp_path: Path) -> None:
    root = make_pkg(
        tmp_path,
        "import os, helper_mod_x\n"
        "with open('data.txt') as f:\n    DATA = f.read()\n"
        "WHERE = helper_mod_x.WHERE\n"
        "def run(context, input):\n    return DATA\n",
    )
    (root / "data.txt").write_text("relative ok")
    pyp = root / "__pypackages__"
    pyp.mkdir()
    (pyp / "helper_mod_x.py").write_text("WHERE = 'pypackages'\n")
    (root / "helper_mod_x.py").write_text("WHERE = 'root'\n")
    seq = load_sequence(root)
    assert seq.module.DATA == "relative ok"
    assert seq.module.WHERE == "pypackages"
    assert sys.path[0] == str(pyp)
    assert str(root.resolve()) in sys.path[:3]


def test_single_py_file(tmp_path: Path) -> None:
    f = tmp_path / "seq.py"
    f.write_text("def run(context, input):\n    yield 'x'\n")
    seq = load_sequence(f, chdir=False)
    assert seq.name == "seq" and seq.version == "0.0.0" and seq.default_args == []
    assert seq.root == tmp_path.resolve() and seq.main == f.resolve()


def test_pipeline_entry_list_and_node_descriptor(tmp_path: Path) -> None:
    root = make_pkg(
        tmp_path,
        "def a(c, i): return i\ndef b(c, i): return i\n"
        "run = [{'requires': 'x', 'contentType': 'text/plain'}, a, b]\n",
    )
    seq = load_sequence(root, chdir=False)
    assert isinstance(seq.entry, list) and len(seq.entry) == 3


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.iterdir() if (p / "package.json").exists()))
def test_every_sample_loads(sample: str) -> None:
    seq = load_sequence(SAMPLES / sample, chdir=False)
    assert seq.name == sample
    assert callable(seq.entry) or isinstance(seq.entry, list)


# ------------------------------------------------------------------ path errors (exit 21)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SequencePathError, match="no such file"):
        load_sequence(tmp_path / "nope")


def test_missing_package_json(tmp_path: Path) -> None:
    with pytest.raises(SequencePathError, match="no package.json"):
        load_sequence(tmp_path)


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{\n  "main": "main.py",\n  oops\n}')
    with pytest.raises(SequencePathError, match=r"package.json: invalid JSON at line 3 column 3"):
        load_sequence(tmp_path)


def test_package_json_not_an_object(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text("[1]")
    with pytest.raises(SequencePathError, match="JSON object"):
        load_sequence(tmp_path)


def test_main_missing(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"name": "x"}')
    with pytest.raises(SequencePathError, match="field `main` is missing"):
        load_sequence(tmp_path)


@pytest.mark.parametrize("main", [3, None, "", ["main.py"]])
def test_main_not_a_string(tmp_path: Path, main: object) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"main": main}))
    with pytest.raises(SequencePathError, match="field `main` must be a non-empty string"):
        load_sequence(tmp_path)


def test_main_file_missing(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"main": "app.py"}')
    with pytest.raises(SequencePathError, match=r"entrypoint path app.py is invalid. Check `main`"):
        load_sequence(tmp_path)


def test_main_outside_package(tmp_path: Path) -> None:
    (tmp_path / "outside.py").write_text("def run(c, i): pass\n")
    sub = tmp_path / "pkg"
    sub.mkdir()
    (sub / "package.json").write_text('{"main": "../outside.py"}')
    with pytest.raises(SequencePathError, match="outside the package"):
        load_sequence(sub)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("args", "nope", "field `args` must be a JSON array"), ("name", 5, "field `name` must be a string"),
     ("engines", "py", "field `engines` must be an object")],
)
def test_bad_fields(tmp_path: Path, field: str, value: object, match: str) -> None:
    root = make_pkg(tmp_path, **{field: value})
    with pytest.raises(SequencePathError, match=match):
        load_sequence(root)


def test_non_python_engine(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"main": "index.js", "engines": {"node": ">=16"}}')
    (tmp_path / "index.js").write_text("module.exports = () => {}")
    with pytest.raises(SequencePathError, match="not a Python Sequence"):
        load_sequence(tmp_path)


def test_not_a_sequence_file(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("hi")
    with pytest.raises(SequencePathError, match="not a Sequence"):
        load_sequence(f)


# ------------------------------------------------------------------ load errors (exit 22)


def test_syntax_error_has_traceback(tmp_path: Path) -> None:
    root = make_pkg(tmp_path, "def run(context, input)\n    pass\n")
    with pytest.raises(SequenceLoadError, match="syntax error") as ei:
        load_sequence(root, chdir=False)
    assert "SyntaxError" in ei.value.traceback_text
    assert "main.py" in ei.value.traceback_text


def test_import_error_has_traceback(tmp_path: Path) -> None:
    root = make_pkg(tmp_path, "import no_such_module_hopefully\ndef run(c, i): pass\n")
    with pytest.raises(SequenceLoadError, match="import error") as ei:
        load_sequence(root, chdir=False)
    assert "ModuleNotFoundError" in ei.value.traceback_text
    assert "no_such_module_hopefully" in ei.value.traceback_text


def test_exception_at_import(tmp_path: Path) -> None:
    root = make_pkg(tmp_path, "raise RuntimeError('boom at import')\n")
    with pytest.raises(SequenceLoadError, match="boom at import") as ei:
        load_sequence(root, chdir=False)
    tb = ei.value.traceback_text
    assert "RuntimeError: boom at import" in tb and 'main.py", line 1' in tb
    assert "loader.py" not in tb  # the loader's own frames are trimmed
    assert not [m for m in sys.modules if m.startswith("sequence_demo")]


def test_missing_run(tmp_path: Path) -> None:
    root = make_pkg(tmp_path, "x = 1\n")
    with pytest.raises(SequenceLoadError, match="defines no `run`"):
        load_sequence(root, chdir=False)


@pytest.mark.parametrize("src", ["run = 5\n", "run = []\n", "run = [print, 3]\n"])
def test_uncallable_run(tmp_path: Path, src: str) -> None:
    root = make_pkg(tmp_path, src)
    with pytest.raises(SequenceLoadError, match="`run`"):
        load_sequence(root, chdir=False)


# ------------------------------------------------------------------ archives


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if data else None)


def make_tgz(path: Path, members: list[tuple[str, bytes, dict[str, object]]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data, attrs in members:
            _add(tar, name, data, **attrs)
    return path


GOOD = [
    ("package.json", b'{"name": "tgz", "main": "main.py"}', {}),
    ("main.py", b"def run(context, input):\n    return 'ok'\n", {}),
]


def test_tar_gz_package(tmp_path: Path) -> None:
    tgz = make_tgz(tmp_path / "p.tar.gz", [("./", b"", {"type": tarfile.DIRTYPE}), *GOOD])
    seq = load_sequence(tgz, extract_dir=str(tmp_path / "out"), chdir=False)
    assert seq.name == "tgz" and seq.root == (tmp_path / "out").resolve()
    assert seq.extracted_to == tmp_path / "out"


def test_tar_gz_single_top_directory(tmp_path: Path) -> None:
    tgz = make_tgz(tmp_path / "p.tgz", [(f"dist/{n}", d, a) for n, d, a in GOOD])
    seq = load_sequence(tgz, extract_dir=str(tmp_path / "out"), chdir=False)
    assert seq.root == (tmp_path / "out" / "dist").resolve()


def test_tar_gz_default_tempdir(tmp_path: Path) -> None:
    seq = load_sequence(make_tgz(tmp_path / "p.tar.gz", GOOD), chdir=False)
    assert seq.extracted_to is not None and seq.extracted_to.is_dir()


def test_tar_without_package_json(tmp_path: Path) -> None:
    tgz = make_tgz(tmp_path / "p.tar.gz", [GOOD[1]])
    with pytest.raises(SequencePathError, match="no package.json in the package archive"):
        load_sequence(tgz, extract_dir=str(tmp_path / "out"))


def test_not_a_tar(tmp_path: Path) -> None:
    f = tmp_path / "p.tar.gz"
    f.write_bytes(b"not a tar at all")
    with pytest.raises(SequencePathError, match="not a valid .tar.gz"):
        load_sequence(f)


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (("../evil.py", b"x", {}), "path traversal"),
        (("a/../../evil.py", b"x", {}), "path traversal"),
        (("/abs/evil.py", b"x", {}), "absolute path"),
        (("link", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}), "is absolute"),
        (("link", b"", {"type": tarfile.SYMTYPE, "linkname": "../../outside"}), "points outside"),
        (("sub/link", b"", {"type": tarfile.SYMTYPE, "linkname": "../.."}), "points outside"),
        (("hard", b"", {"type": tarfile.LNKTYPE, "linkname": "../outside"}), "path traversal"),
        (("dev", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}), "device"),
        (("fifo", b"", {"type": tarfile.FIFOTYPE}), "device or FIFO"),
    ],
)
def test_tar_safety(tmp_path: Path, member: tuple[str, bytes, dict[str, object]], match: str) -> None:
    tgz = make_tgz(tmp_path / "p.tar.gz", [*GOOD, member])
    out = tmp_path / "deep" / "out"
    with pytest.raises(SequencePathError, match=match):
        load_sequence(tgz, extract_dir=str(out))
    assert not (tmp_path / "evil.py").exists() and not (tmp_path / "deep" / "evil.py").exists()


def test_tar_write_through_symlink_escape(tmp_path: Path) -> None:
    # a symlink that is fine on its own, then a file written "through" a link to a dir outside
    outside = tmp_path / "outside"
    outside.mkdir()
    tgz = make_tgz(
        tmp_path / "p.tar.gz",
        [*GOOD, ("ok", b"", {"type": tarfile.SYMTYPE, "linkname": "."}),
         ("esc", b"", {"type": tarfile.SYMTYPE, "linkname": "ok/../../outside"}),
         ("esc/pwned", b"x", {})],
    )
    with pytest.raises(SequencePathError, match="outside"):
        extract_package(tgz, tmp_path / "out")
    assert not (outside / "pwned").exists()


def test_tar_size_limit(tmp_path: Path) -> None:
    tgz = make_tgz(tmp_path / "p.tar.gz", [*GOOD, ("big.bin", b"\0" * 5000, {})])
    with pytest.raises(SequencePathError, match="more than 4096 bytes"):
        load_sequence(tgz, extract_dir=str(tmp_path / "out"), max_bytes=4096)


def test_tar_member_limit(tmp_path: Path) -> None:
    tgz = make_tgz(tmp_path / "p.tar.gz", [*GOOD, *[(f"f{i}", b"", {}) for i in range(10)]])
    with pytest.raises(SequencePathError, match="more than 5 entries"):
        load_sequence(tgz, extract_dir=str(tmp_path / "out"), max_members=5)


def test_tar_inner_symlink_allowed(tmp_path: Path) -> None:
    tgz = make_tgz(
        tmp_path / "p.tar.gz",
        [*GOOD, ("data/real.txt", b"hello", {}),
         ("alias.txt", b"", {"type": tarfile.SYMTYPE, "linkname": "data/real.txt"})],
    )
    out = extract_package(tgz, tmp_path / "out")
    assert (out / "alias.txt").read_text() == "hello"


def test_tar_modes_and_owners_are_sanitised(tmp_path: Path) -> None:
    tgz = make_tgz(
        tmp_path / "p.tar.gz",
        [*GOOD, ("suid.sh", b"#!/bin/sh\n", {"mode": 0o4777, "uid": 12345, "gid": 54321}),
         ("sub/x", b"x", {"mode": 0o000})],
    )
    out = extract_package(tgz, tmp_path / "out")
    st = (out / "suid.sh").stat()
    assert st.st_mode & 0o7000 == 0 and st.st_mode & 0o022 == 0
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert (out / "sub" / "x").read_bytes() == b"x"  # owner can always read


def test_check_package_reports_the_loaders_errors_without_importing(tmp_path: Path) -> None:
    from runner.sequence.loader import check_package, find_package_root

    root = make_pkg(tmp_path, main_src="raise SystemExit('imported!')\n")
    assert check_package(root)["main"] == "main.py"  # the code is never run
    (root / "package.json").write_text(json.dumps({"main": "missing.py"}))
    with pytest.raises(SequencePathError, match="entrypoint path missing.py is invalid"):
        check_package(root)
    (root / "package.json").write_text("[1]")
    with pytest.raises(SequencePathError, match="must hold a JSON object"):
        check_package(root)
    nested = tmp_path / "out"
    (nested / "only").mkdir(parents=True)
    (nested / "only" / "package.json").write_text("{}")
    assert find_package_root(nested) == nested / "only"


@given(st.text())
def test_a_module_name_keeps_ascii_letters_digits_and_underscores_of_the_sequences_name(name: str) -> None:
    from runner.sequence.loader import _module_name

    expected = "sequence_" + (re.sub(r"[^0-9A-Za-z_]", "_", name) or "main")
    assume(expected not in sys.modules)  # taken (by another test's Sequence): a suffix is added
    assert _module_name(name) == expected
