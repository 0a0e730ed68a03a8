"""What `wool.share` reports: span events, and two metrics read from its own bookkeeping.

`wool_shared_bytes` (a gauge, by `role`: `owned`, the shared memory this process made and has
not released; `cached`, the values its cache holds) and `wool_share_fetches_total` (values this
process fetched from another host). They join wool's registry (`wool.metrics.REGISTRY`) the
first time this process shares or loads a value while metrics are on; reading them costs
nothing per call.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

from .. import _metrics, _tracing
from ._cache import cache

_registered = False
owned_bytes: list[Callable[[], int]] = []  # how many bytes this process owns (set by `_handle`)


def _owned() -> int:
    return owned_bytes[0]() if owned_bytes else 0


def _collector() -> Any:
    core = importlib.import_module("prometheus_client.core")

    class SharingMetrics:
        def collect(self) -> Iterator[Any]:
            gauge = core.GaugeMetricFamily(
                "wool_shared_bytes", "Bytes of wool.share values this process owns, or holds in its cache", labels=["role"]
            )
            gauge.add_metric(["owned"], _owned())
            gauge.add_metric(["cached"], cache.stats.bytes)
            yield gauge
            yield core.CounterMetricFamily(
                "wool_share_fetches", "wool.share values this process fetched from another host", cache.stats.fetches
            )

    return SharingMetrics()


def register() -> None:
    """Join wool's metrics registry, once, if metrics are on in this process."""
    global _registered
    if _registered or (_metrics.WORKER is None and _metrics.CALLER is None):
        return
    _registered = True
    _metrics.registry().register(_collector())


def event(name: str, key: str, size: int, **more: Any) -> None:
    _tracing.event(name, {"wool.share.key": key[:8], "wool.share.bytes": size, **more})
