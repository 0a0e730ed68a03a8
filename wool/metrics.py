"""`wool.metrics`: expose a process's wool metrics to Prometheus (`pip install 'wool[metrics]'`).

Workers serve theirs themselves (`python -m wool.worker --metrics-port PORT`,
`WorkerPool(metrics_port=...)`). A caller process counts what its own calls did once it asks:

    wool.metrics.serve(9100)              # http://127.0.0.1:9100/metrics, wool's metrics only

Every endpoint wool serves answers only requests bearing this user's token
(`Authorization: Bearer TOKEN`; `token()`, kept in the file `token_path()`).

or, to add them to what the application already exposes from prometheus_client's default
registry:

    wool.metrics.enable()
    prometheus_client.REGISTRY.register(wool.metrics.REGISTRY)

`REGISTRY` is wool's own `prometheus_client.CollectorRegistry` (None without prometheus_client).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import _metrics
from .worker import metrics_token
from .worker import token_path as _token_path

REGISTRY: Any = _metrics.registry() if _metrics.available() else None

_served: list[Any] = []


def enable() -> None:
    """Count this process's calls (`wool_dispatch_duration_seconds`,
    `wool_worker_lost_calls_total`) in `REGISTRY`. Raises `RuntimeError` without
    prometheus_client."""
    _metrics.enable_caller()


def token() -> str:
    """This user's metrics token, which every metrics endpoint of wool requires as
    `Authorization: Bearer TOKEN` (created on first use). Raises `DiscoveryError` if the
    runtime directory or the token file is not private to this user."""
    return metrics_token()


def token_path() -> Path:
    """The file holding `token()`, for Prometheus's `authorization: credentials_file`."""
    return _token_path()


def serve(port: int, address: str = "127.0.0.1") -> int:
    """`enable`, and serve `REGISTRY` at http://ADDRESS:PORT/metrics from a thread of its
    own until `stop()`, to requests bearing `token()`. Port 0 picks a free one; returns the
    port bound. Raises `RuntimeError` without prometheus_client, `OSError` naming the port
    if it cannot be bound."""
    enable()
    server = _metrics.start_http(port, address, metrics_token())
    _served.append(server)
    return server.port


def stop() -> None:
    """Stop every endpoint `serve` started (counting goes on)."""
    while _served:
        _served.pop().close()
