"""Fine-grained tasks: many 1 ms CPU-bound tasks issued at once on two workers. What the
scheduler and the per-call overhead cost shows as lost efficiency: ideal time (total work
divided by the workers) over wall time, 1.0 being perfect. The caller shares the machine's
two cores with the workers, so some loss is unavoidable."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import functions, routines
from ..config import Config
from ..results import Metric, Target, WorkloadResult, interleave
from ..sides import Sides


async def finegrain(cfg: Config, sides: Sides) -> WorkloadResult:
    n, ms = cfg.finegrain_tasks, cfg.finegrain_ms
    ideal = n * ms / 1000 / cfg.workers
    tasks: dict[str, Callable[[], Awaitable[Any]]] = {
        "wool": lambda: routines.spin(ms),
        "ppe": lambda: sides.ppe_call(functions.spin_sync, ms),
    }

    def timed(side: str) -> Callable[[], Awaitable[dict[str, float]]]:
        async def measure() -> dict[str, float]:
            task = tasks[side]
            t = time.perf_counter()
            await asyncio.gather(*(task() for _ in range(n)))
            wall = time.perf_counter() - t
            return {"efficiency": ideal / wall, "wall_s": wall}

        return measure

    for side in tasks:  # warm: the routine pickled and cached, the pool's processes up
        await timed(side)()
    return WorkloadResult(
        "finegrain",
        f"{n:,} tasks of {ms:g} ms of CPU each, all issued at once, on {cfg.workers} workers: ideal time / wall time",
        metrics=[Metric("efficiency", "ideal/wall", True), Metric("wall_s", "s", False)],
        params={"tasks": n, "task_ms": ms, "workers": cfg.workers, "ideal_s": ideal, "reps": cfg.finegrain_reps},
        samples=await interleave(cfg.finegrain_reps, {side: timed(side) for side in tasks}),
        targets=[Target("efficiency", ">=", 0.92)],
        notes=["a task spins on the CPU for its duration (time.sleep would let a worker overlap tasks)"],
    )
