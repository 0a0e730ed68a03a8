"""What OpenTelemetry tracing costs a call: sequential `await add(x, 1)` with tracing off
(no tracer provider: the path every untraced call takes) and on (an SDK provider on the
caller and on the workers, exporting to a batch processor that drops the spans), in
alternating blocks of the same run. Each side has its own pool of workers, because a worker
that received a traced call passes traces on from then on."""

from __future__ import annotations

import asyncio
import contextvars
import os
import statistics
import time
from typing import Any

import wool
from wool import _tracing
from wool.worker._setup import SETUP_ENV

from .. import routines
from ..config import Config
from ..results import Metric, Step, WorkloadResult, alternate, percentile, repeat
from .calls import LATENCY_BLOCK

try:
    from .. import tracing_setup
except ImportError:  # no opentelemetry-sdk: the workload is skipped
    tracing_setup = None  # type: ignore[assignment]


async def tracing(cfg: Config) -> WorkloadResult:
    title = "sequential await add(x, 1), traced (SDK on caller and workers) vs untraced"
    if tracing_setup is None:
        return WorkloadResult("tracing", title, skipped="opentelemetry-sdk is not installed")
    tracer = tracing_setup.provider().get_tracer("wool")
    n, blocks = cfg.latency_calls, max(1, cfg.latency_calls // LATENCY_BLOCK)
    async with wool.WorkerPool(size=cfg.workers):
        untraced = contextvars.copy_context()
        os.environ[SETUP_ENV] = "benchmarks.tracing_setup:configure"
        try:
            traced_pool = wool.WorkerPool(size=cfg.workers)
            await traced_pool.__aenter__()
        finally:
            del os.environ[SETUP_ENV]
        try:
            traced = contextvars.copy_context()
            contexts = {"wool": (traced, tracer), "untraced": (untraced, None)}

            async def measure() -> dict[str, dict[str, float]]:
                samples: dict[str, list[float]] = {side: [] for side in contexts}

                def step(side: str) -> Step:
                    context, side_tracer = contexts[side]

                    async def calls(block: int) -> None:
                        out = samples[side]
                        for i in range(block * LATENCY_BLOCK, (block + 1) * LATENCY_BLOCK):
                            t = time.perf_counter()
                            await routines.add(i, 1)
                            out.append((time.perf_counter() - t) * 1e6)

                    async def run(block: int) -> None:
                        # The caller's tracing is process-wide: switched per block (private).
                        _tracing._tracer = side_tracer
                        try:
                            await context.run(_task, calls(block))
                        finally:
                            _tracing._tracer = None

                    return run

                await alternate(blocks, {side: step(side) for side in contexts})
                return {s: {"median_us": statistics.median(v), "p99_us": percentile(sorted(v), 99)} for s, v in samples.items()}

            for side in contexts:
                await step_warm(contexts[side])
            result = await repeat(cfg.latency_reps, measure)
        finally:
            await traced_pool.__aexit__(None, None, None)
    return WorkloadResult(
        "tracing",
        title + f": median and p99 of {blocks * LATENCY_BLOCK:,} calls per repetition",
        metrics=[Metric("median_us", "µs", False), Metric("p99_us", "µs", False)],
        params={"calls": n, "reps": cfg.latency_reps},
        samples=result,
        notes=[
            f"wool: traced; untraced: no tracer provider (opentelemetry-api importable); sides alternate every {LATENCY_BLOCK} calls",
            "each side has its own pool of workers",
        ],
    )


def _task(coro: Any) -> Any:
    return asyncio.ensure_future(coro)


async def step_warm(side: tuple[contextvars.Context, Any]) -> None:
    context, side_tracer = side

    async def warm() -> None:
        for i in range(50):
            await routines.add(i, 1)

    _tracing._tracer = side_tracer
    try:
        await context.run(_task, warm())
    finally:
        _tracing._tracer = None
