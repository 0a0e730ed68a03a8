"""A worker that stops answering is reported within the liveness bound, even when nothing is
said on the socket: every call in flight on it fails with `WorkerLost`, new calls go to live
workers, and it is used again once it answers (still listed by discovery)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import routines
from helpers import Observer

import wool
from wool._transport import DEFAULT_LIVENESS

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]

# Allowance on top of the bound, for scheduling on a loaded 2-core machine.
MARGIN = 2.0


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def pids(calls: int) -> set[int]:
    return {await routines.pid() for _ in range(calls)}


@pytest.mark.parametrize("liveness", [None, 1.0], ids=["default", "configured"])
async def test_frozen_worker_fails_its_calls_within_the_liveness_bound(liveness: float | None) -> None:
    bound = liveness or DEFAULT_LIVENESS
    options = {} if liveness is None else {"liveness": liveness}
    async with Observer() as observer, wool.WorkerPool(size=2, **options) as pool:  # type: ignore[arg-type]
        call = asyncio.create_task(routines.block(observer.address, "x"))
        victim = int((await observer.wait_matching(r"running x \d+")).rsplit(" ", 1)[1])
        streams = [routines.pid_stream() for _ in range(2)]  # round robin: one on each worker
        firsts = [await anext(s) for s in streams]
        assert victim in firsts
        suspended = streams[firsts.index(victim)]
        (survivor,) = {w.pid for w in pool.processes} - {victim}
        with frozen(victim):
            with pytest.raises(wool.WorkerLost, match=str(victim)):
                await asyncio.wait_for(call, bound + MARGIN)
            with pytest.raises(wool.WorkerLost):  # a generator between steps, on the same worker
                await asyncio.wait_for(anext(suspended), MARGIN)
            assert victim not in {w.pid for w in pool.workers}
            assert await pids(4) == {survivor}
        # Resumed and still listed: back in rotation (tried again after one liveness period).
        await pool.wait_for_workers(lambda ws: len(ws) == 2, timeout=bound + 10)
        assert await pids(4) == {victim, survivor}
        for s in streams:
            await s.aclose()


async def test_generator_step_running_on_a_frozen_worker_fails() -> None:
    async with Observer() as observer, wool.WorkerPool(size=1, liveness=1.0) as pool:
        gen = routines.gen_wait_at(observer.address, "g")
        assert await anext(gen) == 1
        step = asyncio.create_task(anext(gen))
        await observer.wait_for("at g")
        with frozen(pool.processes[0].pid):
            with pytest.raises(wool.WorkerLost):
                await asyncio.wait_for(step, 1.0 + MARGIN)
        await gen.aclose()


def test_liveness_is_validated() -> None:
    with pytest.raises(ValueError, match="liveness must be between"):
        wool.WorkerPool(size=1, liveness=0)
    with pytest.raises(TypeError, match="liveness must be a number"):
        wool.WorkerPool(size=1, liveness="5")  # type: ignore[arg-type]
