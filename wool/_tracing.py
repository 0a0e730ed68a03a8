"""OpenTelemetry tracing of routine calls: a CLIENT span in the caller, a SERVER span on the
worker, joined by the W3C trace context that travels with the call.

Theory of operation. Tracing needs only `opentelemetry-api` (`pip install wool[otel]`); without
it every function here returns None at once. With it, tracing is *on* in a process once a
real tracer provider is set there (the SDK's, by code or by `opentelemetry-instrument`) or
once a traced call arrived (a worker without an SDK still passes the trace on to the calls its
routines make, so one untraced hop does not break the trace). Until then a call costs one
attribute test (`_on`): the API's no-op tracer is never even asked.

The trace context travels in the call's context frame, the one that carries the
`wool.ContextVar`s, under a key no `wool.ContextVar` can have (`TRACE_KEY`): a dict holding
the W3C `traceparent` (and `tracestate`) headers of the caller's CLIENT span. The worker takes
it out before the variables are set (`take`), starts its SERVER span as a child of it, and
makes that span current in the call's context, so `opentelemetry.trace.get_current_span()`
inside the routine is the call's span and the routine's own calls are its children.

Generator steps are span *events*, not child spans: a generator call is one CLIENT and one
SERVER span from its first step to its last, and each step adds a `message` event (the RPC
conventions' own: `rpc.message.type` SENT/RECEIVED, `rpc.message.id` the step's number) with
the step's kind. A stream of ten thousand items stays one span, and what the generator's body
calls nests under the generator's span. Every step's frame carries the trace context again, so
a step is attributable on its own (a read-ahead step that the worker sees before any other).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Protocol

from . import protocol as p
from ._errors import WorkerLost

try:
    from opentelemetry import context as _otel_context
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - exercised by installs without the extra
    _trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from ._info import WorkerInfo

# Where the trace context travels in a context snapshot: no `wool.ContextVar` has an empty
# name, so no variable can collide with it.
TRACE_KEY = ("wool", "")
_INSTRUMENTATION = "wool"

_tracer: Tracer | None = None  # set once tracing is on in this process; never unset
_propagator = TraceContextTextMapPropagator() if _trace is not None else None


class _NoAPI:
    """Stands in for the API when it is not installed: never a provider."""

    _TRACER_PROVIDER = None


# Whether a real tracer provider is set is `_api._TRACER_PROVIDER is not None`: one attribute
# lookup per call (the public `get_tracer_provider()` costs about 1 µs, reading `os.environ`).
# Every API release so far keeps the provider there; with one that does not, `_api` is None
# and `_on` asks the public way.
_api: Any = _NoAPI if _trace is None else _trace if hasattr(_trace, "_TRACER_PROVIDER") else None


def _turn_on() -> Tracer:
    global _tracer
    if _tracer is None:
        assert _trace is not None
        # A proxy until a provider is set, then the provider's tracer: either way, cached.
        _tracer = _trace.get_tracer(_INSTRUMENTATION)
    return _tracer


def _on() -> Tracer | None:
    """`_tracer`, turned on if a provider is set, asked the public way."""
    if _tracer is None and _trace is not None and not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider):
        return _turn_on()
    return _tracer


def _tracer_now(traced: bool = False) -> Tracer | None:
    """The tracer, turned on now if a provider has been set since (or, `traced`, for a call
    that brought a trace: passed on even with no SDK here); None while tracing is off."""
    if traced and _trace is not None:
        return _turn_on()
    if _api is not None:
        # The private global first: the whole cost of a call when tracing is off.
        return None if _api._TRACER_PROVIDER is None else _turn_on()
    return _on()


if _trace is not None and os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"):
    _trace.get_tracer_provider()  # loads the provider the environment names, once


def _peer_attributes(endpoint: str) -> dict[str, Any]:
    """`server.address`/`server.port` (tcp) or the socket path (ipc) of a worker endpoint."""
    transport, _, rest = endpoint.partition("://")
    if transport == "tcp":
        host, _, port = rest.rpartition(":")
        attributes: dict[str, Any] = {"server.address": host.strip("[]"), "network.transport": "tcp"}
        if port.isdigit():
            attributes["server.port"] = int(port)
        return attributes
    return {"server.address": rest, "network.transport": "unix" if transport == "ipc" else transport}


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class _Traced:
    """One call's span, with the step count of a generator."""

    __slots__ = ("span", "steps")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.steps = 0

    def carrier(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        assert _propagator is not None
        _propagator.inject(headers, _trace.set_span_in_context(self.span))
        return headers

    def step(self, kind: str, sent: bool) -> None:
        """A generator step: a `message` event."""
        self.steps += 1
        if self.span.is_recording():
            self.span.add_event(
                "message",
                {"rpc.message.type": "SENT" if sent else "RECEIVED", "rpc.message.id": self.steps, "wool.step": kind},
            )

    def fail(self, exc: BaseException) -> None:
        """End the span as failed with `exc` (cancelled, lost, or raised)."""
        self.failed(_error_type(exc), f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def failed(self, error_type: str, description: str) -> None:
        span = self.span
        if span.is_recording():
            span.set_attribute("error.type", error_type)
            span.set_status(StatusCode.ERROR, description)
        span.end()

    def end(self) -> None:
        self.span.end()


class ClientSpan(_Traced):
    """The caller's span of one call: started before the call is dispatched, told which
    worker it went to, ended by its outcome."""

    __slots__ = ()

    def peer(self, worker: WorkerInfo) -> None:
        if self.span.is_recording():
            self.span.set_attributes({**_peer_attributes(worker.endpoint), "wool.worker.id": worker.id})

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, WorkerLost) and self.span.is_recording():
            self.span.set_attribute("wool.worker.lost", True)
        super().fail(exc)


def client_span(name: str) -> ClientSpan | None:
    """A CLIENT span for a call of routine `name`, child of the current span; None (at the
    cost of one test) when tracing is off."""
    tracer = _tracer if _tracer is not None else _tracer_now()
    if tracer is None:
        return None
    span = tracer.start_span(
        name, kind=SpanKind.CLIENT, attributes={"rpc.system": "wool", "rpc.method": name}, record_exception=False
    )
    return ClientSpan(span)


def carry(span: ClientSpan | None) -> dict[Any, Any] | None:
    """What a request's context frame carries besides the variables: the trace context
    (nothing for a call outside any trace, made where tracing passes traces on but no SDK
    records them)."""
    if span is None:
        return None
    headers = span.carrier()
    return {TRACE_KEY: headers} if headers else None


def take(values: dict[Any, Any]) -> dict[str, str] | None:
    """Remove and return the trace context from a received context snapshot (None if it
    carries none, or something that is not a carrier)."""
    carrier = values.pop(TRACE_KEY, None)
    if carrier is None or not isinstance(carrier, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in carrier.items()):
        return None
    return carrier


class ServerSpan(_Traced):
    """The worker's span of one call, current in the call's context while it runs."""

    __slots__ = ()

    def finish(self, reply: p.Reply | None) -> None:
        """End with the call's last reply: failed if it is a `raise`, or if there is none
        (the caller abandoned the generator between steps)."""
        if reply is None:
            self.failed("asyncio.CancelledError", "abandoned by its caller")
        elif isinstance(reply, p.Raise):
            self.failed(reply.type_name, f"{reply.type_name}: {reply.message}" if reply.message else reply.type_name)
        else:
            self.end()


class _Served(Protocol):
    endpoint: str


def server_span(carrier: dict[str, str] | None, name: str, host: _Served) -> ServerSpan | None:
    """Start the SERVER span of a call of `name` that brought `carrier`, and make it current
    in the running context (the call's own). None when tracing is off here and the call
    brought no trace. Runs inside the call's context."""
    tracer = _tracer if _tracer is not None else _tracer_now(traced=carrier is not None)
    if tracer is None:
        return None
    assert _propagator is not None
    parent = _propagator.extract(carrier) if carrier else None
    span = tracer.start_span(
        name,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "wool", "rpc.method": name, **_peer_attributes(host.endpoint)},
        record_exception=False,
    )
    _otel_context.attach(_trace.set_span_in_context(span))  # the call's context is its own: no detach
    return ServerSpan(span)


def flush(timeout: float = 5.0) -> None:
    """Export the spans this process's tracer provider still holds (an SDK provider's batch
    processor), within `timeout` seconds: as a worker stops. A worker forked from the pool's
    template exits with `os._exit`, which runs no `atexit` hook, the SDK's own flush included."""
    if _trace is None:
        return
    force_flush = getattr(_trace.get_tracer_provider(), "force_flush", None)
    if callable(force_flush):
        force_flush(int(timeout * 1000))


def event(name: str, attributes: dict[str, Any]) -> None:
    """Add event `name` to the current span (in a worker's call, the call's SERVER span), if
    one is recording; nothing otherwise. (For rare events: it looks the span up every time.)"""
    if _trace is None:
        return
    span = _trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes)
