"""Streams: a remote async generator consumed with `async for`, pull-based (one round trip
per item) and with opt-in read-ahead, against the sequential call rate of the baselines and
a raw zmq stream the server pushes unasked."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

import wool

from .. import functions, routines
from ..config import Config
from ..results import Metric, Step, Target, WorkloadResult, alternate, interleave, repeat
from ..sides import Sides

Measure = Callable[[], Awaitable[dict[str, float]]]
STREAM_BLOCK = 1_000  # items per side before the next side's turn


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
    blocks = max(1, n // STREAM_BLOCK)
    n = blocks * STREAM_BLOCK
    calls: dict[str, Callable[[int], Awaitable[int]]] = {
        "loop": lambda i: sides.direct_call(functions.add, i, 0),
        "ppe": lambda i: sides.ppe_call(functions.add_sync, i, 0),
    }

    async def measure() -> dict[str, dict[str, float]]:
        elapsed = dict.fromkeys(("wool", *calls), 0.0)
        totals = dict.fromkeys(elapsed, 0)
        items = aiter(routines.count(n))

        async def wool_step(block: int) -> None:
            # `async for`, taken a block at a time: the last block also takes the round trip
            # that finds the generator exhausted, as `async for` does.
            total, t = 0, time.perf_counter()
            for _ in range(STREAM_BLOCK):
                total += await anext(items)
            if block == blocks - 1:
                async for _ in items:
                    raise AssertionError("the stream yielded more items than asked for")
            elapsed["wool"] += time.perf_counter() - t
            totals["wool"] += total

        def call_step(side: str) -> Step:
            call = calls[side]

            async def run(block: int) -> None:
                total, t = 0, time.perf_counter()
                for i in range(block * STREAM_BLOCK, (block + 1) * STREAM_BLOCK):
                    total += await call(i)
                elapsed[side] += time.perf_counter() - t
                totals[side] += total

            return run

        await alternate(blocks, {"wool": wool_step, **{side: call_step(side) for side in calls}})
        push = await _rate(n, sides.raw.push)()
        expected = n * (n - 1) // 2
        for side, total in totals.items():
            if total != expected:
                raise AssertionError(f"{side}: the stream summed to {total}, not {expected}")
        return {**{side: {"items_per_s": n / t} for side, t in elapsed.items()}, "push": push}

    await _sum(routines.count(100))
    for consume in [*map(_sequential, calls.values()), sides.raw.push]:
        await consume(100)
    return WorkloadResult(
        "stream",
        f"async for over a remote generator of {n:,} small items; baselines: {n:,} sequential calls, a pushed stream",
        metrics=[Metric("items_per_s", "items/s", True)],
        params={"items": n, "reps": cfg.stream_reps},
        samples=await repeat(cfg.stream_reps, measure),
        targets=[Target("items_per_s", ">=", 0.9, "loop")],
        notes=[
            f"wool, loop and ppe alternate every {STREAM_BLOCK:,} items within a repetition; push runs after them",
            "loop and ppe: items/s is their sequential call rate (one round trip per item, as each anext is)",
        ],
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
