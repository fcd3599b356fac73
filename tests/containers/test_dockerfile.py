"""deploy/Dockerfile's contract, checked without an engine (the other tests here build on it).

What STH's docker adapter and PID 1 need: the official slim image as the default base, a
compiler only in the builder stage, the runner as the entrypoint itself (no init, gosu or
shell), a non-root user with STH's uid 1200, no CMD (STH passes no argument), and for the sth
target /package as a volume with its __pypackages__ on PYTHONPATH.
"""

from __future__ import annotations

import re
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def stages() -> dict[str, list[str]]:
    """Instruction lines (continuations joined, comments dropped) per stage; "" = before FROM."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    result: dict[str, list[str]] = {"": []}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"FROM (\S+) AS (\S+)", line)
        if match:
            current = match.group(2)
            result[current] = [line]
        else:
            result[current].append(line)
    return result


def test_stages_and_default_base() -> None:
    s = stages()
    assert list(s) == ["", "builder", "runtime", "sth", "runner"]  # runner last: the default target
    assert any(re.fullmatch(r"ARG BASE_IMAGE=python:[\d.]+-slim", line) for line in s[""])
    assert s["builder"][0] == "FROM ${BASE_IMAGE} AS builder"
    assert s["runtime"][0] == "FROM ${BASE_IMAGE} AS runtime"
    assert s["sth"][0] == "FROM runtime AS sth" and s["runner"][0] == "FROM runtime AS runner"


def test_compiler_only_in_the_builder() -> None:
    s = stages()
    assert any("gcc" in line for line in s["builder"])
    for name in ("runtime", "sth", "runner"):
        assert not any(re.search(r"gcc|apt-get|build-essential", line) for line in s[name]), name
    copies = [line for line in s["runtime"] if line.startswith("COPY")]
    assert copies == ["COPY --from=builder /opt/sequence-runner /opt/sequence-runner"]


def test_entrypoint_user_and_signals() -> None:
    runtime = stages()["runtime"]
    assert 'ENTRYPOINT ["python", "-m", "runner"]' in runtime
    assert "USER runner" in runtime and "WORKDIR /" in runtime
    assert any("--uid 1200" in line and "--gid 1200" in line for line in runtime)
    every = [line for lines in stages().values() for line in lines]
    assert not any(line.startswith(("CMD", "STOPSIGNAL")) for line in every)
    for wrapper in ("tini", "gosu", "dumb-init", "sh -c", "bash -c"):
        assert not any(wrapper in line for line in every if not line.startswith("RUN")), wrapper


def test_sth_target() -> None:
    sth = stages()["sth"]
    assert "ENV PYTHONPATH=/package/__pypackages__" in sth
    assert "VOLUME /package" in sth
    assert "ENV SEQUENCE_RUNNER_SEQUENCE=/package" in stages()["runner"]


def test_build_context_ignores_local_state() -> None:
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for entry in (".git", ".venv", "**/__pycache__", "**/*.so", "tests"):
        assert entry in ignored
    assert not any(entry.startswith("deploy") for entry in ignored)  # deploy/wheels is an input
