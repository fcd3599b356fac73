"""Issue 11 item 12: archive extraction holds without tarfile's ``data`` filter.

Python 3.10.0-3.10.11 and 3.11.0-3.11.3 have no extraction filter, so every case here runs
twice: with the filter this Python has ("auto") and with it disabled, which is how those
versions behave. The two-step symlink chain (a link that only points outside once a later
link lands, then a file written through it) used to escape with the filter disabled.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from runner_fault_helpers import make_tgz

from runner.sequence import archive
from runner.sequence.loader import SequencePathError, extract_package, load_sequence

PACKAGE = [
    ("package.json", b'{"name": "evil", "main": "main.py"}', {}),
    ("main.py", b"def run(context, input):\n    return 'ok'\n", {}),
]
SYM, HARD, DIR = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE
NO_FILTER = "fully_trusted" if hasattr(tarfile, "fully_trusted_filter") else ""


@pytest.fixture(params=["auto", "disabled"])
def tar_filter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(archive, "TAR_FILTER", "auto" if request.param == "auto" else NO_FILTER)
    return str(request.param)


def _nothing_outside(tmp_path: Path, before: set[str]) -> None:
    """Only the archive and the extraction directory exist in tmp_path; nothing was written elsewhere."""
    assert {p.name for p in tmp_path.iterdir()} == before | {"pkg"}


CHAINS = {
    # a -> b/../escaped is inside while b does not exist; b -> . makes it point at pkg/../escaped
    "file written through the chain": [("a", b"", {"type": SYM, "linkname": "b/../escaped"}),
                                       ("b", b"", {"type": SYM, "linkname": "."}),
                                       ("a", b"pwned", {})],
    "directory reached through the chain": [("a", b"", {"type": SYM, "linkname": "b/../escaped_dir"}),
                                            ("b", b"", {"type": SYM, "linkname": "."}),
                                            ("a/pwned", b"pwned", {})],
    "chain through a nested link": [("d", b"", {"type": DIR, "mode": 0o755}),
                                    ("d/a", b"", {"type": SYM, "linkname": "../b/../escaped"}),
                                    ("b", b"", {"type": SYM, "linkname": "."}),
                                    ("d/a", b"pwned", {})],
    "links only: an escaping link left in the tree": [("a", b"", {"type": SYM, "linkname": "b/../escaped"}),
                                                      ("b", b"", {"type": SYM, "linkname": "."})],
    "hardlink through the chain": [("a", b"", {"type": SYM, "linkname": "b/../escaped"}),
                                   ("b", b"", {"type": SYM, "linkname": "."}),
                                   ("h", b"", {"type": HARD, "linkname": "a"})],
}


@pytest.mark.parametrize("chain", list(CHAINS))
def test_two_step_symlink_chains_are_refused(tmp_path: Path, tar_filter: str, chain: str) -> None:
    tgz = make_tgz(tmp_path / "p.tar.gz", [*PACKAGE, *CHAINS[chain]])
    (tmp_path / "escaped_dir").mkdir()
    before = {p.name for p in tmp_path.iterdir()}
    with pytest.raises(SequencePathError, match="outside the package dir"):
        extract_package(tgz, tmp_path / "pkg")
    _nothing_outside(tmp_path, before)
    assert list((tmp_path / "escaped_dir").iterdir()) == []


UNSAFE = {
    "traversal": (("../evil.py", b"x", {}), "path traversal"),
    "deep traversal": (("a/../../evil.py", b"x", {}), "path traversal"),
    "absolute path": (("/tmp/evil.py", b"x", {}), "absolute path"),
    "absolute symlink": (("link", b"", {"type": SYM, "linkname": "/etc/passwd"}), "is absolute"),
    "symlink out": (("link", b"", {"type": SYM, "linkname": "../../outside"}), "points outside"),
    "hardlink out": (("hard", b"", {"type": HARD, "linkname": "../outside"}), "path traversal"),
    "device": (("dev", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}), "device"),
    "fifo": (("fifo", b"", {"type": tarfile.FIFOTYPE}), "device or FIFO"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_members_are_refused(tmp_path: Path, tar_filter: str, case: str) -> None:
    member, match = UNSAFE[case]
    tgz = make_tgz(tmp_path / "p.tar.gz", [*PACKAGE, member])
    before = {p.name for p in tmp_path.iterdir()}
    with pytest.raises(SequencePathError, match=match):
        load_sequence(tgz, extract_dir=str(tmp_path / "pkg"), chdir=False)
    _nothing_outside(tmp_path, before)


def test_a_compression_bomb_is_refused_before_it_is_written(tmp_path: Path, tar_filter: str) -> None:
    bomb = b"\0" * (8 << 20)  # 8 MiB of zeros: a few KiB compressed
    tgz = make_tgz(tmp_path / "p.tar.gz", [*PACKAGE, ("bomb.bin", bomb, {})])
    assert tgz.stat().st_size < 64 * 1024
    with pytest.raises(SequencePathError, match="more than 1048576 bytes"):
        extract_package(tgz, tmp_path / "pkg", max_bytes=1 << 20)
    assert not (tmp_path / "pkg" / "bomb.bin").exists()


def test_links_inside_the_package_still_work(tmp_path: Path, tar_filter: str) -> None:
    tgz = make_tgz(tmp_path / "p.tar.gz", [
        *PACKAGE,
        ("current", b"", {"type": SYM, "linkname": "v1"}),  # a link before its target: fine
        ("v1/data.txt", b"hello", {}),
        ("alias", b"", {"type": SYM, "linkname": "current/data.txt"}),
        ("copy", b"", {"type": HARD, "linkname": "v1/data.txt"}),
    ])
    out = extract_package(tgz, tmp_path / "pkg")
    assert (out / "alias").read_text() == "hello" and (out / "copy").read_text() == "hello"
    assert os.readlink(out / "current") == "v1"
