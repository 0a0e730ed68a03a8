"""What a call reports about itself, on each side: its span (`_tracing`) and its metrics
(`_metrics`), started and ended together through one object; and the fields of every log
record about it (`call_fields`).

A call that nobody observes (tracing off, metrics off: the default) gets None here, so each
hook in the call paths is one `is not None` test.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import _metrics, _tracing
from . import protocol as p
from ._errors import WorkerLost

if TYPE_CHECKING:
    from ._info import WorkerInfo


def call_fields(call_id: int | None, routine: str | None, worker_id: str | None, caller: str | None) -> dict[str, Any]:
    """The `extra` of a log record about a call: tools index records by these attributes
    (a JSON formatter writes them out; see README "Observing")."""
    return {"call_id": call_id, "routine": routine, "worker_id": worker_id, "caller": caller}


class CallWatch:
    """The caller's view of one call: its CLIENT span, when it started, which worker got it."""

    __slots__ = ("name", "span", "started", "worker_id")

    def __init__(self, name: str, span: _tracing.ClientSpan | None, started: float) -> None:
        self.name, self.span, self.started = name, span, started
        self.worker_id = ""

    def peer(self, worker: WorkerInfo) -> None:
        self.worker_id = worker.id
        if self.span is not None:
            self.span.peer(worker)

    def carry(self) -> dict[Any, Any] | None:
        """What the request's context frame carries besides the variables."""
        return _tracing.carry(self.span)

    def replied(self) -> None:
        """The call's first reply arrived: its dispatch latency is known."""
        if self.started and _metrics.CALLER is not None:
            _metrics.CALLER.dispatched(self.name, self.started)
            self.started = 0.0

    def step(self, kind: str) -> None:
        if self.span is not None:
            self.span.step(kind, True)

    def end(self, exc: BaseException | None) -> None:
        if exc is not None and isinstance(exc, WorkerLost) and _metrics.CALLER is not None:
            _metrics.CALLER.worker_lost(self.worker_id or "unknown")
        if self.span is not None:
            self.span.end() if exc is None else self.span.fail(exc)


def watch_call(name: str) -> CallWatch | None:
    """Start observing a call of `name` in the caller; None when nothing observes it."""
    span = _tracing.client_span(name)
    if span is None and _metrics.CALLER is None:
        return None
    return CallWatch(name, span, time.perf_counter() if _metrics.CALLER is not None else 0.0)


class ServerWatch:
    """The worker's view of one call: its SERVER span and when it started running."""

    __slots__ = ("name", "span", "started")

    def __init__(self, name: str, span: _tracing.ServerSpan | None, started: float) -> None:
        self.name, self.span, self.started = name, span, started

    def step(self, kind: str) -> None:
        if self.span is not None:
            self.span.step(kind, False)

    def finish(self, reply: p.Reply | None) -> None:
        """The call ended with `reply` (None: its generator was abandoned between steps)."""
        if self.span is not None:
            self.span.finish(reply)
        if self.started and _metrics.WORKER is not None:
            _metrics.WORKER.finished(self.name, self.started, reply)


def watch_served(carrier: dict[str, str] | None, name: str, host: Any) -> ServerWatch | None:
    """Start observing a call of `name` that arrived with `carrier`, inside its context (its
    span becomes the current one there); None when nothing observes it."""
    span = _tracing.server_span(carrier, name, host)
    if span is None and _metrics.WORKER is None:
        return None
    return ServerWatch(name, span, time.perf_counter() if _metrics.WORKER is not None else 0.0)
