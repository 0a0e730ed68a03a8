"""What the `tracing` workload's traced workers run at start (`WOOL_WORKER_SETUP`): an SDK
tracer provider whose batch processor hands spans to an exporter that drops them, so the
workload measures what tracing costs wool, not what a collector costs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class Discard(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider() -> TracerProvider:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Discard()))
    return tracer_provider


def configure() -> None:
    trace.set_tracer_provider(provider())
