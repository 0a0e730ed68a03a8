"""Prometheus metrics: a worker's `/metrics` endpoint scraped over loopback HTTP after known
calls, and the counts parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest
import zmq
import zmq.asyncio
from prometheus_client.parser import text_string_to_metric_families

import wool
import wool.metrics
from tests import routines
from tests.helpers import REPO, CliWorker, Observer
from wool import protocol as p
from wool.worker import WorkerConfig
from wool.worker._metrics_http import TAG_PREFIX

pytestmark = pytest.mark.multiprocess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def get(address: str, token: str | None) -> tuple[str, str]:
    """GET http://ADDRESS/metrics, with `token` as bearer token: (response head, body)."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    authorization = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n".encode())
        await writer.drain()
        response = (await asyncio.wait_for(reader.read(), 10)).decode()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition("\r\n\r\n")
    return head, body


async def scrape(address: str) -> Samples:
    """GET http://ADDRESS/metrics with this user's token, parsed: {(sample name, sorted
    labels): value}."""
    head, body = await get(address, wool.metrics.token())
    assert head.startswith("HTTP/1.") and " 200 " in head.splitlines()[0], head
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def metrics_address(worker: wool.WorkerInfo) -> str:
    (tag,) = [t for t in worker.tags if t.startswith(TAG_PREFIX)]
    return tag[len(TAG_PREFIX) :]


async def test_a_worker_counts_the_calls_it_ran() -> None:
    namespace = wool.LocalDiscovery("metrics-counts")
    async with Observer() as observer, wool.WorkerPool(size=1, discovery=namespace, metrics_port=0, max_calls=1) as pool:
        (worker,) = pool.workers
        address = metrics_address(worker)
        assert address.startswith("127.0.0.1:")
        assert [await routines.add(i, 1) for i in range(3)] == [1, 2, 3]
        for _ in range(2):
            with pytest.raises(routines.Oops):
                await routines.fail("no")
        assert [i async for i in routines.countdown(3)] == [3, 2, 1]
        # One call holds the worker's only slot; a second caller's call waits for it (a caller
        # keeps no more calls open on a worker than its max_calls: it takes another caller).
        held = asyncio.create_task(routines.wait_at(observer.address, "g"))
        await observer.wait_for("at g")
        async with wool.WorkerPool(discovery=namespace):
            queued = asyncio.create_task(routines.block(observer.address, "queued"))
            async with asyncio.timeout(20):
                while (now := await scrape(address)).get(("wool_calls_queued", ())) != 1:
                    await asyncio.sleep(0.05)  # polls what the worker reports; bounded
            assert now[("wool_calls_running", ())] == 1
            assert now[("wool_connections_open", ())] >= 2
            observer.open("g")
            assert await held == "g"
            await observer.wait_matching(r"running queued \d+")
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            await observer.wait_for("cancelled queued")
        await send_garbage(worker.endpoint)
        after = await scrape(address)
    assert after[("wool_calls_total", (("outcome", "ok"), ("routine", "add")))] == 3
    assert after[("wool_calls_total", (("outcome", "error"), ("routine", "fail")))] == 2
    assert after[("wool_calls_total", (("outcome", "ok"), ("routine", "countdown")))] == 1
    assert after[("wool_calls_total", (("outcome", "ok"), ("routine", "wait_at")))] == 1
    assert after[("wool_calls_total", (("outcome", "cancelled"), ("routine", "block")))] == 1
    assert after[("wool_call_duration_seconds_count", (("routine", "add"),))] == 3
    assert after[("wool_call_duration_seconds_bucket", (("le", "+Inf"), ("routine", "add")))] == 3
    assert after[("wool_malformed_messages_total", ())] == 1
    assert (after[("wool_calls_running", ())], after[("wool_calls_queued", ())]) == (0, 0)


async def send_garbage(endpoint: str) -> None:
    """A malformed message, then a ping: once the pong is back, the worker has seen both."""
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(endpoint)
        await sock.send_multipart([b"\xc1 not msgpack"])
        await sock.send_multipart(p.encode(p.Ping(5)))
        reply = p.decode(await asyncio.wait_for(sock.recv_multipart(), 10))
        assert isinstance(reply, p.Pong)
    finally:
        sock.close()


async def test_the_worker_cli_serves_metrics_where_it_says(runtime_dir: object) -> None:
    async with CliWorker("--discovery", "local:metrics-cli", "--metrics-port", "0") as worker:
        match = re.search(r"; metrics at http://(\S+)/metrics \(bearer token in (\S+)\)$", worker.line.strip())
        assert match is not None, worker.line
        assert match.group(2) == str(wool.metrics.token_path())
        async with wool.WorkerPool(discovery=wool.LocalDiscovery("metrics-cli")) as pool:
            assert [metrics_address(w) for w in await pool.wait_for_workers(timeout=20)] == [match.group(1)]
            assert await routines.add(1, 2) == 3
            samples = await scrape(match.group(1))
        # A worker found without discovery tells its tags in its pong: the address is there too.
        async with wool.WorkerPool(discovery=wool.StaticDiscovery([worker.endpoint], poll_interval=0.05)) as pool:
            assert [metrics_address(w) for w in await pool.wait_for_workers(timeout=20)] == [match.group(1)]
        worker.signal()
        assert await worker.wait() == 0
        assert samples[("wool_calls_total", (("outcome", "ok"), ("routine", "add")))] == 1


async def test_a_caller_counts_dispatch_latency_and_lost_workers() -> None:
    port = wool.metrics.serve(0)
    try:
        address = f"127.0.0.1:{port}"
        before = await scrape(address)
        async with wool.WorkerPool(size=1) as pool:
            (worker,) = pool.workers
            for i in range(2):
                await routines.add(i, 1)
            with pytest.raises(wool.WorkerLost):
                await routines.exit_now()
        after = await scrape(address)
    finally:
        wool.metrics.stop()

    def delta(name: str, labels: tuple[tuple[str, str], ...]) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    assert delta("wool_dispatch_duration_seconds_count", (("routine", "add"),)) == 2
    assert delta("wool_worker_lost_calls_total", (("worker", worker.id),)) == 1


def test_spawned_workers_get_a_port_each() -> None:
    pool = wool.WorkerPool(size=3, metrics_port=9100)
    ports = [pool._config_of(WorkerConfig(), i).metrics_port for i in range(3)]
    assert ports == [9100, 9101, 9102]
    assert wool.WorkerPool(size=3, metrics_port=0)._config_of(WorkerConfig(), 2).metrics_port == 0
    assert wool.WorkerPool(size=3)._config_of(WorkerConfig(), 2).metrics_port is None


@pytest.mark.parametrize(
    ("kwargs", "error", "problem"),
    [
        ({"metrics_port": -1}, ValueError, "between 0 and 65535"),
        ({"metrics_port": "9100"}, TypeError, "must be an int"),
        ({"metrics_port": 65535, "size": 2}, ValueError, "leaves no port for each of 2 workers"),
    ],
)
def test_bad_metrics_ports_are_named(kwargs: dict[str, object], error: type[Exception], problem: str) -> None:
    with pytest.raises(error, match=problem):
        wool.WorkerPool(**kwargs)  # type: ignore[arg-type]


def test_the_cli_refuses_a_port_out_of_range() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wool.worker", "--discovery", "local:x", "--metrics-port", "70000"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "--metrics-port must be between 0 and 65535" in out.stderr
