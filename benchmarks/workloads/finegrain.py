"""Fine-grained tasks: many 1 ms CPU-bound tasks issued at once on two workers. What the
scheduler and the per-call overhead cost shows as lost efficiency: ideal time (total work
divided by the workers) over wall time, 1.0 being perfect. The caller shares the machine's
two cores with the workers, so some loss is unavoidable.

Where the loss goes is measured in the same repetition, from the CPU time of every thread of
the caller and of the side's worker processes: `utilization` is the share of the cores' time
those processes used, and `bound` = efficiency / utilization the efficiency had no core been
idle for a moment, with the CPU this run spent (the work, plus each side's dispatch on both
ends). A side cannot beat its `bound` by scheduling alone: only by spending less CPU per task.
`caller_us` is the caller's CPU per task. `def` runs the same task as a plain `def` routine:
what handing each call to a worker thread costs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import functions, routines
from ..config import Config
from ..results import Metric, Target, WorkloadResult, interleave
from ..rss import cpu_seconds
from ..sides import Sides


async def finegrain(cfg: Config, sides: Sides) -> WorkloadResult:
    n, ms = cfg.finegrain_tasks, cfg.finegrain_ms
    ideal = n * ms / 1000 / cfg.workers
    cores = os.cpu_count() or 1
    tasks: dict[str, Callable[[], Awaitable[Any]]] = {
        "wool": lambda: routines.spin(ms),
        "def": lambda: routines.spin_plain(ms),
        "loop": lambda: sides.loop_call(functions.spin, ms),
        "ppe": lambda: sides.ppe_call(functions.spin_sync, ms),
    }
    workers: dict[str, Callable[[], list[int]]] = {
        "wool": lambda: sides.wool_pids,
        "def": lambda: sides.wool_pids,
        "loop": lambda: sides.loop_pids,
        "ppe": lambda: sides.ppe_pids,
    }

    def timed(side: str) -> Callable[[], Awaitable[dict[str, float]]]:
        async def measure() -> dict[str, float]:
            task = tasks[side]
            pids = [os.getpid(), *workers[side]()]
            before = [cpu_seconds(pid) for pid in pids]
            t = time.perf_counter()
            await asyncio.gather(*(task() for _ in range(n)))
            wall = time.perf_counter() - t
            spent = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
            efficiency, utilization = ideal / wall, sum(spent) / (cores * wall)
            return {
                "efficiency": efficiency,
                "wall_s": wall,
                "utilization": utilization,
                "bound": efficiency / utilization,
                "caller_us": spent[0] / n * 1e6,
            }

        return measure

    for side in tasks:  # warm: the routine pickled and cached, the pool's processes up
        await timed(side)()
    return WorkloadResult(
        "finegrain",
        f"{n:,} tasks of {ms:g} ms of CPU each, all issued at once, on {cfg.workers} workers: ideal time / wall time",
        metrics=[
            Metric("efficiency", "ideal/wall", True),
            Metric("wall_s", "s", False),
            Metric("utilization", "busy/cores", True),
            Metric("bound", "ideal/wall", True),
            Metric("caller_us", "µs", False),
        ],
        params={"tasks": n, "task_ms": ms, "workers": cfg.workers, "cores": cores, "ideal_s": ideal, "reps": cfg.finegrain_reps},
        samples=await interleave(cfg.finegrain_reps, {side: timed(side) for side in tasks}),
        targets=[Target("efficiency", ">=", 0.92), Target("efficiency", "<=", 1.05, "def")],
        notes=[
            "a task spins on the CPU for its duration (time.sleep would let a worker overlap tasks)",
            "loop: one multiplexed client per server, each server running one call at a time",
            "def: the same task as a plain `def` routine, which each worker runs in a thread (one at a time); "
            "target: wool's efficiency at most 5 % above it",
            "utilization: CPU time of the caller's and the side's workers' threads / (cores x wall); "
            "bound = efficiency / utilization: the efficiency with no core ever idle, at the CPU this run spent",
        ],
    )
