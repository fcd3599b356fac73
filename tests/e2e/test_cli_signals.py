"""Stop, keepalive, kill and events through ``python -m runner run`` (runner child)."""

from __future__ import annotations

import signal

from cli_helpers import sample

RUNNING = "[run] the Sequence is running"  # -v: the first heartbeat arrived, run() has been called


def test_events_reply_and_sigint_stops_138(running):
    r = running("run", sample("events"), "--event", "ping=hi", "--event", 'test-event="foo"')
    r.wait_for('[event test-response] "reply to foo"')
    r.signal(signal.SIGINT)
    assert r.finish() == 138
    lines = r.stderr.splitlines()
    assert '[event pong] "reply to hi"' in lines
    assert "[log INFO] Got 'ping' with 'hi', replying with 'pong'" in lines
    assert "[log INFO] Got 'test-event' with 'foo', replying with 'test-response'" in lines
    assert r.stdout == b""


def test_stop_without_keepalive(running):
    r = running("run", "-v", sample("stop-keepalive"))
    r.wait_for(RUNNING)
    r.signal(signal.SIGINT)
    assert r.finish() == 138
    printed = [line for line in r.stderr.splitlines() if line.startswith("[stdout] ")]
    assert printed == ["[stdout] Cleaning up...", "[stdout] Cleanup done."]


def test_keepalive_then_final_stop_by_a_second_sigint(running):
    r = running("run", "-v", sample("stop-keepalive"), "SEND_KEEPALIVE")
    r.wait_for(RUNNING)
    r.signal(signal.SIGINT)
    r.wait_for("asked to keep running (keepalive 3000 ms)")
    assert r.proc.poll() is None  # kept alive
    r.signal(signal.SIGINT)
    assert r.finish() == 138
    printed = [line for line in r.stderr.splitlines() if line.startswith("[stdout] ")]
    assert printed == ["[stdout] Cleaning up...", "[stdout] Keeping alive for 3000 ms",
                       "[stdout] Cleaning up...", "[stdout] Cleanup done."]


def test_keepalive_from_config_and_sigterm(running):
    r = running("run", "-v", sample("stop-keepalive"), "--config", '{"sendKeepalive": true}')
    r.wait_for(RUNNING)
    r.signal(signal.SIGTERM)
    r.wait_for("asked to keep running (keepalive 3000 ms)")  # after ALIVE, not just the print before it
    r.signal(signal.SIGTERM)
    assert r.finish() == 138


def test_cpu_bound_stop_timeout_ends_it_138(running):
    r = running("run", sample("cpu-bound"), "--stop-timeout", "300")
    r.wait_for("[stdout] Spinning.")
    r.signal(signal.SIGINT)
    assert r.finish() == 138  # the stop deadline passed: KILL after STOP


def test_cpu_bound_killed_by_second_sigint(running):
    r = running("run", sample("cpu-bound"), "--stop-timeout", "60000")
    r.wait_for("[stdout] Spinning.")
    r.signal(signal.SIGINT)
    r.wait_for("SIGINT: stopping")
    r.signal(signal.SIGINT)
    assert r.finish() == 138  # killed, after a stop was requested
    assert "SIGINT: killing" in r.stderr


def test_cpu_bound_killed_by_second_sigterm(running):
    r = running("run", sample("cpu-bound"), "--stop-timeout", "60000")
    r.wait_for("[stdout] Spinning.")
    r.signal(signal.SIGTERM)
    r.wait_for("SIGTERM: stopping")
    r.signal(signal.SIGTERM)
    assert r.finish() in (137, 138)


def test_unhealthy_is_reported_then_stopped(running):
    r = running("run", sample("unhealthy"))
    r.wait_for("reports itself unhealthy")
    r.signal(signal.SIGTERM)
    assert r.finish() == 138
    assert r.stdout == b""
