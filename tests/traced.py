"""Routines and worker set-up for the tracing tests (importable, so workers import them).

`configure` is what the tests name in `WOOL_WORKER_SETUP`: it gives a worker process an
OpenTelemetry SDK tracer provider whose spans are written, one JSON line each, to a file per
process in the directory `$WOOL_TEST_SPAN_DIR`, which the test reads once the pool is closed
(a simple span processor exports each span as it ends: nothing waits in a buffer)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import wool
from tests.routines import report


class JsonLinesExporter(SpanExporter):
    """Appends each finished span, as one JSON line, to a file."""

    def __init__(self, path: str) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self._path, "a") as f:
            for span in spans:
                f.write(json.dumps(describe(span)) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def describe(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
        "pid": os.getpid(),
    }


def configure() -> None:
    provider = TracerProvider()
    path = os.path.join(os.environ["WOOL_TEST_SPAN_DIR"], f"spans-{os.getpid()}.jsonl")
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
    trace.set_tracer_provider(provider)


def current_ids() -> tuple[str, str]:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@wool.routine
async def leaf(n: int) -> dict[str, Any]:
    trace_id, span_id = current_ids()
    return {"trace_id": trace_id, "span_id": span_id, "pid": os.getpid(), "n": n}


@wool.routine
async def branch(n: int) -> dict[str, Any]:
    trace_id, span_id = current_ids()
    children = await asyncio.gather(leaf(n), leaf(n + 1))
    return {"trace_id": trace_id, "span_id": span_id, "pid": os.getpid(), "children": children}


@wool.routine
async def root(width: int) -> dict[str, Any]:
    trace_id, span_id = current_ids()
    children = await asyncio.gather(*(branch(i) for i in range(width)))
    return {"trace_id": trace_id, "span_id": span_id, "pid": os.getpid(), "children": children}


@wool.routine
async def broken(message: str) -> None:
    raise ValueError(message)


@wool.routine
async def forever(address: str) -> None:
    await report(address, "started")
    await asyncio.Event().wait()


@wool.routine
async def stream(n: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(n):
        yield await leaf(i)


@wool.routine
async def die() -> None:
    os._exit(3)
