"""Memory growth: RSS of the caller and of each worker before and after a long stream and
after many calls. A leak per call or per item shows here as growth; a flat line is the goal.

Each side warms up first (its first calls allocate caches that are not a leak), and the
caller collects garbage before every reading, so that cycles awaiting the collector do not
read as growth.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .. import functions, routines
from ..config import Config
from ..results import Metric, Target, WorkloadResult, interleave
from ..rss import rss_mb
from ..sides import Sides

Stream = Callable[[int], Awaitable[int]]
Call = Callable[[int], Awaitable[Any]]


async def _sum(items: AsyncIterator[int]) -> int:
    total = 0
    async for x in items:
        total += x
    return total


async def memory(cfg: Config, sides: Sides) -> WorkloadResult:
    me = os.getpid()
    detail: dict[str, Any] = {}

    async def calls(call: Call, n: int) -> None:
        for start in range(0, n, cfg.memory_batch):
            await asyncio.gather(*(call(i) for i in range(start, min(start + cfg.memory_batch, n))))

    def snapshot(pids: list[int]) -> dict[str, float]:
        gc.collect()
        return {"caller": rss_mb(me), **{f"worker {pid}": rss_mb(pid) for pid in pids}}

    def measured(
        side: str, stream: Stream | None, call: Call, far: Callable[[], list[int]]
    ) -> Callable[[], Awaitable[dict[str, float | None]]]:
        async def measure() -> dict[str, float | None]:
            pids = far()
            if stream is not None:
                await stream(1_000)
            await calls(call, 2 * cfg.memory_batch)
            steps = {"before": snapshot(pids)}
            if stream is not None:
                await stream(cfg.memory_stream_items)
                steps["after_stream"] = snapshot(pids)
            await calls(call, cfg.memory_calls)
            steps["after_calls"] = snapshot(pids)
            detail[side] = steps
            growth = {who: max(s[who] for s in steps.values()) - rss for who, rss in steps["before"].items()}
            after = steps["after_calls"]
            return {
                "caller_growth_mb": growth.pop("caller"),
                "worker_growth_mb": max(growth.values()),
                "caller_rss_mb": after["caller"],
                "worker_rss_mb": max(v for k, v in after.items() if k != "caller"),
            }

        return measure

    samples = await interleave(
        1,
        {
            "wool": measured("wool", lambda n: _sum(routines.count(n)), lambda i: routines.add(i, 1), lambda: sides.wool_pids),
            "loop": measured(
                "loop",
                sides.raw.push,
                lambda i: sides.loop_call(functions.add, i, 1),
                lambda: [*sides.loop_pids, sides.raw_server.pid],
            ),
            "ppe": measured("ppe", None, lambda i: sides.ppe_call(functions.add_sync, i, 1), lambda: sides.ppe_pids),
        },
    )
    return WorkloadResult(
        "memory",
        f"RSS before and after a {cfg.memory_stream_items:,}-item stream and after {cfg.memory_calls:,} calls "
        f"({cfg.memory_batch:,} in flight at a time)",
        metrics=[
            Metric("caller_growth_mb", "MB", False, ratio=False),
            Metric("worker_growth_mb", "MB", False, ratio=False),
            Metric("caller_rss_mb", "MB", False),
            Metric("worker_rss_mb", "MB", False),
        ],
        params={
            "stream_items": cfg.memory_stream_items,
            "calls": cfg.memory_calls,
            "in_flight": cfg.memory_batch,
        },
        samples=samples,
        targets=[Target("caller_growth_mb", "<", 50), Target("worker_growth_mb", "<", 50)],
        detail={"rss_mb": detail},
        notes=[
            "growth: the highest reading after the stream or the calls, minus the reading before, per process",
            "worker_*: the highest of the side's server processes",
            "loop: its stream is the raw push stream (its servers have no generators); ppe: calls only",
        ],
    )
