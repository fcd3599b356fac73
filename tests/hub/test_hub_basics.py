"""Hub operations, configuration, auth and the process contract (URL printed, exit 0 on signals)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
from hubproc import ROOT, HubProcess

from hub.config import parse_config


def test_version_config_and_load_check(client: httpx.Client, shared_hub: HubProcess) -> None:
    version = client.get("/version").json()
    assert version["apiVersion"] == "v1" and version["service"] == "sequence-runner/hub"
    config = client.get("/config").json()
    assert config["host"]["apiBase"] == "/api/v1"
    assert config["store"] == str(shared_hub.store)
    assert config["authRequired"] is False and "token" not in json.dumps(config).lower()
    load = client.get("/load-check").json()
    assert set(load) == {"avgLoad", "currentLoad", "memFree", "memUsed", "fsSize"}
    fs = load["fsSize"][0]
    assert set(fs) == {"fs", "type", "size", "used", "available", "use", "mount"}
    assert fs["size"] >= fs["available"] > 0 and load["memFree"] > 0


def test_hub_log_is_a_live_ndjson_stream(client: httpx.Client, upload: Any) -> None:
    with client.stream("GET", "/log") as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = response.iter_lines()
        first = json.loads(next(lines))
        assert {"ts", "level", "from", "msg"} <= set(first)
        seq = upload("counter")
        started = client.post(f"/sequence/{seq}/start", json={"args": [1, 0]}).json()["id"]
        for line in lines:  # live: the start above shows up
            if started in json.loads(line)["msg"]:
                break
    assert client.post(f"/instance/{started}/_kill").status_code == 202


def test_unknown_paths_and_methods_answer_json(client: httpx.Client) -> None:
    r = client.get("/no-such-thing")
    assert r.status_code == 404 and "error" in r.json()
    r = client.delete("/version")
    assert r.status_code == 405 and "error" in r.json()


def test_token_is_required_everywhere_and_compared_whole(hub_factory: Any, client: httpx.Client) -> None:
    hub = hub_factory("--token", "s3cret", "--cors-origin", "http://app.example")
    with hub.client() as c:
        for method, path in (("GET", "/version"), ("GET", "/instances"), ("POST", "/sequence"),
                             ("GET", "/openapi.json"), ("GET", "/nope")):
            r = c.request(method, path)
            assert (r.status_code, r.json()) == (403, {"message": "Forbidden"}), path
        for wrong in ("Bearer s3cre", "Bearer s3cretX", "s3cret", "Basic s3cret", "Bearer S3CRET"):
            assert c.get("/version", headers={"authorization": wrong}).status_code == 403
        ok = c.get("/version", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        config = c.get("/config", headers={"authorization": "Bearer s3cret"}).json()
        assert config["authRequired"] is True and "s3cret" not in json.dumps(config)
        # CORS only when configured, and only for the configured origins
        cors = c.get("/version", headers={"authorization": "Bearer s3cret", "origin": "http://app.example"})
        assert cors.headers["access-control-allow-origin"] == "http://app.example"
        other = c.get("/version", headers={"authorization": "Bearer s3cret", "origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    plain = client.get("/version", headers={"origin": "http://app.example"})  # the shared hub: no CORS
    assert "access-control-allow-origin" not in plain.headers


def test_flags_override_environment_which_overrides_defaults(tmp_path: Any) -> None:
    env = {"SEQUENCE_HUB_PORT": "9001", "SEQUENCE_HUB_MAX_INSTANCES": "3", "SEQUENCE_HUB_TOKEN": "tok-3x9q",
           "SEQUENCE_HUB_API_BASE": "x/y/", "SEQUENCE_HUB_MIN_FREE_MEM": "0"}
    config = parse_config(["--port", "9002", "--store", str(tmp_path)], env)
    assert (config.port, config.max_instances, config.token, config.api_base) == (9002, 3, "tok-3x9q", "/x/y")
    assert config.store == tmp_path and config.requirements.free_mem_mib == 0
    assert parse_config([], {}).host == "127.0.0.1"  # loopback by default
    assert "tok-3x9q" not in json.dumps(config.public())


@pytest.mark.parametrize("argv, env, message", [
    (["--port", "x"], {}, "'x' is not a number"),
    ([], {"SEQUENCE_HUB_MAX_INSTANCES": "-1"}, "SEQUENCE_HUB_MAX_INSTANCES: '-1' must not be negative"),
    (["--api-base", "/"], {}, "must be a path like /api/v1"),
    (["--log-level", "loud"], {}, "--log-level must be one of"),
])
def test_bad_settings_name_the_setting(argv: list[str], env: dict[str, str], message: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_config(argv, env)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_help_shows_examples_and_environment_variables() -> None:
    out = subprocess.run([sys.executable, "-m", "hub", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "examples:" in out and "SEQUENCE_HUB_TOKEN" in out and "--max-upload-size" in out


# `python -m hub` where the [hub] extra is missing: uvicorn and starlette cannot be imported.
WITHOUT_EXTRA = """
import runpy, sys
for name in ("uvicorn", "starlette"):
    sys.modules[name] = None  # import raises ModuleNotFoundError, as when they are not installed
runpy.run_module("hub", run_name="__main__", alter_sys=True)
"""


def test_without_the_hub_extra_help_works_and_starting_names_the_install() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", WITHOUT_EXTRA, *args], cwd=ROOT, capture_output=True, check=False,
                              text=True, timeout=60)

    shown = run("--help")
    assert shown.returncode == 0 and "examples:" in shown.stdout and "'.[hub]'" in shown.stdout
    started = run("--port", "0")
    assert started.returncode == 1 and started.stdout == ""
    assert started.stderr == ("hub: uvicorn is not installed; the hub needs its extra: pip install -e '.[hub]'\n")


def test_sigint_exits_0_even_with_a_live_stream_open(hub_factory: Any) -> None:
    hub = hub_factory()
    with hub.client() as c, c.stream("GET", "/log") as log:
        next(log.iter_lines())
        assert hub.stop(signal.SIGINT) == 0
    assert hub.output().rstrip().endswith("hub stopped")


def test_sigterm_stops_instances_then_exits_0(hub_factory: Any) -> None:
    sig = signal.SIGTERM
    from hubproc import package

    hub = hub_factory("--shutdown-timeout", "2")
    with hub.client() as c:
        seq = c.post("/sequence", content=package("stop-keepalive")).json()["id"]
        polite = c.post(f"/sequence/{seq}/start", json={}).json()["id"]
        seq2 = c.post("/sequence", content=package("cpu-bound")).json()["id"]
        stubborn = c.post(f"/sequence/{seq2}/start", json={}).json()["id"]
        with c.stream("GET", f"/instance/{polite}/stdout"):  # an open stream must not hold the exit up
            assert hub.stop(sig) == 0
    assert "hub stopped" in hub.output()
    again = hub_factory(store=hub.store)
    with again.client() as c:
        states = {i["id"]: i for i in c.get("/instances").json()}
    assert states[polite]["status"] == "stopped", states[polite]
    assert states[stubborn]["status"] in ("stopped", "killed"), states[stubborn]
    assert states[stubborn]["exitCode"] in (137, 138)


def test_uvicorn_reads_request_bodies_past_its_default_high_water() -> None:
    """hub/server.py raises uvicorn's request-body high-water mark (a module constant); if an upgrade of
    uvicorn drops the constant, the hub still runs (with a warning) and this test says so."""
    from uvicorn.protocols.http import httptools_impl

    from hub.server import BODY_HIGH_WATER, raise_body_high_water

    assert raise_body_high_water()
    assert httptools_impl.HIGH_WATER_LIMIT == BODY_HIGH_WATER > 64 << 10


def _python_modules_under(pid: int) -> list[str]:
    """The ``-m`` module of every Python process below ``pid`` (runner, runner.warm_template)."""
    import psutil

    modules = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "-m" in cmdline[:-1]:
            modules.append(cmdline[cmdline.index("-m") + 1])
    return modules


def test_no_warm_starts_spawns_cold_runners_end_to_end(tmp_path: Any) -> None:
    """--no-warm-starts (the flag wins over SEQUENCE_HUB_WARM_STARTS=1): GET config says so, no warm
    template runs, the Instance's runner is a `python -m runner` of its own, and bytes go through."""
    from flows import start, wait_ended
    from hubproc import package

    hub = HubProcess(tmp_path / "store", "--no-warm-starts", env={"SEQUENCE_HUB_WARM_STARTS": "1"}).start()
    try:
        assert hub.proc is not None
        with hub.client() as c:
            assert c.get("/config").json()["warmStarts"] is False
            seq = c.post("/sequence", content=package("hello")).json()["id"]
            inst = start(c, seq)
            running = _python_modules_under(hub.proc.pid)
            assert "runner" in running and "runner.warm_template" not in running, running
            r = c.post(f"/instance/{inst}/input", content=b"cold\n",
                       headers={"content-type": "text/plain", "x-end-stream": "true"})
            assert r.status_code == 200, r.text
            assert c.get(f"/instance/{inst}/output").content == b"Hello cold!\n"
            assert wait_ended(c, inst)["exitCode"] == 0
    finally:
        assert hub.stop() == 0, hub.output()


def test_warm_starts_default_on_and_read_from_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_config([], {}).warm_starts is True
    assert parse_config([], {"SEQUENCE_HUB_WARM_STARTS": "off"}).warm_starts is False
    assert parse_config(["--warm-starts"], {"SEQUENCE_HUB_WARM_STARTS": "0"}).warm_starts is True
    assert parse_config([], {}).public()["warmStarts"] is True
    with pytest.raises(SystemExit) as exc:
        parse_config([], {"SEQUENCE_HUB_WARM_STARTS": "maybe"})
    assert exc.value.code == 2 and "SEQUENCE_HUB_WARM_STARTS: 'maybe' is not on or off" in capsys.readouterr().err
