"""What a blocking call from synchronous code costs over an awaited one: `pool.run(add(1, 2))`
from the main thread against `await add(1, 2)` on the pool's own loop, same pool, same
workers, in alternating rounds of one run. Prints each side's median and 90th percentile per
call, the difference and ratio of the medians, and the hand-off alone (`pool.run` of a
coroutine that returns at once): two thread wake-ups, whose cost is the machine's scheduling
latency.

    python benchmarks/blocking_call.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import wool  # noqa: E402
from benchmarks import routines  # noqa: E402


async def awaited(calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        await routines.add(1, 2)
        times.append(time.perf_counter() - t)
    return times


async def nothing() -> None:
    pass


def handoff(pool: wool.WorkerPool, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        pool.run(nothing())
        times.append(time.perf_counter() - t)
    return times


def blocking(pool: wool.WorkerPool, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        pool.run(routines.add(1, 2))
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    sides: dict[str, list[float]] = {"blocking": [], "await": [], "hand-off": []}
    with wool.WorkerPool(size=1) as pool:
        pool.run(awaited(200))  # warm up: connection, pickled routine cached on the worker
        blocking(pool, 200)
        for _ in range(args.rounds):
            sides["blocking"] += blocking(pool, args.calls)
            sides["await"] += pool.run(awaited(args.calls))
            sides["hand-off"] += handoff(pool, args.calls)
    medians = {}
    for name, times in sides.items():
        us = sorted(t * 1e6 for t in times)
        medians[name] = statistics.median(us)
        print(f"{name:>8}: median {medians[name]:.1f} us, p90 {us[int(len(us) * 0.9)]:.1f} us over {len(us)} calls")
    extra = medians["blocking"] - medians["await"]
    print(f"blocking - await: {extra:+.1f} us per call at the median ({medians['blocking'] / medians['await']:.2f}x)")


if __name__ == "__main__":
    main()
