"""The Instance registry: starts Sequences through host_bridge and keeps what the API shows.

Instances start through the configured runtime (hub/runtimes/: a process or a container);
the registry only sees host_bridge's Instance. Each live Instance gets a Tap per channel (taps.py), its summary (records.py),
saved to the store when it starts and when it ends, and its topic wiring: an
output topic makes the topic one more reader of the output; an input topic
feeds the topic's items into the input (and the API's input answers 405).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import anyio
import anyio.abc
import psutil

from host_bridge import Bridge, ChannelClosed, Instance, InstanceNotRunning, Status

from .config import HubConfig
from .records import InstanceSummary, SequenceRecord
from .runtimes import Leftover, Limits, Runtime, StartRequest
from .store import Store
from .taps import Tap
from .topics import Actor, TopicRouter

logger = logging.getLogger("hub.instances")
MiB = 1 << 20
LOST = "the hub stopped while this Instance was running"


class Refused(Exception):
    """A start the hub's limits refuse (507)."""


class HubInstance:
    """One Instance as the hub serves it: host_bridge's handle, taps, summary, topics."""

    def __init__(self, summary: InstanceSummary, instance: Instance, taps: dict[str, Tap]) -> None:
        self.summary = summary
        self.instance = instance
        self.taps = taps
        self.input_lock = anyio.Lock()
        self.stdin_lock = anyio.Lock()
        self.input_topic: str | None = None
        self.output_topic: str | None = None
        self.api_input_used = False
        self.input_wired = False
        self.declared = anyio.Event()  # the runner declared its topics and content types (or ended)
        self.output_wired = False

    @property
    def id(self) -> str:
        return self.summary.id

    @property
    def ended(self) -> bool:
        return self.instance.done.is_set()

    def refresh(self) -> InstanceSummary:
        """Copy host_bridge's view into the summary (status, times, exit code and reason)."""
        inst, info, s = self.instance, self.instance.info, self.summary
        s.started = info.started
        s.pid = info.pid
        s.provides = self.output_topic or info.provides or None
        s.requires = self.input_topic or info.requires or None
        s.status = hub_status(inst)
        if inst.done.is_set():
            s.ended = info.ended or datetime.now(timezone.utc)
            s.exit_code = info.exit_code
            s.reason = end_reason(inst, s.status)
        health = inst.health()
        s.extra = {"healthy": health.healthy, "stats": health.stats} if not inst.done.is_set() else {}
        return s


def hub_status(inst: Instance) -> str:
    """host_bridge's status, with "stopped" and "killed" for ends the hub asked for."""
    if inst.done.is_set() and inst.info.killed_by == "oom-killer":
        return "errored"  # STH would say "completed" for its 137; the hub says what happened
    if inst.done.is_set() and inst.status is Status.COMPLETED:
        if inst.stop_requested:
            return "stopped"
        if inst.kill_requested:
            return "killed"
    return inst.status.value


def end_reason(inst: Instance, status: str) -> str:
    info = inst.info
    if status == "errored":
        error = info.error or (info.runner_error or {}).get("message") or info.exit_reason
        return str(error or f"exit code {info.exit_code}")
    words = {"completed": "Instance completed", "stopped": "Instance stopped", "killed": "Instance killed"}
    text = words.get(status, status)
    return f"{text} ({info.exit_reason})" if info.exit_reason else text


def _topic_name(value: Any, key: str) -> str | None:
    """A topic from package.json: "name" or {key: "name", "contentType": ...}."""
    if isinstance(value, dict):
        value = value.get(key)
    return value if isinstance(value, str) and value else None


class InstanceRegistry:
    def __init__(self, config: HubConfig, store: Store, topics: TopicRouter, runtime: Runtime, bridge: Bridge,
                 tg: anyio.abc.TaskGroup) -> None:
        self.config = config
        self.store = store
        self.topics = topics
        self.runtime = runtime
        self.bridge = bridge
        self.tg = tg
        self.live: dict[str, HubInstance] = {}
        self.past: dict[str, InstanceSummary] = {}

    async def load(self) -> None:
        """Read the summaries of earlier runs; Instances a dead hub left "running" become errored, and
        what it left in the runtime (containers) is removed and named in their reason."""
        leftovers = await self.runtime.recover()
        lost = await self.store.mark_lost(LOST, lost_reasons(leftovers, self.runtime.name))
        for instance_id in lost:
            logger.warning("Instance %s was running when the hub stopped: marked errored", instance_id)
        self.past = {s.id: s for s in await self.store.instances()}

    # -- queries ---------------------------------------------------------------------------
    def get(self, instance_id: str) -> HubInstance | None:
        return self.live.get(instance_id)

    def summary(self, instance_id: str) -> InstanceSummary | None:
        hub_inst = self.live.get(instance_id)
        return hub_inst.refresh() if hub_inst else self.past.get(instance_id)

    def summaries(self) -> list[InstanceSummary]:
        return [*(s for i, s in self.past.items() if i not in self.live), *(h.refresh() for h in self.live.values())]

    def running(self, sequence_id: str | None = None) -> list[HubInstance]:
        return [h for h in self.live.values() if not h.ended and (sequence_id in (None, h.summary.sequence))]

    # -- start ------------------------------------------------------------------------------
    def check_capacity(self) -> None:
        """Refused (507) when the limits or STH's instanceRequirements say no."""
        if len(self.running()) >= self.config.max_instances:
            raise Refused(f"Insufficient Space on Resource: {self.config.max_instances} Instances already run")
        req = self.config.requirements  # each figure is read only when its threshold is on: starts stay cheap
        if req.free_mem_mib and (free_mem := psutil.virtual_memory().available / MiB) < req.free_mem_mib:
            raise Refused(f"Insufficient Space on Resource: {free_mem:.0f} MiB free memory < {req.free_mem_mib}")
        if req.cpu_load_percent and (load := psutil.cpu_percent(interval=None)) > req.cpu_load_percent:
            raise Refused(f"Insufficient Space on Resource: CPU load {load:.0f}% > {req.cpu_load_percent}%")
        if req.free_space_mib and (free_disk := psutil.disk_usage(str(self.store.directory)).free / MiB) \
                < req.free_space_mib:
            raise Refused(f"Insufficient Space on Resource: {free_disk:.0f} MiB free disk < {req.free_space_mib}")

    async def start(self, record: SequenceRecord, app_config: dict[str, Any], args: list[Any] | None,
                    input_topic: str | None = None, output_topic: str | None = None,
                    limits: Limits | None = None) -> HubInstance:
        """Start an Instance; returns once it is recorded in the store and its runner connected or
        failed to (``instance.wait_started()`` then says which)."""
        self.check_capacity()
        started = await self.runtime.start(StartRequest(record.id, self.store.package_dir(record), app_config, args,
                                                        limits or Limits()))
        instance = started.instance
        summary = InstanceSummary(
            id=instance.id, sequence=record.id, sequence_name=record.name, app_config=app_config,
            args=args, created=instance.info.created or datetime.now(timezone.utc), pid=instance.pid,
            details=started.details,
        )
        taps = {
            name: Tap(name, source, pipe=name == "output", ready=functools.partial(instance.buffered, name))
            for name, source in (("output", instance.output()), ("stdout", instance.stdout()),
                                 ("stderr", instance.stderr()))
        }
        taps["log"] = Tap("log", _log_source(instance), pipe=False)
        hub_inst = HubInstance(summary, instance, taps)
        self.live[instance.id] = hub_inst
        for tap in taps.values():
            self.tg.start_soon(tap.run)
        hub_inst.input_topic = input_topic or _topic_name(record.package.get("requires"), "requires")
        hub_inst.output_topic = output_topic or _topic_name(record.package.get("provides"), "provides")
        self._wire_topics(hub_inst)
        logger.info("Instance %s of Sequence %s (%s) starting (%s), pid %s", instance.id, record.id, record.name,
                    started.details.get("container", self.runtime.name), instance.pid)
        # Recorded before the start is answered (a hub that dies right after the answer must still
        # know the Instance when it restarts), while the runner connects: the write overlaps the handshake.
        async with anyio.create_task_group() as recording:
            recording.start_soon(self.store.save_instance, hub_inst.refresh())
            await instance.wait_started()
        self.tg.start_soon(self._watch, hub_inst)
        return hub_inst

    async def _watch(self, hub_inst: HubInstance) -> None:
        instance = hub_inst.instance
        try:
            if await instance.wait_started():
                await self.store.save_instance(hub_inst.refresh())
                await self._learn_topics(hub_inst)
        finally:
            hub_inst.declared.set()
        await instance.wait()
        summary = hub_inst.refresh()
        await self.store.save_instance(summary)
        self.past[summary.id] = summary
        logger.info("Instance %s %s, exit code %s: %s", summary.id, summary.status, summary.exit_code,
                    summary.reason)
        self._forget_old()

    async def _learn_topics(self, hub_inst: HubInstance) -> None:
        """The topics the runner declares at run time (PANG), when the start did not name them."""
        state = await hub_inst.instance.wait_until(
            lambda s: (s.provides is not None and s.requires is not None) or s.done)
        changed = False
        if hub_inst.input_topic is None and state.requires and not hub_inst.api_input_used:
            hub_inst.input_topic = state.requires
            changed = True
        if hub_inst.output_topic is None and state.provides:
            hub_inst.output_topic = state.provides
            changed = True
        if changed:  # also when it ended already: its output waits, unread, in the tap
            self._wire_topics(hub_inst)

    def _wire_topics(self, hub_inst: HubInstance) -> None:
        if hub_inst.input_topic and not hub_inst.input_wired:
            hub_inst.input_wired = True
            self.tg.start_soon(self._feed_input, hub_inst, hub_inst.input_topic)
        if hub_inst.output_topic and not hub_inst.output_wired:
            hub_inst.output_wired = True
            self.tg.start_soon(self._feed_topic, hub_inst, hub_inst.output_topic)

    async def _feed_input(self, hub_inst: HubInstance, name: str) -> None:
        instance = hub_inst.instance
        topic = self.topics.get(name, instance.info.input_content_type)
        actor = Actor("consumer", "instance", hub_inst.id)
        with anyio.CancelScope() as scope:
            self.tg.start_soon(_cancel_when_done, instance, scope)
            try:
                async for data in topic.consume(actor):
                    await instance.write_input(data, content_type=topic.content_type)
                await instance.end_input()
            except (InstanceNotRunning, ChannelClosed):
                pass
            scope.cancel()

    async def _feed_topic(self, hub_inst: HubInstance, name: str) -> None:
        info = hub_inst.instance.info
        actor = Actor("provider", "instance", hub_inst.id)
        await self.topics.produce(name, hub_inst.taps["output"].stream(), actor, info.output_content_type)

    def _forget_old(self) -> None:
        ended = [h for h in self.live.values() if h.ended]
        for hub_inst in ended[: max(0, len(ended) - self.config.keep_ended)]:
            del self.live[hub_inst.id]
            for tap in hub_inst.taps.values():
                tap.close()  # an output nobody read would otherwise wait for a reader forever
            self.bridge.forget(hub_inst.id)

    # -- control -----------------------------------------------------------------------------
    async def shutdown(self) -> None:
        """STOP every running Instance; KILL those still running after the shutdown timeout."""
        running = self.running()
        if running:
            logger.info("stopping %d Instances", len(running))
        for hub_inst in running:
            await hub_inst.instance.stop(timeout_ms=self.config.shutdown_timeout * 1000)
        with anyio.move_on_after(self.config.shutdown_timeout):
            for hub_inst in running:
                await hub_inst.instance.wait()
        for hub_inst in running:
            if not hub_inst.ended:
                await hub_inst.instance.kill()
        with anyio.move_on_after(self.config.shutdown_timeout):
            for hub_inst in running:
                await hub_inst.instance.wait()
        for hub_inst in running:
            await self.store.save_instance(hub_inst.refresh())


def lost_reasons(leftovers: list[Leftover], runtime: str) -> dict[str, str]:
    """Why each Instance of a dead hub ended, by id: what the restart found of it, if anything."""
    reasons = {left.instance_id: f"{LOST}; {left.what} was left and is now removed"
               for left in leftovers if left.instance_id}
    default = "its runner exited with the hub" if runtime == "process" else f"nothing of it was left ({runtime})"
    reasons[""] = f"{LOST}; {default}"
    return reasons


async def _cancel_when_done(instance: Instance, scope: anyio.CancelScope) -> None:
    await instance.wait()
    scope.cancel()


async def _log_source(instance: Instance) -> AsyncIterator[bytes]:
    """The LOG channel as JSON lines (host_bridge parses each record; we write it back out)."""
    async for record in instance.logs():
        yield json.dumps(record, default=str).encode() + b"\n"
