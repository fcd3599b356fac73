"""A runner imports ssl only when something asks for it, and TLS through asyncio still works then.

runner/ssl_deferral.py imports asyncio without ssl and hands ssl to asyncio's modules when it
is first imported; runner/loop.py runs the Sequence on asyncio's own loop (uvloop when asked),
no longer under anyio. These tests run real runner processes (TestHost) and a fresh
interpreter for the import machinery (pytest itself has long imported ssl).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from testhost import REPO, output_lines

pytestmark = pytest.mark.timeout(60)


def _sequence(tmp_path: Path, code: str) -> Path:
    path = tmp_path / "seq.py"
    path.write_text(textwrap.dedent(code))
    return path


def _run(path: Path, env: dict[str, str] | None = None, app_config: dict[str, str] | None = None
         ) -> list[dict[str, object]]:
    return output_lines(path, env=env, app_config=app_config)


def _uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


LOOPS = [pytest.param({}, id="asyncio"),
         pytest.param({"SEQUENCE_RUNNER_UVLOOP": "1"}, id="uvloop",
                      marks=pytest.mark.skipif(not _uvloop_installed(), reason="uvloop is not installed"))]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed certificate for "localhost" and its key, made by the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl CLI to make a self-signed certificate with")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True, timeout=30)
    return {"cert": str(cert), "key": str(key)}


TLS_ECHO = """
    import asyncio, json, sys

    async def run(context, input):
        loaded_before = "ssl" in sys.modules
        import ssl  # the first import: runner/ssl_deferral.py hands it to asyncio
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(context.config["cert"], context.config["key"])
        client_ctx = ssl.create_default_context(cafile=context.config["cert"])

        async def upper(reader, writer):
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(upper, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname="localhost")
        writer.write(b"over tls\\n")
        await writer.drain()
        answer = (await reader.readline()).decode()
        peer_cn = dict(x[0] for x in writer.get_extra_info("peercert")["subject"])["commonName"]
        cipher = writer.get_extra_info("cipher")
        writer.close()
        server.close()
        await server.wait_closed()
        loop = asyncio.get_running_loop()
        yield json.dumps({"loaded_before": loaded_before, "answer": answer, "peer": peer_cn,
                          "tls": cipher[1], "loop": type(loop).__module__}) + "\\n"
"""


@pytest.mark.parametrize("env", LOOPS)
def test_a_sequence_that_imports_ssl_late_speaks_tls_through_asyncio(
        tmp_path: Path, certificate: dict[str, str], env: dict[str, str]) -> None:
    [facts] = _run(_sequence(tmp_path, TLS_ECHO), env=env, app_config=certificate)
    assert facts["answer"] == "OVER TLS\n"
    assert facts["peer"] == "localhost"
    assert str(facts["tls"]).startswith("TLSv1.")
    if env:  # uvloop imports ssl itself when the runner asks for it
        assert facts["loop"].startswith("uvloop")
        assert facts["loaded_before"] is True
    else:  # nothing the runner or asyncio did had loaded ssl before the Sequence asked
        assert facts["loop"] == "asyncio.unix_events"
        assert facts["loaded_before"] is False


def test_anyio_in_a_sequence_runs_on_the_runners_loop(tmp_path: Path) -> None:
    """The runner no longer runs under anyio.run; a Sequence that uses anyio (task groups, timeouts,
    worker threads) gets it on the runner's asyncio loop."""
    path = _sequence(tmp_path, """
        import json, sys, threading

        async def run(context, input):
            loaded_before = "anyio" in sys.modules
            import anyio, sniffio

            got = []

            async def add(n):
                await anyio.sleep(0)
                got.append(n)

            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(add, n)
            with anyio.move_on_after(0.05) as scope:
                await anyio.sleep(30)
            thread = await anyio.to_thread.run_sync(lambda: threading.current_thread().name)
            yield json.dumps({"loaded_before": loaded_before, "got": sorted(got),
                              "timed_out": scope.cancelled_caught, "library": sniffio.current_async_library(),
                              "other_thread": thread != threading.current_thread().name}) + "\\n"
    """)
    [facts] = _run(path)
    assert facts == {"loaded_before": False, "got": [0, 1, 2], "timed_out": True, "library": "asyncio",
                     "other_thread": True}


IMPORT_MACHINERY = """
import importlib.util, sys
from runner.ssl_deferral import import_asyncio

assert import_asyncio() is True
import asyncio.base_events, asyncio.selector_events, asyncio.sslproto
assert "ssl" not in sys.modules and asyncio.base_events.ssl is None
assert importlib.util.find_spec("ssl") is not None  # a lookup alone loads nothing
assert "ssl" not in sys.modules and asyncio.base_events.ssl is None
import ssl
assert asyncio.base_events.ssl is ssl and asyncio.selector_events.ssl is ssl and asyncio.sslproto.ssl is ssl
assert asyncio.sslproto.SSLAgainErrors == (ssl.SSLWantReadError, ssl.SSLSyscallError)
assert type(ssl.__loader__).__name__ == "SourceFileLoader" and ssl.__spec__.loader is ssl.__loader__
assert not any(type(f).__name__ == "SSLFinder" for f in sys.meta_path)
assert import_asyncio() is False  # asyncio is there: nothing to do
print("ok")
"""


def test_the_import_machinery_in_a_fresh_interpreter() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_MACHINERY], capture_output=True, text=True, timeout=30,
                          cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


def test_ssl_already_imported_is_the_usual_import() -> None:
    code = ("import ssl, sys\nfrom runner.ssl_deferral import import_asyncio\n"
            "assert import_asyncio() is False\nimport asyncio.base_events\n"
            "assert asyncio.base_events.ssl is ssl\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd=REPO,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


def test_what_an_idle_runner_has_not_imported(tmp_path: Path) -> None:
    """The libraries the runner no longer loads before the Sequence asks (idle RSS 27 -> 19 MiB):
    ssl and its libraries, anyio, uvloop, pathlib (with urllib and ipaddress)."""
    path = _sequence(tmp_path, """
        import json, sys

        async def run(context, input):
            names = ("ssl", "_ssl", "anyio", "uvloop", "pathlib", "urllib.parse", "ipaddress")
            maps = open("/proc/self/maps").read() if sys.platform == "linux" else ""
            yield json.dumps({"imported": [n for n in names if n in sys.modules],
                              "libssl": "libssl" in maps or "libcrypto" in maps}) + "\\n"
    """)
    [facts] = _run(path)
    assert facts == {"imported": [], "libssl": False}
