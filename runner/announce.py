"""PANG: what the Sequence requires and provides, each fact announced once.

STH's hub (re)routes an Instance's ``requires`` topic into its input on every PANG
that carries a content type (reference §10), so a repeated fact is not harmless:
topic data arrives twice. The runner therefore sends:

1. once the Sequence is loaded: ``{requires, contentType}`` (the input side, ``""``/``""``
   without a declaration); always, it makes the Instance "running";
2. once run() has produced its result: ``{requires, contentType}`` again only if a
   ``requires`` topic became known only now (set at run time) and none was announced,
   then ``{provides, contentType, outputEncoding}`` (the output side; protocol v1 hosts
   learn the output content type from it; the STH transport sends it only when it names
   a topic);
3. after the first output batch and at the end of the output, only what became known
   since (a ``run.provides`` an async generator sets in its body).

Declarations are read by runner/sequence/topics.py from wherever the Sequence makes them.
"""

from __future__ import annotations

from typing import Any

from .protocol import Pang
from .transport.base import Transport

__all__ = ["TopicAnnouncer"]


class TopicAnnouncer:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.requires_sent = False  # a requires topic was announced
        self.provides_sent = False  # a provides topic was announced

    def loaded(self, topics: Any) -> None:
        """The first PANG: the input side as declared before run() is called."""
        self._transport.send(Pang(requires=topics.requires, content_type=topics.input_content_type or ""))
        self.requires_sent = bool(topics.requires)

    def output_known(self, run: Any) -> None:
        """run() produced its result (a SequenceRun): a new requires topic, then the output side."""
        self._requires(run.requires, run.input_content_type)
        self._transport.send(Pang(provides=run.provides, content_type=run.content_type))
        self.provides_sent = bool(run.provides)

    def recheck(self, topics: Any, output_content_type: str) -> None:
        """Announce topics that became known after ``output_known`` (set while the output ran)."""
        self._requires(topics.requires, topics.input_content_type)
        if topics.provides and not self.provides_sent:
            self._transport.send(Pang(provides=topics.provides, content_type=output_content_type))
            self.provides_sent = True

    def _requires(self, topic: str, content_type: str | None) -> None:
        if topic and not self.requires_sent:
            self._transport.send(Pang(requires=topic, content_type=content_type or ""))
            self.requires_sent = True
