"""Workloads of single calls: sequential latency, concurrent throughput, nested fan-out."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import functions, routines
from ..config import Config
from ..results import Metric, Step, Target, WorkloadResult, alternate, interleave, percentile, repeat
from ..sides import Sides

Call = Callable[[int], Awaitable[Any]]
LATENCY_BLOCK = 50  # sequential calls per side before the next side's turn
FLOORS = ("zmq", "spin", "pipe")  # see benchmarks/floor.py


def _blocking(call: Callable[[int], int]) -> Call:
    """A floor's blocking round trip as a `Call` (it holds the loop: nothing else runs)."""

    async def run(i: int) -> int:
        return call(i)

    return run


async def _warm(call: Call, n: int = 50) -> None:
    for i in range(n):
        if await call(i) != i + 1:
            raise AssertionError("add returned a wrong result")


async def latency(cfg: Config, sides: Sides) -> WorkloadResult:
    n = cfg.latency_calls
    calls: dict[str, Call] = {
        "wool": lambda i: routines.add(i, 1),
        "loop": lambda i: sides.direct_call(functions.add, i, 1),
        "ppe": lambda i: sides.ppe_call(functions.add_sync, i, 1),
        **{name: _blocking(getattr(sides.floors, name)) for name in FLOORS},
    }

    blocks = max(1, n // LATENCY_BLOCK)

    async def measure() -> dict[str, dict[str, float]]:
        samples: dict[str, list[float]] = {side: [] for side in calls}

        def step(side: str) -> Step:
            call, out = calls[side], samples[side]

            async def run(block: int) -> None:
                for i in range(block * LATENCY_BLOCK, (block + 1) * LATENCY_BLOCK):
                    t = time.perf_counter()
                    await call(i)
                    out.append((time.perf_counter() - t) * 1e6)

            return run

        await alternate(blocks, {side: step(side) for side in calls})
        return {side: {"median_us": statistics.median(s), "p99_us": percentile(sorted(s), 99)} for side, s in samples.items()}

    for call in calls.values():
        await _warm(call)
    return WorkloadResult(
        "latency",
        f"sequential await add(x, 1): median and p99 of {blocks * LATENCY_BLOCK:,} calls per repetition",
        metrics=[Metric("median_us", "µs", False), Metric("p99_us", "µs", False)],
        params={"calls": n, "reps": cfg.latency_reps},
        samples=await repeat(cfg.latency_reps, measure),
        targets=[
            Target("median_us", "<=", 1.1, "loop"),
            Target("median_us", "<", 1.0, "ppe"),
            Target("median_us", "<=", 1.0, "zmq"),
            Target("p99_us", "<=", 1.2, "zmq"),
        ],
        notes=[
            f"sides alternate every {LATENCY_BLOCK} calls within a repetition",
            "loop: the direct client (send, then await the reply on the socket: no reader task)",
            "zmq, spin, pipe: the floors (benchmarks/floor.py): a 40-byte echo through a blocking pyzmq DEALER/ROUTER "
            "over ipc, the same with the caller spinning on NOBLOCK receives, and an os.pipe pair; no event loop",
        ],
    )


async def throughput(cfg: Config, sides: Sides) -> WorkloadResult:
    n = cfg.throughput_calls
    calls: dict[str, Call] = {
        "wool": lambda i: routines.add(i, 1),
        "loop": lambda i: sides.loop_call(functions.add, i, 1),
        "ppe": lambda i: sides.ppe_call(functions.add_sync, i, 1),
    }

    def timed(call: Call) -> Callable[[], Awaitable[dict[str, float]]]:
        async def measure() -> dict[str, float]:
            t = time.perf_counter()
            results = await asyncio.gather(*(call(i) for i in range(n)))
            elapsed = time.perf_counter() - t
            if results[-1] != n:
                raise AssertionError("add returned a wrong result")
            return {"calls_per_s": n / elapsed}

        return measure

    for call in calls.values():
        await _warm(call)
    return WorkloadResult(
        "throughput",
        f"{n:,} concurrent add calls (asyncio.gather)",
        metrics=[Metric("calls_per_s", "calls/s", True)],
        params={"calls": n, "reps": cfg.throughput_reps},
        samples=await interleave(cfg.throughput_reps, {side: timed(call) for side, call in calls.items()}),
        targets=[Target("calls_per_s", ">=", 1.5, "loop")],
        notes=["loop: one multiplexed client per server, a reader task awaiting each reply"],
    )


async def fanout(cfg: Config, sides: Sides) -> WorkloadResult:
    width, expected = cfg.fanout_width, sum(i + 1 for i in range(cfg.fanout_width))
    endpoints = [s.endpoint() for s in sides.loop_servers]

    async def loop_fanout(k: int) -> int:
        # Server k fans out to the other one (a serving loop cannot call itself).
        n = len(endpoints)
        total: int = await sides.piped[k % n].call(functions.fanout, width, endpoints[(k + 1) % n])
        return total

    async def ppe_fanout(k: int) -> int:
        # A pool worker cannot submit to its own pool: the caller fans out instead.
        return sum(await asyncio.gather(*(sides.ppe_call(functions.add_sync, i, 1) for i in range(width))))

    calls: dict[str, Call] = {"wool": lambda k: routines.fanout(width), "loop": loop_fanout, "ppe": ppe_fanout}

    def timed(call: Call) -> Callable[[], Awaitable[dict[str, float]]]:
        async def measure() -> dict[str, float]:
            samples = []
            for k in range(cfg.fanout_calls):
                t = time.perf_counter()
                if await call(k) != expected:
                    raise AssertionError("fan-out returned a wrong sum")
                samples.append(time.perf_counter() - t)
            per_call = statistics.median(samples)
            return {"ms_per_fanout": per_call * 1e3, "nested_calls_per_s": width / per_call}

        return measure

    for call in calls.values():
        for k in range(3):
            await call(k)
    return WorkloadResult(
        "fanout",
        f"one call that fans out {width} nested add calls and sums them; median of {cfg.fanout_calls} per repetition",
        metrics=[Metric("ms_per_fanout", "ms", False), Metric("nested_calls_per_s", "calls/s", True)],
        params={"width": width, "fanouts_per_rep": cfg.fanout_calls, "reps": cfg.fanout_reps},
        samples=await interleave(cfg.fanout_reps, {side: timed(call) for side, call in calls.items()}),
        notes=[
            "wool: the routine runs on a worker, whose own mesh spreads the nested calls over both workers",
            "loop: one loop server pipelines the nested calls to the other (a serving loop cannot call itself)",
            "ppe: a pool worker cannot submit to its pool, so the caller fans out (one hop fewer)",
        ],
    )
