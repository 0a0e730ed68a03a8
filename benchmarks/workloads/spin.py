"""`latency_spin`: wool with `WorkerPool(idle="spin")` against the spinning floor.

Run alone, with a pool of its own: spinning is a property of the caller's event loop, and
must not spill into the other workloads' measurements. Sides alternate every 50 calls, as in
`latency`; skipped on a wool without the `idle` setting.
"""

from __future__ import annotations

import inspect
import statistics
import time

import wool

from .. import routines
from ..config import Config
from ..floor import Floors
from ..results import Metric, Step, Target, WorkloadResult, alternate, percentile, repeat
from .calls import FLOORS, LATENCY_BLOCK, Call, _blocking, _warm


async def latency_spin(cfg: Config) -> WorkloadResult:
    if "idle" not in inspect.signature(wool.WorkerPool).parameters:
        return WorkloadResult("latency_spin", "", skipped="this wool has no WorkerPool(idle=...)")
    n = cfg.latency_calls
    blocks = max(1, n // LATENCY_BLOCK)
    floors = Floors()
    try:
        async with wool.WorkerPool(size=cfg.workers, idle="spin"):
            calls: dict[str, Call] = {
                "wool": lambda i: routines.add(i, 1),
                **{name: _blocking(getattr(floors, name)) for name in FLOORS},
            }

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
                return {
                    side: {"median_us": statistics.median(s), "p99_us": percentile(sorted(s), 99)} for side, s in samples.items()
                }

            for call in calls.values():
                await _warm(call)
            samples = await repeat(cfg.latency_reps, measure)
    finally:
        floors.close()
    return WorkloadResult(
        "latency_spin",
        f"sequential await add(x, 1) with WorkerPool(idle='spin'): median and p99 of {blocks * LATENCY_BLOCK:,} calls "
        "per repetition",
        metrics=[Metric("median_us", "µs", False), Metric("p99_us", "µs", False)],
        params={"calls": n, "reps": cfg.latency_reps, "spin_us": "default"},
        samples=samples,
        targets=[Target("median_us", "<=", 1.1, "spin")],
        notes=[
            "wool: a pool of its own, caller and workers spinning; needs a free core per spinning process and "
            "for libzmq's I/O threads, else spinning processes take turns on the cores",
        ],
    )
