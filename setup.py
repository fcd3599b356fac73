"""Builds the optional compiled framer (and the reaper's prctl); all other metadata lives in pyproject.toml.

runner/protocol/_framer_c.pyx becomes the extension ``runner.protocol._framer_c``, beside
its pure-Python twin _framer_py.py and its stub _framer_c.pyi; runner/_reaper_c.pyx becomes
``runner._reaper_c`` (the subreaper's system call without ctypes, runner/reaper.py) and
runner/_warm_serve_c.pyx ``runner._warm_serve_c`` (a warm-start template's loop between forks,
runner/warm_template.py). The
build is optional: without Cython or a C compiler the install still succeeds
(with a warning), runner.protocol.framer falls back to the pure-Python twin and the
reaper to ctypes.
CI sets SEQUENCE_RUNNER_REQUIRE_EXTENSION=1 so that a broken build fails the
install instead of silently shipping the slow path.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REQUIRE_EXTENSION_ENV = "SEQUENCE_RUNNER_REQUIRE_EXTENSION"
CYTHON_DIRECTIVES = {"language_level": "3", "boundscheck": False, "wraparound": False}


def _required() -> bool:
    # Same spelling rules as runner/protocol/framer.py.
    return os.environ.get(REQUIRE_EXTENSION_ENV, "").strip().lower() not in ("", "0", "false", "no")


class OptionalBuildExt(build_ext):
    """Cythonizes at build time and turns a failed build into a warning unless required."""

    def run(self) -> None:
        try:
            self._cythonize()
            super().run()
        except Exception as exc:  # noqa: BLE001 - any failure means "no extension"
            self._give_up(exc)

    def _cythonize(self) -> None:
        try:
            from Cython.Build import cythonize
        except ImportError as exc:
            raise RuntimeError("Cython is not installed") from exc
        build_dir = os.path.join(self.build_temp, "cython")
        for ext in self.extensions:
            if not any(src.endswith(".pyx") for src in ext.sources):
                continue
            # cythonize returns copies; keep setuptools' own Extension objects (it has
            # annotated them in finalize_options) and only swap their sources.
            (converted,) = cythonize(
                [ext], build_dir=build_dir, compiler_directives=CYTHON_DIRECTIVES, quiet=True
            )
            ext.sources = converted.sources

    def _give_up(self, exc: Exception) -> None:
        if _required():
            raise RuntimeError(
                f"building the compiled framer failed and {REQUIRE_EXTENSION_ENV} is set: {exc}"
            ) from exc
        self.warn(
            f"could not build the compiled framer runner.protocol._framer_c and runner._reaper_c ({exc}); "
            "sequence-runner will use the pure-Python framer (slower) and ctypes for the subreaper"
        )


setup(
    ext_modules=[
        Extension("runner.protocol._framer_c", sources=["runner/protocol/_framer_c.pyx"]),
        Extension("runner._reaper_c", sources=["runner/_reaper_c.pyx"]),
        Extension("runner._warm_serve_c", sources=["runner/_warm_serve_c.pyx"]),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
