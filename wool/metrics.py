"""`wool.metrics`: expose a process's wool metrics to Prometheus (`pip install 'wool[metrics]'`).

Workers serve theirs themselves (`python -m wool.worker --metrics-port PORT`,
`WorkerPool(metrics_port=...)`). A caller process counts what its own calls did once it asks:

    wool.metrics.serve(9100)              # http://127.0.0.1:9100/metrics, wool's metrics only

or, to add them to what the application already exposes from prometheus_client's default
registry:

    wool.metrics.enable()
    prometheus_client.REGISTRY.register(wool.metrics.REGISTRY)

`REGISTRY` is wool's own `prometheus_client.CollectorRegistry` (None without prometheus_client).
"""

from __future__ import annotations

import threading
from typing import Any

from . import _metrics

REGISTRY: Any = _metrics.registry() if _metrics.available() else None

_served: list[tuple[Any, threading.Thread]] = []


def enable() -> None:
    """Count this process's calls (`wool_dispatch_duration_seconds`,
    `wool_worker_lost_calls_total`) in `REGISTRY`. Raises `RuntimeError` without
    prometheus_client."""
    _metrics.enable_caller()


def serve(port: int, address: str = "127.0.0.1") -> int:
    """`enable`, and serve `REGISTRY` at http://ADDRESS:PORT/metrics from a daemon thread
    until `stop()`. Port 0 picks a free one; returns the port bound. Raises `RuntimeError`
    without prometheus_client, `OSError` if the port cannot be bound."""
    enable()
    httpd, thread = _metrics.start_http(port, address)
    _served.append((httpd, thread))
    bound: int = httpd.server_address[1]
    return bound


def stop() -> None:
    """Stop every endpoint `serve` started (counting goes on)."""
    while _served:
        httpd, thread = _served.pop()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
