"""`wool.share` across hosts (network namespaces): each worker fetches a value once, in parts
no larger than its max message size, from the caller of the call that needs it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import netns
import numpy as np
import pytest
import share_routines as r

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]
LIVENESS = 2.0
PORT = 7001
MiB = 1 << 20


def emit(**message: Any) -> None:
    print(json.dumps(message), flush=True)


# --- the caller, on its own host ------------------------------------------------------------


async def caller_share(limit: str, *endpoints: str) -> None:
    """Share a 3 MiB array; 8 calls by handle over workers on two other hosts, a nested call,
    then what each worker's cache did, and whether a released handle says so over there."""
    a = np.arange(3 * MiB // 8, dtype=np.float64)
    discovery = wool.StaticDiscovery(endpoints)
    async with wool.WorkerPool(discovery=discovery, liveness=LIVENESS, insecure=True, max_message_size=int(limit)) as pool:
        await pool.wait_for_workers(lambda ws: len(ws) >= 2, timeout=20)
        with wool.share(a) as handle:
            sums = await asyncio.gather(*(r.total(handle) for _ in range(8)))
            nested = await r.outer(handle)
            boxed = await r.total_in_box({"array": handle})
            stats = await pool.broadcast(r.cache_stats)
        b = np.ones(MiB // 8)
        with wool.share(b) as other:  # fetched from a worker's thread, as a plain `def` would
            threaded = await r.total_in_thread({"array": other})
        try:
            await r.total(handle)
            released = ""
        except wool.SharedReleased as e:
            released = str(e)
        emit(
            sums=sums,
            expected=float(a.sum()),
            nested=nested,
            boxed=boxed,
            stats=[s for s in stats.values() if isinstance(s, dict)],
            released=released,
            threaded=threaded,
        )


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture
async def network() -> AsyncIterator[netns.Network]:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    net = netns.Network()
    try:
        yield net
    finally:
        net.close()
        await asyncio.sleep(0)  # let the closed pipe transports finish closing


async def test_each_worker_on_another_host_fetches_once_in_parts(network: netns.Network) -> None:
    c, a, b = network.add_host("c"), network.add_host("a"), network.add_host("b")
    limit = str(MiB)  # the 3 MiB value must travel in parts
    endpoints = [f"tcp://{a.address}:{PORT}", f"tcp://{b.address}:{PORT}"]
    spec = "static:" + ",".join(endpoints)
    workers = [
        await host.worker("--discovery", spec, "--bind", endpoint, "--insecure", "--max-message-size", limit)
        for host, endpoint in zip((a, b), endpoints, strict=True)
    ]
    code = "import asyncio, sys, test_share_hosts as t; asyncio.run(t.caller_share(*sys.argv[1:]))"
    process = c.python(code, limit, *endpoints)
    result = await process.message(timeout=60)
    assert await process.wait() == 0
    assert result["sums"] == [result["expected"]] * 8
    assert result["nested"] is True and result["boxed"] == result["expected"]
    stats = {s["pid"]: s for s in result["stats"]}
    assert set(stats) == {w.pid for w in workers}
    for s in stats.values():
        # Fetched from the caller, or from the peer a nested call came from: once per worker,
        # however many calls needed it.
        assert s["fetches"] == 1, stats
        assert s["parts"] == 4, stats  # 3 MiB and a header, in parts of at most the 1 MiB message size limit
    assert "at the end of its `with` block" in result["released"]
    assert result["threaded"] == MiB // 8
