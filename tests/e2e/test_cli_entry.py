"""How people start the CLI (issue 14 items 1-3): bare ``python -m runner``, the installed
``sequence-runner`` script, usage errors, ``--version``, and ``--content-type`` checked up front."""

from __future__ import annotations

import re
import sys
import sysconfig
import tarfile
from importlib import metadata
from pathlib import Path

import pytest
from cli_helpers import run_cli, sample

VERSION = re.compile(r"sequence-runner \S+ \(protocol 1, framer (cython|python)\)\n")


def text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def installed_script() -> Path:
    """The ``sequence-runner`` script pip installed beside this Python (scripts/test installs it)."""
    (entry,) = [ep for ep in metadata.entry_points(group="console_scripts") if ep.name == "sequence-runner"]
    assert entry.value.startswith("runner.__main__:main"), (
        f"stale install ({entry.value}): reinstall with pip install -e '.[dev]'")
    script = Path(sysconfig.get_path("scripts")) / "sequence-runner"
    if not script.exists():  # a venv run through a symlinked interpreter: the scripts sit beside it
        script = Path(sys.executable).parent / "sequence-runner"
    assert script.exists(), f"no sequence-runner script in {script.parent}"
    return script


# -- bare python -m runner ------------------------------------------------------------------
def test_bare_command_prints_usage_pointing_at_run_and_pack():
    proc = run_cli()
    assert proc.returncode == 2, proc.stderr
    err = text(proc.stderr)
    assert "usage: python -m runner run PATH" in err
    assert "python -m runner pack DIRECTORY" in err
    assert "no connection" not in err and proc.stdout == b""


def test_bare_command_with_a_host_setting_is_still_the_runner_process():
    proc = run_cli(env={"SEQUENCE_RUNNER_INSTANCE_ID": "i"})
    assert proc.returncode == 20
    assert "no connection: give --fd N" in text(proc.stderr)


def test_a_mistyped_command_is_named_with_the_usage():
    proc = run_cli("rnu", sample("hello"))
    assert proc.returncode == 2
    err = text(proc.stderr)
    assert "unknown command 'rnu'" in err and "usage: python -m runner run PATH" in err


@pytest.mark.parametrize("argv", [("--bogus",), ("--bogus=1", "-x")])
def test_an_unknown_option_typed_by_a_person_is_a_usage_error(argv):
    """Exit 2 with the usage, like every other mistake at the command line; 20 (invalid
    configuration) is for the settings a host gives the runner process."""
    proc = run_cli(*argv)
    assert proc.returncode == 2, proc.stderr
    err = text(proc.stderr)
    assert err.startswith(f"python -m runner: unknown option {argv[0]!r}\n"), err
    assert "usage: python -m runner run PATH" in err


@pytest.mark.parametrize(("argv", "env"), [
    (("--fd", "3", "--bogus"), {}),  # beside a runner option: a host's argv
    (("--bogus",), {"SEQUENCE_RUNNER_FD": "3"}),  # a host's environment
])
def test_an_unknown_option_from_a_host_is_invalid_configuration_with_one_hint(argv, env):
    proc = run_cli(*argv, env=env)
    assert proc.returncode == 20, proc.stderr
    err = text(proc.stderr)
    assert err == "runner: unknown option '--bogus' (see --help)\n", err  # one hint


def test_run_without_path_says_path_is_required():
    proc = run_cli("run")
    assert proc.returncode == 2
    err = text(proc.stderr)
    assert "PATH is required" in err
    assert "ARGS" not in err.splitlines()[-1] and "Traceback" not in err


@pytest.mark.parametrize("argv", [("--version",), ("-V",), ("run", "--version"), ("run", "-V"),
                                  ("pack", "--version")])
def test_version_everywhere(argv):
    proc = run_cli(*argv)
    assert proc.returncode == 0, proc.stderr
    assert VERSION.fullmatch(text(proc.stdout))


# -- the installed script -------------------------------------------------------------------
def test_installed_script_is_the_same_cli(tmp_path):
    script = [str(installed_script())]
    bare = run_cli(command=script)
    assert bare.returncode == 2 and "Traceback" not in text(bare.stderr)
    assert "usage: sequence-runner run PATH" in text(bare.stderr)
    for flag in ("--version", "-V"):
        proc = run_cli(flag, command=script)
        assert proc.returncode == 0, proc.stderr
        assert VERSION.fullmatch(text(proc.stdout))
    helped = run_cli("--help", command=script)
    assert helped.returncode == 0 and "sequence-runner run|pack" in text(helped.stdout)
    assert "usage: sequence-runner run PATH" in text(run_cli("run", "--help", command=script).stdout)

    ran = run_cli("run", sample("hello"), input=b"script\n", command=script)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == b"Hello script!\n"
    archive = tmp_path / "hello.tar.gz"
    packed = run_cli("pack", sample("hello"), "-o", str(archive), command=script)
    assert packed.returncode == 0, packed.stderr
    with tarfile.open(archive) as tar:
        assert "package.json" in tar.getnames()


# -- --content-type ---------------------------------------------------------------------------
@pytest.mark.parametrize("inline", [False, True])
def test_unknown_content_type_is_a_usage_error_listing_the_choices(inline):
    proc = run_cli("run", *(["--inline"] if inline else []), sample("hello"), "--content-type", "text/plian",
                   input=b"x\n")
    assert proc.returncode == 2, proc.stderr
    err = text(proc.stderr)
    assert "--content-type 'text/plian'" in err
    for choice in ("text/plain", "application/octet-stream", "application/x-ndjson"):
        assert choice in err
    assert "failed during execution" not in err and proc.stdout == b""


def test_content_type_aliases_and_parameters_are_accepted():
    proc = run_cli("run", sample("ndjson-transform"), "-t", "Application/JSONL", input=b'{"name":"a"}\n')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    proc = run_cli("run", sample("hello"), "-t", "text/plain; charset=utf-8", input=b"p\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Hello p!\n"


def test_a_refused_charset_is_a_usage_error_and_a_known_one_is_honoured():
    proc = run_cli("run", sample("hello"), "-t", "text/plain; charset=no-such-charset", input=b"x\n")
    assert proc.returncode == 2
    assert b"unknown charset 'no-such-charset'" in proc.stderr and proc.stdout == b""
    proc = run_cli("run", sample("hello"), "-t", "text/plain; charset=latin-1", input=b"Jos\xe9\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Hello José!\n".encode()
