"""Streams: a remote async generator consumed with `async for`, pull-based (one round trip
per item) and with opt-in read-ahead, against the sequential call rate of the baselines and
a raw zmq stream the server pushes unasked."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import wool

from .. import functions, routines
from ..config import Config
from ..results import Metric, Target, WorkloadResult, interleave
from ..sides import Sides

Measure = Callable[[], Awaitable[dict[str, float]]]


def _rate(n: int, consume: Callable[[int], Awaitable[int]]) -> Measure:
    expected = n * (n - 1) // 2

    async def measure() -> dict[str, float]:
        t = time.perf_counter()
        total = await consume(n)
        elapsed = time.perf_counter() - t
        if total != expected:
            raise AssertionError(f"stream summed to {total}, not {expected}")
        return {"items_per_s": n / elapsed}

    return measure


async def _sum(items: AsyncIterator[int]) -> int:
    total = 0
    async for x in items:
        total += x
    return total


def _sequential(call: Callable[[int], Awaitable[int]]) -> Callable[[int], Awaitable[int]]:
    """n calls one after another, as n pull-based steps are: `add(i, 0)` is item i."""

    async def consume(n: int) -> int:
        total = 0
        for i in range(n):
            total += await call(i)
        return total

    return consume


async def stream(cfg: Config, sides: Sides) -> WorkloadResult:
    n = cfg.stream_items
    consumers = {
        "wool": lambda k: _sum(routines.count(k)),
        "loop": _sequential(lambda i: sides.direct_call(functions.add, i, 0)),
        "ppe": _sequential(lambda i: sides.ppe_call(functions.add_sync, i, 0)),
        "push": sides.raw.push,
    }
    for consume in consumers.values():
        await consume(100)
    return WorkloadResult(
        "stream",
        f"async for over a remote generator of {n:,} small items; baselines: {n:,} sequential calls, a pushed stream",
        metrics=[Metric("items_per_s", "items/s", True)],
        params={"items": n, "reps": cfg.stream_reps},
        samples=await interleave(cfg.stream_reps, {side: _rate(n, c) for side, c in consumers.items()}),
        targets=[Target("items_per_s", ">=", 0.9, "loop")],
        notes=["loop and ppe: items/s is their sequential call rate (one round trip per item, as each anext is)"],
    )


async def stream_readahead(cfg: Config, sides: Sides) -> WorkloadResult:
    n, window = cfg.stream_items, cfg.readahead_window
    result = WorkloadResult(
        "stream_readahead",
        f"async for x in wool.readahead(count({n:,}), {window}) against a raw pushed stream",
        metrics=[Metric("items_per_s", "items/s", True)],
        params={"items": n, "window": window, "reps": cfg.stream_reps},
        targets=[Target("items_per_s", ">=", 0.8, "push")],
    )
    readahead = getattr(wool, "readahead", None)
    if readahead is None:
        result.skipped = "wool.readahead is not available in this version of wool"
        return result

    async def wool_consume(k: int) -> int:
        return await _sum(readahead(routines.count(k), window))

    consumers = {"wool": wool_consume, "push": sides.raw.push}
    for consume in consumers.values():
        await consume(100)
    result.samples = await interleave(cfg.stream_reps, {side: _rate(n, c) for side, c in consumers.items()})
    return result
