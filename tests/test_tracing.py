"""OpenTelemetry tracing: one trace across nested calls on several workers, with the RPC
conventions' attributes and statuses. The caller records into an in-memory exporter; the
workers, configured through `WOOL_WORKER_SETUP`, write their spans to files (`tests.traced`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fanout_routines
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import wool
from tests import traced
from tests.helpers import REPO, Observer
from wool.caller._affinity import key_digest, place
from wool.worker._setup import SETUP_ENV, run_setup

pytestmark = pytest.mark.multiprocess


class _Gated(InMemorySpanExporter):
    """Keeps spans only while a test of this module records: the provider, once set, stays
    for the rest of the test session."""

    recording = False

    def export(self, spans: Any) -> SpanExportResult:
        if self.recording:
            return super().export(spans)
        return SpanExportResult.SUCCESS


_exporter = _Gated()


@pytest.fixture
def caller_spans() -> Iterator[_Gated]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    _exporter.recording = True
    yield _exporter
    _exporter.recording = False
    _exporter.clear()


@pytest.fixture
def span_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Spawned workers inherit these: they trace into files under `tmp_path`."""
    monkeypatch.setenv(SETUP_ENV, "tests.traced:configure")
    monkeypatch.setenv("WOOL_TEST_SPAN_DIR", str(tmp_path))
    return tmp_path


def all_spans(caller: _Gated, span_dir: Path) -> list[dict[str, Any]]:
    spans = [traced.describe(s) for s in caller.get_finished_spans()]
    for path in span_dir.glob("spans-*.jsonl"):
        spans += [json.loads(line) for line in path.read_text().splitlines()]
    return spans


def only(spans: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [s for s in spans if all(s[k] == v for k, v in match.items())]
    assert len(found) == 1, f"{len(found)} spans match {match}: {found}"
    return found[0]


async def test_a_three_level_nested_fan_out_is_one_trace_parent_under_child(caller_spans: _Gated, span_dir: Path) -> None:
    tracer = trace.get_tracer("test")
    async with wool.WorkerPool(size=2) as pool:
        with tracer.start_as_current_span("request") as request:
            result = await traced.root(2)
        workers = {p.pid for p in pool.processes}
    spans = all_spans(caller_spans, span_dir)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    assert {s["trace_id"] for s in spans} == {trace_id}
    assert sorted((s["name"], s["kind"]) for s in spans if s["name"] != "request") == sorted(
        [("root", "CLIENT"), ("root", "SERVER")]
        + [("branch", k) for k in ("CLIENT", "SERVER")] * 2
        + [("leaf", k) for k in ("CLIENT", "SERVER")] * 4
    )
    by_id = {s["span_id"]: s for s in spans}

    def check(node: dict[str, Any], name: str, parent_id: str) -> None:
        # Inside the routine, the current span is the call's SERVER span, child of its CLIENT span.
        server = by_id[node["span_id"]]
        assert (server["name"], server["kind"], server["pid"]) == (name, "SERVER", node["pid"])
        client = by_id[server["parent_id"]]
        assert (client["name"], client["kind"], client["parent_id"]) == (name, "CLIENT", parent_id)
        for span in (client, server):
            assert span["attributes"]["rpc.system"] == "wool"
            assert span["attributes"]["rpc.method"] == name
            assert span["attributes"]["server.address"]
            assert span["status"] == "UNSET"
        for child in node.get("children", ()):
            check(child, "leaf" if name == "branch" else "branch", server["span_id"])

    check(result, "root", f"{request.get_span_context().span_id:016x}")
    # The trace crossed processes: every SERVER span, and the nested CLIENT spans, were
    # recorded by the workers (which of the two ran each call is the load balancer's choice).
    for span in spans:
        in_caller = span["name"] == "request" or (span["name"], span["kind"]) == ("root", "CLIENT")
        assert span["pid"] == os.getpid() if in_caller else span["pid"] in workers


async def test_failures_set_error_type_and_status_on_both_sides(caller_spans: _Gated, span_dir: Path) -> None:
    async with wool.WorkerPool(size=1):
        with pytest.raises(ValueError, match="no luck"):
            await traced.broken("no luck")
    spans = all_spans(caller_spans, span_dir)
    for kind in ("CLIENT", "SERVER"):
        span = only(spans, name="broken", kind=kind)
        assert span["status"] == "ERROR"
        assert span["attributes"]["error.type"] == "ValueError"


async def test_a_cancelled_call_is_an_error_on_both_sides(caller_spans: _Gated, span_dir: Path) -> None:
    async with Observer() as observer, wool.WorkerPool(size=1):
        task = asyncio.create_task(traced.forever(observer.address))
        await observer.wait_for("started")  # its SERVER span has begun
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    spans = all_spans(caller_spans, span_dir)
    for kind in ("CLIENT", "SERVER"):
        span = only(spans, name="forever", kind=kind)
        assert span["status"] == "ERROR"
        assert span["attributes"]["error.type"] == "asyncio.exceptions.CancelledError"


async def test_a_lost_worker_ends_the_client_span_with_worker_lost(caller_spans: _Gated, span_dir: Path) -> None:
    async with wool.WorkerPool(size=1):
        with pytest.raises(wool.WorkerLost):
            await traced.die()
    span = only(all_spans(caller_spans, span_dir), name="die", kind="CLIENT")
    assert span["status"] == "ERROR"
    assert span["attributes"]["error.type"] == "wool.WorkerLost"
    assert span["attributes"]["wool.worker.lost"] is True


async def test_a_generator_is_one_span_per_side_with_an_event_per_step(caller_spans: _Gated, span_dir: Path) -> None:
    async with wool.WorkerPool(size=1):
        items = [item async for item in traced.stream(3)]
    assert [item["n"] for item in items] == [0, 1, 2]
    spans = all_spans(caller_spans, span_dir)
    client = only(spans, name="stream", kind="CLIENT")
    server = only(spans, name="stream", kind="SERVER")
    assert server["parent_id"] == client["span_id"]
    assert [e["attributes"]["rpc.message.type"] for e in client["events"]] == ["SENT"] * 3
    assert [e["attributes"]["rpc.message.type"] for e in server["events"]] == ["RECEIVED"] * 3
    assert [e["attributes"]["rpc.message.id"] for e in server["events"]] == [1, 2, 3]
    # What the generator's body calls nests under the generator's SERVER span.
    leaves = [s for s in spans if s["name"] == "leaf" and s["kind"] == "CLIENT"]
    assert len(leaves) == 3 and {s["parent_id"] for s in leaves} == {server["span_id"]}
    assert {item["trace_id"] for item in items} == {client["trace_id"]}


async def test_workers_without_an_sdk_pass_the_trace_on(caller_spans: _Gated) -> None:
    tracer = trace.get_tracer("test")
    async with wool.WorkerPool(size=2):
        with tracer.start_as_current_span("request") as request:
            result = await traced.branch(0)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    client = only([traced.describe(s) for s in caller_spans.get_finished_spans()], name="branch")
    # No SERVER span is recorded: the routine sees its caller's CLIENT span, and so do its children.
    assert (result["trace_id"], result["span_id"]) == (trace_id, client["span_id"])
    assert {(c["trace_id"], c["span_id"]) for c in result["children"]} == {(trace_id, client["span_id"])}


def test_tracing_is_off_without_a_tracer_provider() -> None:
    code = "import wool._tracing as t; print(t.client_span('x') is None, t._tracer is None)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["True", "True"], out.stderr


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("tests.traced", "must name a function as module:function"),
        ("tests.no_such_module:configure", "cannot import tests.no_such_module"),
        ("tests.traced:no_such_function", "tests.traced has no function no_such_function"),
    ],
)
def test_a_bad_setup_spec_is_named(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        run_setup({SETUP_ENV: spec})


async def test_a_worker_whose_setup_fails_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SETUP_ENV, "tests.traced:no_such_function")
    with pytest.raises(wool.WorkerStartError, match="no function no_such_function"):
        async with wool.WorkerPool(size=1):
            pass


INSTRUMENTED_APP = """
import asyncio, sys
sys.path.insert(0, {repo!r})
from opentelemetry import trace
import wool
from tests import traced

async def main():
    async with wool.WorkerPool(size=2):
        with trace.get_tracer("app").start_as_current_span("request"):
            await traced.root(2)

asyncio.run(main())
"""


@pytest.mark.skipif(
    shutil.which("opentelemetry-instrument") is None, reason="needs opentelemetry-distro (opentelemetry-instrument)"
)
async def test_opentelemetry_instrument_configures_the_workers_a_pool_spawns(tmp_path: Path) -> None:
    """The environment set-up README documents: the SDK configured from OTEL_* variables by
    `opentelemetry-instrument`, in the caller and, through the environment they inherit, in
    its spawned workers (here printing spans to stdout, which the workers share: the SERVER
    spans can only come from them)."""
    script = tmp_path / "app.py"
    script.write_text(INSTRUMENTED_APP.format(repo=str(REPO)))
    env = dict(os.environ, OTEL_TRACES_EXPORTER="console", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    env.pop("WOOL_WORKER_SETUP", None)
    proc = await asyncio.create_subprocess_exec(
        "opentelemetry-instrument", sys.executable, str(script), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0, err.decode()
    decoder, text, at, spans = json.JSONDecoder(), out.decode(), 0, []
    while (start := next((i for i in range(at, len(text)) if not text[i].isspace()), None)) is not None:
        span, at = decoder.raw_decode(text, start)
        spans.append(span)
    assert len({s["context"]["trace_id"] for s in spans}) == 1
    kinds = sorted((s["name"], s["kind"]) for s in spans if s["name"] != "request")
    counts = {(n, k): sum(1 for s in spans if (s["name"], s["kind"]) == (n, k)) for n, k in kinds}
    assert counts == {
        (n, k): times for n, times in (("root", 1), ("branch", 2), ("leaf", 4)) for k in ("SpanKind.CLIENT", "SpanKind.SERVER")
    }


async def test_a_retried_idempotent_call_is_one_client_span(caller_spans: _Gated, span_dir: Path) -> None:
    """Every attempt of an idempotent call carries the one CLIENT span's context: the attempt
    that answered is its SERVER child (the first ran on a worker that died with it)."""
    async with wool.WorkerPool(size=2) as pool:
        a, b = pool.workers
        first = next(k for k in (f"k{i}" for i in range(1000)) if place(key_digest(k), [a.id, b.id]) == a.id)
        with wool.options(affinity=first):  # the first attempt goes to a, which dies
            assert await fanout_routines.die_unless(b.pid) == b.pid
    spans = all_spans(caller_spans, span_dir)
    client = only(spans, name="die_unless", kind="CLIENT")
    server = only(spans, name="die_unless", kind="SERVER")
    assert server["parent_id"] == client["span_id"] and server["pid"] == b.pid
    assert client["status"] == "UNSET" and client["attributes"]["wool.worker.id"] == b.id
