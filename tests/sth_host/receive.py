"""Serving one session of an STH Instance: its readers and what the runner's messages do.

Nothing is processed before all nine channels are connected (host.py). Then
MONITORING lines are decoded (a bad line is logged and skipped, where STH would
break its pipeline: ``instance.protocol_errors``), every heartbeat is answered
with MONITORING_REPLY, PING with PONG; the data channels are kept for the
consumer, the channels the runner reads are drained.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio

from runner.protocol import sth
from runner.protocol.sth import STHChannel, STHCode

from .channels import DRAIN_CHANNELS, READ_CHANNELS, READ_SIZE, Session, first
from .instance import STHInstance, STHInstanceGone
from .legacy import on_pang_0_18

log = logging.getLogger("sth_host")

_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


async def serve(inst: STHInstance, session: Session) -> None:
    """Run ``session`` until its connections end or a reconnect replaces it."""
    old, inst._session = inst._session, session
    inst.reconnects += 1
    if old is not None and old.scope is not None:
        old.scope.cancel()
    # a reconnect replaces the streams: data channels held open across it go on
    inst._held_eof.clear()
    inst._connected.set()
    try:
        async with anyio.create_task_group() as tg:
            session.scope = tg.cancel_scope
            tg.start_soon(_read_monitoring, inst, session)
            for ch in READ_CHANNELS:
                tg.start_soon(_read_data, inst, session, int(ch))
            for ch in DRAIN_CHANNELS:
                if int(ch) in session.readers:  # no PACKAGE on an 0.18-style host
                    tg.start_soon(_drain, session, int(ch))
    finally:
        if inst._session is session:
            inst._session = None
            inst._connected = anyio.Event()
        with anyio.CancelScope(shield=True):
            for stream in session.streams.values():
                await stream.aclose()


async def _drain(session: Session, channel: int) -> None:
    """Channels the runner does not write on (it may half-close them; the package tunnel is ignored)."""
    reader = session.readers[channel]
    try:
        while True:
            await reader.receive(READ_SIZE)
    except _GONE:
        return


async def _read_data(inst: STHInstance, session: Session, channel: int) -> None:
    reader = session.readers[channel]
    target = inst._channels[channel]
    try:
        while True:
            await target.put(await reader.receive(READ_SIZE))
    except _GONE:
        pass
    await _data_eof(inst, session, channel)


async def _data_eof(inst: STHInstance, session: Session, channel: int) -> None:
    """EOF on a runner channel: the end of that stream, unless it looks like a disconnect.
    Waits (up to disconnect_settle) for the first sign either way, not in steps: the
    completion benchmarks read the end of output here."""
    with anyio.move_on_after(inst.host.disconnect_settle):
        await first(inst._finished_event, inst._exited, session.monitoring_closed)
    if session.monitoring_closed.is_set() and not inst._finished and not inst.exited:
        inst._held_eof.add(channel)  # ended by a reconnect's EOF or by the exit
        return
    inst._channels[channel].end()


async def _read_monitoring(inst: STHInstance, session: Session) -> None:
    reader = session.readers[STHChannel.MONITORING]
    decoder = sth.MessageDecoder()
    try:
        while True:
            try:
                chunk = await reader.receive(READ_SIZE)
            except _GONE:
                break
            await _decode(inst, session, decoder, chunk)
        await _decode(inst, session, decoder, None)
    finally:
        session.monitoring_closed.set()


async def _decode(inst: STHInstance, session: Session, decoder: sth.MessageDecoder, chunk: bytes | None) -> None:
    """Act on every good line; a bad line is logged and skipped (STH would break its pipeline)."""
    data: bytes = b"" if chunk is None else chunk
    while True:
        try:
            messages = decoder.eof() if chunk is None else decoder.feed(data)
            failed = False
        except sth.STHProtocolError as err:
            log.warning("instance %s: %s", inst.id, err)
            inst.protocol_errors.append(err)
            messages, failed = err.frames, True
        for code, body in messages:
            await _on_message(inst, session, code, body)
        if not failed:
            return
        data = b""


async def _reply(inst: STHInstance, session: Session, code: int, data: Mapping[str, Any]) -> None:
    await _write_control(inst, session, sth.encode_host_message(code, data))


async def _write_control(inst: STHInstance, session: Session, lines: bytes) -> None:
    try:
        await inst._write(STHChannel.CONTROL, lines, session)
    except STHInstanceGone as err:
        log.info("instance %s: %s", inst.id, err)


async def _on_message(inst: STHInstance, session: Session, code: int, data: dict[str, Any]) -> None:
    if code not in sth.RUNNER_TO_HOST_CODES:
        err = sth.STHProtocolError(f"instance {inst.id} sent code {code}, which an STH host has no handler for")
        log.warning("%s", err)
        inst.protocol_errors.append(err)
        return
    inst.received.append(code)
    match code:
        case STHCode.MONITORING:
            if inst.reply_to_heartbeats:
                await _reply(inst, session, STHCode.MONITORING_REPLY, {})
            inst.heartbeat(data)
        case STHCode.PING:
            await _on_ping(inst, session, data)
        case STHCode.PANG if inst.host.protocol == "0.18":
            _running(inst, data)
            control = on_pang_0_18(inst, data)
            if control:
                await _write_control(inst, session, control)
        case STHCode.PANG:
            _on_pang(inst, data)
        case STHCode.EVENT:
            _on_event(inst, data)
        case STHCode.ALIVE:
            inst.keepalive_requested = True
        case STHCode.SEQUENCE_STOPPED:
            inst._finish()
            inst.sequence_error = data.get("sequenceError")
            inst.host.spawn_task(inst.watchdog, "SEQUENCE_STOPPED", True)
        case STHCode.SEQUENCE_COMPLETED:
            inst._finish()
            inst.host.spawn_task(inst.watchdog, "SEQUENCE_COMPLETED", False)
        case _:  # DESCRIBE_SEQUENCE, ERROR, ACKNOWLEDGE, STATUS: no host behaviour in STH
            inst.reports[code] = data


def _on_event(inst: STHInstance, data: dict[str, Any]) -> None:
    name = data.get("eventName")
    if isinstance(name, str):
        message = data.get("message")
        inst.publish(name, message)
        if inst.host.forward_events:
            inst.host.forward_event(inst, name, message)


async def _on_ping(inst: STHInstance, session: Session, data: dict[str, Any]) -> None:
    inst.pings += 1
    inst.ping = data
    payload = data.get("payload")
    if not isinstance(payload, dict):
        inst.protocol_errors.append(sth.STHProtocolError(f"instance {inst.id}: PING without payload"))
        return
    if inst.status not in ("stopping", "killing"):
        inst.status = data.get("status") or "running"
    inst.input_headers_sent = bool(data.get("inputHeadersSent"))
    inst.created = data.get("created")
    if inst.host.protocol != "0.18":  # 0.18.x: the start request's, set by STHHost.start
        inst.app_config = payload.get("appConfig")
        inst.args = payload.get("args")
    inst.requires = inst.requires or payload.get("inputTopic") or ""
    inst.provides = inst.provides or payload.get("outputTopic") or ""
    pid = (payload.get("system") or {}).get("processPID")
    try:
        inst.pid = int(pid) if pid is not None else inst.pid
    except (TypeError, ValueError):
        inst.protocol_errors.append(sth.STHProtocolError(f"bad processPID {pid!r}"))
    # PONG, in one write with the CONTROL messages a test asked to come around the first one
    before, after = inst.host.around_pong if inst.pings == 1 else ((), ())
    lines = [sth.encode_host_message(code, body) for code, body in before]
    lines.append(sth.encode_host_message(STHCode.PONG, sth.pong_data(inst.app_config, inst.args)))
    lines += [sth.encode_host_message(code, body) for code, body in after]
    await _write_control(inst, session, b"".join(lines))
    inst._established.set()
    if (
        inst.pid is not None
        and not inst._poller_started
        and (not inst.spawned or inst.host.exit_code_source == "file")
    ):
        inst._poller_started = True
        from .exits import poll_exit_code_file

        inst.host.spawn_task(poll_exit_code_file, inst)


def _on_pang(inst: STHInstance, data: dict[str, Any]) -> None:
    """STH's CSIController and dispatcher (ref §3.2 "Host on PANG", §10): the first non-empty
    ``requires``/``provides`` wins; every PANG with a content type (re)routes the Instance's
    ``requires`` topic into its IN (``topic_routings`` counts them: each is a copy of the topic)."""
    inst.requires = inst.requires or data.get("requires") or ""
    inst.provides = inst.provides or data.get("provides") or ""
    if inst.requires and data.get("contentType"):
        # STH's dispatcher routes the topic to IN: raw bytes, no header block
        inst.topic_routings += 1
        inst.input_from_topic = True
        inst.input_headers_sent = True
    _running(inst, data)


def _running(inst: STHInstance, data: dict[str, Any]) -> None:
    """The first PANG makes the Instance "running" (STH 1.0.x; 0.18.x has no status, tests wait on it)."""
    inst.pangs.append(data)
    if not inst._running.is_set():
        inst._running.set()
        if inst.status in ("initializing", "starting"):
            inst.status = "running"
