"""Every sample Sequence through ``python -m runner run`` (a real runner child), checked
against the output its README documents."""

from __future__ import annotations

import json
import os

import pytest
from cli_helpers import REPO, run_cli, sample


def stderr_lines(proc) -> list[str]:
    return proc.stderr.decode("utf-8", "replace").splitlines()


def test_hello_documented_output_and_quiet_stderr():
    proc = run_cli("run", sample("hello"), input=b"python runner\nworld\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Hello python runner!\nHello world!\n"
    assert proc.stderr == b""  # nothing but the output when all goes well


def test_hello_last_line_without_newline():
    proc = run_cli("run", sample("hello"), input=b"a\nb")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Hello a!\nHello b!\n"


def test_hello_without_stdin_is_empty_input():
    proc = run_cli("run", sample("hello"))  # stdin is /dev/null, as on CI
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""


def test_hello_relative_path_from_the_repo_and_input_file(tmp_path):
    names = tmp_path / "names.txt"
    names.write_bytes(b"file\n")
    proc = run_cli("run", "sample_sequences/hello", "--input", str(names), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Hello file!\n"


def test_binary_passthrough_byte_exact():
    data = b"foo\nbar baz\n\xc5\xbc\xc3\xb3\xc5\x82w\n"
    proc = run_cli("run", sample("binary-passthrough"), "--content-type", "application/octet-stream", input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data and len(data) == 20


def test_binary_passthrough_large_random_bytes():
    data = os.urandom(3 << 20) + b"\x00\r\n\xff"  # several windows, every byte value
    proc = run_cli("run", sample("binary-passthrough"), "-t", "application/octet-stream", input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data


def test_ndjson_transform():
    proc = run_cli("run", sample("ndjson-transform"), "--content-type", "application/x-ndjson",
                   input=b'{"name":"a"}\n{"name":"b","x":1}\n7\n')
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    values = [json.loads(line) for line in lines]
    assert [list(v.items()) for v in values] == [
        [("name", "a"), ("seen", True), ("n", 1)],
        [("name", "b"), ("x", 1), ("seen", True), ("n", 2)],
        [("value", 7), ("seen", True), ("n", 3)],
    ]
    assert proc.stdout.endswith(b"\n")


def test_counter_default_args_from_package_json():
    proc = run_cli("run", sample("counter"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"1\n2\n3\n4\n5\n"


def test_counter_trailing_args_are_strings():
    proc = run_cli("run", sample("counter"), "3", "20")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"1\n2\n3\n"


def test_counter_args_json():
    proc = run_cli("run", sample("counter"), "--args", "[2, 0]")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"1\n2\n"


def test_args_json_and_trailing_args_conflict():
    proc = run_cli("run", sample("counter"), "3", "--args", "[2]")
    assert proc.returncode == 2
    assert b"either" in proc.stderr


def test_failing_exit_23_with_traceback_on_stderr():
    proc = run_cli("run", sample("failing"))
    assert proc.returncode == 23
    assert proc.stdout == b"about to fail\n"
    lines = stderr_lines(proc)
    assert any(line.startswith("[stderr] Traceback") for line in lines), proc.stderr
    last_tb = [line for line in lines if "TestException: This exception should appear on stderr" in line]
    assert last_tb and last_tb[0].startswith("[stderr] "), proc.stderr
    assert lines[-1].startswith("[run] exit 23")


def test_topic_producer_alone():
    proc = run_cli("run", sample("topic-producer"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Alice\nBob\nCarol\n"


def test_topic_consumer_alone():
    proc = run_cli("run", sample("topic-consumer"), input=b"Alice\nBob\nCarol\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Got: Alice\nGot: Bob\nGot: Carol\n"


def test_stdinout_with_stdin_file(tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"python runner\n")
    proc = run_cli("run", sample("stdinout"), "--stdin", str(lines))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""
    assert proc.stderr == b"[stdout] Got on stdin: python runner\n"


def test_stdinout_with_our_stdin():
    proc = run_cli("run", sample("stdinout"), "--stdin", "-", input=b"a\nb\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"[stdout] Got on stdin: a\n[stdout] Got on stdin: b\n"


def test_stdinout_without_stdin_ends_at_once():
    proc = run_cli("run", sample("stdinout"), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"" and proc.stderr == b""


def test_pipeline():
    proc = run_cli("run", sample("pipeline"), input=b"1\n21\n-4\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"2\n42\n-8\n"


def test_sth_hello_scramjet_stream():
    proc = run_cli("run", sample("sth-hello"), input=b"python runner\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Hello python runner!\n"


def test_single_py_file_with_logs_and_print(tmp_path):
    seq = tmp_path / "seq.py"
    seq.write_text(
        "import sys\n"
        "async def run(context, input):\n"
        "    context.logger.info('starting %s', 1)\n"
        "    context.logger.warning('careful')\n"
        "    print('to stdout')\n"
        "    print('to stderr', file=sys.stderr)\n"
        "    context.emit('done', {'ok': True})\n"
        "    async for line in input:\n"
        "        yield line.upper()\n"
    )
    proc = run_cli("run", str(seq), input=b"abc\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"ABC\n"
    lines = stderr_lines(proc)
    assert "[log INFO] starting 1" in lines
    assert "[log WARN] careful" in lines
    assert "[stdout] to stdout" in lines
    assert "[stderr] to stderr" in lines
    assert '[event done] {"ok": true}' in lines


@pytest.mark.parametrize("mode", [(), ("--inline",)], ids=["child", "inline"])
def test_log_format_json(tmp_path, mode):
    seq = tmp_path / "seq.py"
    seq.write_text(
        "async def run(context, input):\n"
        "    context.logger.info('hi')\n"
        "    print('printed')\n"
        "    context.emit('e', [1, 2])\n"
        "    yield 'out\\n'\n"
    )
    proc = run_cli("run", *mode, str(seq), "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"out\n"
    records = [json.loads(line) for line in stderr_lines(proc)]
    kinds = {r["type"] for r in records}
    assert {"log", "stdout", "event", "exit"} <= kinds, records
    assert any(r["type"] == "stdout" and r["text"] == "printed" and "ts" in r for r in records)
    (event,) = [r for r in records if r["type"] == "event"]
    assert event["name"] == "e" and event["message"] == [1, 2]
    assert all(isinstance(r.get("ts"), int) and r["ts"] > 1_600_000_000_000 for r in records), records
    assert any(r["type"] == "log" and r["msg"] == "hi" and r["level"] == "INFO" for r in records)
    assert records[-1]["type"] == "exit" and records[-1]["code"] == 0


def test_config_json_and_file(tmp_path):
    seq = tmp_path / "seq.py"
    seq.write_text("async def run(context, input):\n    yield repr(sorted(context.config.items())) + '\\n'\n")
    proc = run_cli("run", str(seq), "--config", '{"a": 1}')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"[('a', 1)]\n"
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"b": [true]}')
    proc = run_cli("run", str(seq), "--config", f"@{cfg}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"[('b', [True])]\n"
    proc = run_cli("run", str(seq), "--config", "[1]")
    assert proc.returncode == 2 and b"--config must be a JSON object" in proc.stderr


def test_bad_path_exit_21_with_message():
    proc = run_cli("run", "no/such/sequence")
    assert proc.returncode == 21
    assert b"no/such/sequence" in proc.stderr
    assert proc.stdout == b""


def test_broken_package_json_exit_21_names_the_file(tmp_path):
    pkg = tmp_path / "broken"
    pkg.mkdir()
    (pkg / "package.json").write_text('{"main": "main.py",')
    (pkg / "main.py").write_text("def run(context, input):\n    return None\n")
    proc = run_cli("run", str(pkg))
    assert proc.returncode == 21
    assert str(pkg / "package.json").encode() in proc.stderr


def test_syntax_error_exit_22(tmp_path):
    pkg = tmp_path / "syntax"
    pkg.mkdir()
    (pkg / "package.json").write_text('{"name": "syntax", "main": "main.py"}')
    (pkg / "main.py").write_text("def run(context, input)\n    return 1\n")
    proc = run_cli("run", str(pkg))
    assert proc.returncode == 22
    assert b"SyntaxError" in proc.stderr
    assert b"main.py" in proc.stderr


def test_help_has_examples():
    proc = run_cli("run", "--help")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    for needle in ("examples:", "--inline", "--event", "--stop-timeout", "--stdin", "exit status", "137"):
        assert needle in text
    proc = run_cli("pack", "--help")
    assert proc.returncode == 0 and b"--install-deps" in proc.stdout


def test_usage_errors_exit_2():
    assert run_cli("run").returncode == 2
    proc = run_cli("run", sample("hello"), "--args", "{")
    assert proc.returncode == 2 and b"--args" in proc.stderr
    proc = run_cli("run", sample("hello"), "--input", "/no/such/file")
    assert proc.returncode == 2 and b"/no/such/file" in proc.stderr
