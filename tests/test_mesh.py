"""The mesh: routines running on workers dispatch nested routines to their peers."""

from __future__ import annotations

import asyncio

import pytest
import routines

import wool

pytestmark = pytest.mark.multiprocess


async def test_recursive_fan_out_does_not_deadlock() -> None:
    async with wool.WorkerPool(size=2):
        assert await routines.fib(12) == 144


async def test_nested_calls_reach_every_peer() -> None:
    async with wool.WorkerPool(size=2) as pool:
        expected = {w.pid for w in pool.workers}
        seen: set[int] = set()
        # A worker learns of its peers through discovery (polled), so the first nested calls
        # may all stay on the worker itself: keep fanning out until both peers answered.
        async with asyncio.timeout(10):
            while seen != expected:
                seen.update(await routines.pids_of_nested(8))
                assert seen <= expected


async def test_nested_fan_out_on_a_single_worker_calls_itself() -> None:
    async with wool.WorkerPool(size=1) as pool:
        assert await routines.fib(8) == 21
        assert set(await routines.pids_of_nested(3)) == {pool.workers[0].pid}
