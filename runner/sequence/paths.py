"""What the loader asks of a Sequence's path before it knows whether it is a package.

The unpacking itself is runner/sequence/archive.py, imported only for a package: importing it
was ~0.3 ms of every runner's start to PANG, for these two one-line checks and two limits.
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_MAX_ARCHIVE_BYTES", "DEFAULT_MAX_ARCHIVE_MEMBERS", "inside", "is_archive"]

#: Total size of the regular files a ``.tar.gz`` package may unpack to.
DEFAULT_MAX_ARCHIVE_BYTES = 1 << 30  # 1 GiB
#: Number of entries a ``.tar.gz`` package may hold.
DEFAULT_MAX_ARCHIVE_MEMBERS = 100_000


def is_archive(path: str | os.PathLike[str]) -> bool:
    return os.path.basename(os.fspath(path)).lower().endswith((".tar.gz", ".tgz", ".tar"))


def inside(base: str, target: str) -> bool:
    return target == base or target.startswith(base + os.sep)
