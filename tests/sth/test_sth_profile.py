"""Which STH host generation the environment names (runner/transport/sth_profile.py) and what
runner.sth_mode.parse_env makes of each (docs/sth-compat.md §1, §6)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from runner.sth_mode import STHEnvError, add_pypackages, package_dir, parse_env
from runner.transport.sth_profile import STH_0_18, STH_1_0, profile_for

IID = "i" * 36


def env_0_18(main: Path) -> dict[str, str]:
    """Exactly what 0.18.7's process adapter passes (PATH & co aside)."""
    return {"SEQUENCE_PATH": str(main), "INSTANCES_SERVER_HOST": "127.0.0.1", "INSTANCES_SERVER_PORT": "18001",
            "INSTANCE_ID": IID, "PYTHONPATH": "/somewhere/python-runner"}


@pytest.fixture
def package(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    main = tmp_path / "src" / "main.py"
    main.write_text("def run(context, input):\n    return input\n")
    (tmp_path / "package.json").write_text(json.dumps(
        {"name": "seq", "version": "0.1.0", "main": "./src/main.py", "engines": {"python3": "3.10.0"},
         "args": ["a"], "scripts": {"x": "y"}}))
    return main


def test_profile_for_each_environment(package: Path) -> None:
    env = env_0_18(package)
    assert profile_for(env) is STH_0_18
    assert profile_for({**env, "SEQUENCE_INFO": "{}", "RUNNER_CONNECT_INFO": "{}"}) is STH_1_0
    # one of the two present (even empty) is 1.0.x with something missing, never 0.18
    assert profile_for({**env, "SEQUENCE_INFO": "{}"}) is STH_1_0
    assert profile_for({**env, "RUNNER_CONNECT_INFO": ""}) is STH_1_0
    # neither: 1.0's checks name what is missing
    assert profile_for({"INSTANCES_SERVER_PORT": "1"}) is STH_1_0
    assert (STH_0_18.channels, STH_0_18.host_replies, STH_1_0.channels, STH_1_0.host_replies) == (8, False, 9, True)


def test_parse_env_0_18(package: Path) -> None:
    cfg, path = parse_env({**env_0_18(package), "SEQUENCE_RUNNER_STH_REPLY_TIMEOUT": "3"})
    assert path == str(package)
    assert cfg.profile is STH_0_18
    assert cfg.reply_timeout == 0  # the host never replies: no watchdog, whatever the variable says
    assert cfg.connect_info == {}
    assert cfg.sequence_info == {"config": {
        "type": "process", "sequenceDir": str(package.parent.parent), "entrypointPath": "src/main.py",
        "name": "seq", "version": "0.1.0", "engines": {"python3": "3.10.0"}, "args": ["a"]}}


def test_parse_env_1_0_is_unchanged(package: Path) -> None:
    cfg, _ = parse_env({**env_0_18(package), "SEQUENCE_INFO": '{"id": "s"}', "RUNNER_CONNECT_INFO": '{"args": [1]}'})
    assert cfg.profile is STH_1_0 and cfg.reply_timeout == 1.0
    assert (cfg.sequence_info, cfg.connect_info) == ({"id": "s"}, {"args": [1]})


@pytest.mark.parametrize(
    ("drop", "needle"),
    [
        ("INSTANCES_SERVER_HOST", "missing environment variable(s): INSTANCES_SERVER_HOST (STH 1.0.x passes all of"),
        ("INSTANCE_ID", ("missing environment variable(s): INSTANCE_ID, SEQUENCE_INFO, RUNNER_CONNECT_INFO "
                        "(STH 1.0.x passes all of SEQUENCE_PATH, INSTANCES_SERVER_HOST, INSTANCES_SERVER_PORT, "
                        "INSTANCE_ID, SEQUENCE_INFO, RUNNER_CONNECT_INFO; an 0.18-style host the first four)")),
    ],
)
def test_neither_environment_is_a_clear_error(package: Path, drop: str, needle: str) -> None:
    env = env_0_18(package)
    del env[drop]
    with pytest.raises(STHEnvError) as err:
        parse_env(env)
    assert err.value.code == 20 and needle in str(err.value)


def test_pypackages_go_before_the_standard_library(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pyp = package.parent.parent / "__pypackages__"
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert add_pypackages(str(package)) is None  # none there: nothing added
    pyp.mkdir()
    assert add_pypackages(str(package)) == str(pyp)
    stdlib = next(i for i, p in enumerate(sys.path) if p.endswith(f"python{sys.version_info[0]}.{sys.version_info[1]}"))
    assert sys.path.index(str(pyp)) < stdlib
    assert add_pypackages(str(package)) is None  # once


def test_package_dir_is_the_one_whose_main_is_the_sequence(package: Path, tmp_path: Path) -> None:
    root = package.parent.parent
    assert package_dir(str(root / "src" / "." / "main.py")) == (str(root), json.loads((root / "package.json").read_text()))
    # a package.json whose main is another file (an enclosing project's) is not the Sequence's
    (root / "src" / "package.json").write_text(json.dumps({"main": "other.py"}))
    assert package_dir(str(package))[0] == str(root)
    lone = tmp_path / "lone" / "deep" / "seq.py"
    lone.parent.mkdir(parents=True)
    lone.write_text("")
    assert package_dir(str(lone)) == (str(lone.parent), {})
