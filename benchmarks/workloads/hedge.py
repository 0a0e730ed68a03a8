"""Hedging: the tail of sequential idempotent calls when one worker stalls now and then, with
and without `wool.options(hedge_after=...)`, in the same run."""

from __future__ import annotations

import statistics
import time

import wool

from .. import routines
from ..config import Config
from ..results import Metric, Step, Target, WorkloadResult, alternate, percentile, repeat
from ..sides import Sides

BLOCK = 50  # sequential calls per side before the other side's turn
STALL_S = 0.050
HEDGE_AFTER_S = 0.005


async def hedge(cfg: Config, sides: Sides) -> WorkloadResult:
    workers = sides.pool.workers
    slow = workers[0].pid
    # Calls go round robin, so 1 in `every` calls on the slow worker is 1 in 50 of all calls.
    every = max(1, 50 // len(workers))
    blocks = max(1, cfg.hedge_calls // BLOCK)

    async def measure() -> dict[str, dict[str, float]]:
        samples: dict[str, list[float]] = {"wool": [], "unhedged": []}

        def step(side: str) -> Step:
            out = samples[side]
            hedge_after = HEDGE_AFTER_S if side == "wool" else None

            async def run(block: int) -> None:
                with wool.options(hedge_after=hedge_after):
                    for i in range(block * BLOCK, (block + 1) * BLOCK):
                        t = time.perf_counter()
                        if await routines.sometimes_stalls(i, slow, every, STALL_S) != i + 1:
                            raise AssertionError("sometimes_stalls returned a wrong result")
                        out.append((time.perf_counter() - t) * 1e6)

            return run

        await alternate(blocks, {side: step(side) for side in samples})
        return {
            side: {"median_us": statistics.median(s), "p99_us": percentile(sorted(s), 99), "max_us": max(s)}
            for side, s in samples.items()
        }

    return WorkloadResult(
        "hedge",
        f"sequential idempotent calls, 1 in 50 stalling {STALL_S * 1e3:g} ms on one of {len(workers)} workers: "
        f"hedge_after={HEDGE_AFTER_S * 1e3:g} ms against no hedging ({blocks * BLOCK:,} calls per side and repetition)",
        metrics=[Metric("p99_us", "µs", False), Metric("median_us", "µs", False), Metric("max_us", "µs", False)],
        params={
            "calls": blocks * BLOCK,
            "reps": cfg.hedge_reps,
            "stall_ms": STALL_S * 1e3,
            "hedge_after_ms": HEDGE_AFTER_S * 1e3,
        },
        samples=await repeat(cfg.hedge_reps, measure),
        targets=[Target("p99_us", "<", 0.5, "unhedged")],
        notes=[
            "wool: with wool.options(hedge_after=0.005); unhedged: the same calls without it",
            f"the stalling worker stalls every {every}th call it runs; sides alternate every {BLOCK} calls",
        ],
    )
