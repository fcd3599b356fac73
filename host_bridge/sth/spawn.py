"""Starting a runner the way STH's process adapter does: environment, argv, sequence info."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: What STH passes as argv[1] to the Python runner (relative to the host's cwd).
DEFAULT_STARTUP_LOG = "./python-runner-startup.log"
#: Our runner, started as ``python -m runner <startup-log>``.
DEFAULT_RUNNER_COMMAND: tuple[str, ...] = ("-m", "runner")


def project_root() -> str:
    """The directory holding the ``runner`` package (put on the runner's PYTHONPATH)."""
    return str(Path(__file__).resolve().parents[2])


def sequence_info_for(
    sequence_path: str | os.PathLike[str], sequence_id: str, instances: Sequence[str] = ()
) -> tuple[str, dict[str, Any]]:
    """Return ``(SEQUENCE_PATH, SequenceInfo)`` for a package directory or a single file.

    A directory must hold package.json; ``main`` becomes ``entrypointPath`` and
    ``SEQUENCE_PATH = sequenceDir/main``, like STH's process adapter.
    """
    path = Path(sequence_path).resolve()
    package: dict[str, Any] = {}
    if path.is_dir():
        sequence_dir = path
        try:
            package = json.loads((path / "package.json").read_text("utf-8"))
        except (OSError, ValueError):
            package = {}
        main = str(package.get("main", "./main.py"))
    else:
        sequence_dir = path.parent
        main = "./" + path.name
    engines = package.get("engines") or {"python3": "3"}
    config: dict[str, Any] = {
        "type": "process",
        "engines": engines,
        "entrypointPath": main,
        "version": str(package.get("version", "")),
        "name": str(package.get("name", path.name)),
        "id": sequence_id,
        "sequenceDir": str(sequence_dir),
        "language": "py" if "python3" in engines else Path(main).suffix.lstrip(".") or "unknown",
    }
    for key in ("description", "author", "keywords", "args", "repository"):
        if key in package:
            config[key] = package[key]
    info = {"id": sequence_id, "config": config, "instances": list(instances), "location": "STH"}
    if "name" in package:
        info["name"] = package["name"]
    return os.path.join(str(sequence_dir), main), info


def runner_env(
    *,
    sequence_path: str,
    instance_id: str,
    port: int,
    sequence_info: Mapping[str, Any],
    connect_info: Mapping[str, Any],
    host: str = "127.0.0.1",
    runner_pythonpath: str | None = None,
    runner_envs: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The runner's whole environment, exactly as STH's ``get-runner-env`` builds it.

    Only PATH, DEVELOPMENT and PRODUCTION come from the host environment;
    PYTHONPATH = <runner dir>[:$PYTHONPATH of host]:<sequenceDir>/__pypackages__.
    ``runner_envs`` are STH's ``sthConfig.runnerEnvs`` (added last).
    """
    base = os.environ if base_env is None else base_env
    env: dict[str, str] = {k: base[k] for k in ("PATH", "DEVELOPMENT", "PRODUCTION") if k in base}
    sequence_dir = str(sequence_info.get("config", {}).get("sequenceDir", os.path.dirname(sequence_path)))
    parts = [runner_pythonpath or project_root()]
    if base.get("PYTHONPATH"):
        parts.append(base["PYTHONPATH"])
    parts.append(os.path.join(sequence_dir, "__pypackages__"))
    env.update(
        {
            "SEQUENCE_PATH": sequence_path,
            "INSTANCES_SERVER_PORT": str(port),
            "INSTANCES_SERVER_HOST": host,
            "INSTANCE_ID": instance_id,
            "PIPES_LOCATION": "",
            "CRASH_LOG": "crash_log",
            "SEQUENCE_INFO": json.dumps(dict(sequence_info)),
            "RUNNER_CONNECT_INFO": json.dumps(dict(connect_info)),
            "PYTHONPATH": ":".join(parts),
        }
    )
    if runner_envs:
        env.update(runner_envs)
    return env


def runner_argv(
    python: str | None = None,
    runner_command: Sequence[str] = DEFAULT_RUNNER_COMMAND,
    startup_log: str | None = DEFAULT_STARTUP_LOG,
) -> list[str]:
    """``[python, <runner command...>, "./python-runner-startup.log"]``."""
    argv = [python or sys.executable, *runner_command]
    if startup_log is not None:
        argv.append(startup_log)
    return argv
