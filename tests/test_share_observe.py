"""`wool.share` in metrics (`wool_shared_bytes`, `wool_share_fetches_total`) and traces (span
events)."""

from __future__ import annotations

import numpy as np
import pytest
import share_routines as r
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_metrics import metrics_address, scrape

import wool
import wool.metrics

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


async def test_shared_bytes_on_the_owner_and_in_a_workers_cache() -> None:
    wool.metrics.enable()
    owned = ("wool_shared_bytes", {"role": "owned"})
    async with wool.WorkerPool(size=1, metrics_port=0) as pool:
        (worker,) = pool.workers
        with wool.share(np.ones(100_000)) as handle:
            assert wool.metrics.REGISTRY.get_sample_value(*owned) == handle.size
            assert await r.total(handle) == 100_000
            samples = await scrape(metrics_address(worker))
        assert wool.metrics.REGISTRY.get_sample_value(*owned) == 0
    assert samples[("wool_shared_bytes", (("role", "cached"),))] == handle.size
    assert samples[("wool_share_fetches_total", ())] == 0  # same host: mapped, not fetched


def test_sharing_and_releasing_are_span_events() -> None:
    # A provider of the test's own (the global one, once set, stays for the session).
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    try:
        with provider.get_tracer("test").start_as_current_span("report"):
            with wool.share(np.arange(10.0)) as handle:
                pass
        (span,) = [s for s in exporter.get_finished_spans() if s.name == "report"]
        events = {e.name: dict(e.attributes or {}) for e in span.events}
        assert events["wool.share"]["wool.share.bytes"] == handle.size
        assert events["wool.share"]["wool.share.type"] == "ndarray"
        assert "wool.share.release" in events
    finally:
        processor.shutdown()
