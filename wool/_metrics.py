"""Prometheus metrics of routine calls, on the worker that runs them and the caller that makes
them (`pip install wool[metrics]`, which brings `prometheus_client`).

Theory of operation. wool's metrics live in their own `CollectorRegistry` (`registry()`,
public as `wool.metrics.REGISTRY`), not in prometheus_client's default one: importing wool
registers nothing in an application's registry (and imports no prometheus_client at all), and
a process chooses to expose them: `wool.metrics.serve(port)`, or
`prometheus_client.REGISTRY.register(wool.metrics.REGISTRY)` to add them to what the
application already serves. Collection is off until then (`WORKER` and `CALLER` are None): a
call costs one global test per hook, not a labelled update.

Labels are bounded by code, never by traffic: `routine` is a routine's qualified name,
`outcome` one of `OUTCOMES`, `worker` a worker's incarnation id (how many workers a caller
has known). No call id is ever a label. Gauges (calls running and queued, open connections)
are read from the worker's own bookkeeping when scraped, at no cost per call.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Callable, Iterator
from typing import Any

from . import protocol as p
from ._metrics_server import MetricsServer

# Outcomes of a call: it returned (or a generator finished), raised, was cancelled, or (on the
# caller) its worker was lost.
OUTCOMES = ("ok", "error", "cancelled", "lost")
_CANCELLED = ("asyncio.exceptions.CancelledError", "CancelledError")
# Call durations: from a millisecond to minutes.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

_client: Any = None  # prometheus_client, once metrics are first used
_registry: Any = None


def available() -> bool:
    return _client is not None or importlib.util.find_spec("prometheus_client") is not None


def require() -> Any:
    """prometheus_client, imported at first use: importing it costs 20 to 50 ms, which
    `import wool` (every worker's start) should not pay for metrics nobody asked for. Raises
    `RuntimeError` saying how to install it, if it is missing."""
    global _client
    if _client is None:
        try:
            _client = importlib.import_module("prometheus_client")
        except ImportError:
            raise RuntimeError("wool's metrics need prometheus_client: pip install 'wool[metrics]'") from None
    return _client


def registry() -> Any:
    """wool's own `CollectorRegistry` (created at first use)."""
    global _registry
    if _registry is None:
        _registry = require().CollectorRegistry(auto_describe=True)
    return _registry


def outcome_of(reply: p.Reply | None) -> str:
    """How a call ended, from its last reply on the worker (None: abandoned between steps)."""
    if reply is None:
        return "cancelled"
    if isinstance(reply, p.Raise):
        return "cancelled" if reply.type_name in _CANCELLED else "error"
    return "ok"


class WorkerMetrics:
    """What a worker process counts about the calls it runs."""

    def __init__(self) -> None:
        client, registry_ = require(), registry()
        self.calls = client.Counter(
            "wool_calls", "Calls this worker finished, by routine and outcome", ("routine", "outcome"), registry=registry_
        )
        self.duration = client.Histogram(
            "wool_call_duration_seconds",
            "Time from a call starting to run on this worker to its last reply, by routine",
            ("routine",),
            buckets=BUCKETS,
            registry=registry_,
        )
        self.malformed = client.Counter(
            "wool_malformed_messages", "Messages this worker dropped because they could not be decoded", registry=registry_
        )
        self._gauges: list[Callable[[], Iterator[Any]]] = []
        registry_.register(_Gauges(self._gauges))

    def finished(self, routine: str, started: float, reply: p.Reply | None) -> None:
        self.calls.labels(routine, outcome_of(reply)).inc()
        self.duration.labels(routine).observe(time.perf_counter() - started)

    def watch(self, read: Callable[[], tuple[int, int, int]]) -> None:
        """Report the gauges of a server: `read()` gives (running, queued, open connections)."""

        require()
        family = importlib.import_module("prometheus_client.core").GaugeMetricFamily

        def collect() -> Iterator[Any]:
            running, queued, connections = read()
            yield family("wool_calls_running", "Calls running on this worker (or suspended generators)", running)
            yield family("wool_calls_queued", "Calls waiting for a slot on this worker (max_calls)", queued)
            yield family("wool_connections_open", "Connections open to this worker's socket", connections)

        self._gauges.append(collect)


class _Gauges:
    def __init__(self, sources: list[Callable[[], Iterator[Any]]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Any]:
        for source in self._sources[-1:]:  # one server per worker process
            yield from source()


class CallerMetrics:
    """What a process counts about the calls it makes."""

    def __init__(self) -> None:
        client, registry_ = require(), registry()
        self.dispatch = client.Histogram(
            "wool_dispatch_duration_seconds",
            "Time from a routine call to its result (a generator: to its first item), as the caller sees it",
            ("routine",),
            buckets=BUCKETS,
            registry=registry_,
        )
        self.lost = client.Counter(
            "wool_worker_lost_calls",
            "Calls that failed with WorkerLost, by the worker that was lost",
            ("worker",),
            registry=registry_,
        )

    def dispatched(self, routine: str, started: float) -> None:
        self.dispatch.labels(routine).observe(time.perf_counter() - started)

    def worker_lost(self, worker_id: str) -> None:
        self.lost.labels(worker_id).inc()


def render() -> bytes:
    """`registry()` in Prometheus's text format."""
    rendered: bytes = require().generate_latest(registry())
    return rendered


def start_http(port: int, address: str, token: str) -> MetricsServer:
    """Serve `registry()` at http://ADDRESS:PORT/metrics to requests bearing `token`, from a
    thread of its own (see `_metrics_server`). Raises `OSError` naming the port."""
    require()
    return MetricsServer(port, address, token, render)


WORKER: WorkerMetrics | None = None
CALLER: CallerMetrics | None = None


def enable_worker() -> WorkerMetrics:
    global WORKER
    if WORKER is None:
        WORKER = WorkerMetrics()
    return WORKER


def enable_caller() -> CallerMetrics:
    global CALLER
    if CALLER is None:
        CALLER = CallerMetrics()
    return CALLER
