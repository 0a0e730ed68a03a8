"""Placement by tags: workers started with `python -m wool.worker --tag`, routines that require
tags, `wool.options(tags=...)` blocks honoured by nested calls, and `NoWorkersAvailable`
naming the tags nobody has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import tree
from helpers import CliWorker

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

NAME = "placement"


@asynccontextmanager
async def worker(*tags: str) -> AsyncIterator[CliWorker]:
    """A hand-started worker with `tags`, stopped gracefully (it withdraws) at the end."""
    args = [arg for tag in tags for arg in ("--tag", tag)]
    async with CliWorker("--discovery", f"local:{NAME}", *args) as started:
        yield started
        started.signal()
        assert await started.wait() == 0


@asynccontextmanager
async def tagged_workers() -> AsyncIterator[dict[str, int]]:
    """Three hand-started workers: untagged, `gpu`, and `gpu` + `big`; their pids by name,
    with a pool whose rotation holds all three."""
    async with AsyncExitStack() as stack:
        plain = await stack.enter_async_context(worker())
        gpu = await stack.enter_async_context(worker("gpu"))
        big = await stack.enter_async_context(worker("gpu", "big"))
        # A call with tags none of them has waits this long for a worker with them to appear.
        pool = await stack.enter_async_context(wool.WorkerPool(discovery=wool.LocalDiscovery(NAME), connect_timeout=0.2))
        await pool.wait_for_workers(lambda workers: len(workers) == 3, timeout=20)
        assert {frozenset(w.tags) for w in pool.workers} == {frozenset(), frozenset({"gpu"}), frozenset({"gpu", "big"})}
        yield {"plain": plain.pid, "gpu": gpu.pid, "big": big.pid}


async def test_routines_requiring_tags_run_only_on_workers_that_have_them() -> None:
    async with tagged_workers() as pids:
        assert {await tree.on_gpu() for _ in range(12)} == {pids["gpu"], pids["big"]}
        assert {await tree.on_big_gpu() for _ in range(6)} == {pids["big"]}
        assert {await tree.plain_pid() for _ in range(12)} == set(pids.values())  # no tags: anyone
        assert {pid async for pid in tree.gpu_stream(5)} <= {pids["gpu"], pids["big"]}


async def test_an_options_block_places_calls_and_their_nested_calls() -> None:
    async with tagged_workers() as pids:
        with wool.options(tags="big"):
            assert {await tree.plain_pid() for _ in range(6)} == {pids["big"]}
            # Honoured on the nested calls of the routine, made on the worker.
            assert set(await tree.fan_out_pids(8)) == {pids["big"]}
            # A routine's own tags add to the block's.
            assert {await tree.on_gpu() for _ in range(4)} == {pids["big"]}
            with wool.options(tags=()):  # an inner block replaces the outer one
                assert {await tree.plain_pid() for _ in range(12)} == set(pids.values())
        # Outside the block, nested calls go anywhere again (each worker's own mesh picks,
        # and may not have connected to every peer yet: ask until one lands elsewhere).
        for _ in range(100):
            if set(await tree.fan_out_pids(6)) - {pids["big"]}:
                break
        else:
            raise AssertionError("nested calls outside the block never left the big worker")


async def test_no_worker_with_the_tags_raises_after_the_connect_timeout_naming_them() -> None:
    @wool.routine(tags={"tpu", "gpu"})
    async def needs_tpu() -> None:
        raise AssertionError("never runs")

    async with tagged_workers():
        with pytest.raises(
            wool.NoWorkersAvailable, match=r"needs_tpu was not called: no live worker has the tags gpu, tpu"
        ) as info:
            await needs_tpu()
        assert "'big', 'gpu'" in str(info.value) and "no tags" in str(info.value)  # what the live workers have
        with wool.options(tags="tpu"), pytest.raises(wool.NoWorkersAvailable, match="tags tpu"):
            await tree.plain_pid()
        assert await tree.on_gpu() > 0  # the others still work


async def test_spawned_pools_publish_their_tags() -> None:
    async with wool.WorkerPool("gpu", size=1):
        assert await tree.on_gpu() > 0
    async with wool.WorkerPool(size=1):
        with pytest.raises(wool.NoWorkersAvailable, match="tags gpu"):
            await tree.on_gpu()


async def test_static_discovery_learns_tags_from_the_workers() -> None:
    async with worker("gpu") as gpu, worker() as plain:
        static = wool.StaticDiscovery([gpu.endpoint, plain.endpoint])
        async with wool.WorkerPool(discovery=static) as pool:
            await pool.wait_for_workers(lambda workers: len(workers) == 2, timeout=20)
            assert {await tree.on_gpu() for _ in range(6)} == {gpu.pid}


class LastCandidate:
    """A user's load balancer: the last candidate, recording what it was offered."""

    def __init__(self) -> None:
        self.offered: list[set[frozenset[str]]] = []

    def choose(self, candidates: Sequence[Any]) -> Any:
        self.offered.append({frozenset(c.worker.tags) for c in candidates})
        return candidates[-1]


async def test_a_custom_load_balancer_chooses_among_the_workers_with_the_tags() -> None:
    balancer = LastCandidate()
    async with worker("gpu") as gpu, worker():
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME), loadbalancer=balancer) as pool:
            await pool.wait_for_workers(lambda workers: len(workers) == 2, timeout=20)
            assert await tree.on_gpu() == gpu.pid
            assert balancer.offered[-1] == {frozenset({"gpu"})}
            await tree.plain_pid()
            assert balancer.offered[-1] == {frozenset({"gpu"}), frozenset()}


def test_bad_routine_tags_are_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match="routine tags must be non-empty strings"):
        wool.routine(tags=[""])
    with pytest.raises(TypeError, match="routine tags must be a string or an iterable"):
        wool.routine(tags=3)  # type: ignore[call-overload]


async def test_tags_do_not_wait_for_workers_that_lack_them() -> None:
    """A pool whose only worker lacks the tag fails the call at once, while an untagged
    call on the same pool succeeds."""
    async with wool.WorkerPool(size=1):
        results = await asyncio.gather(tree.on_gpu(), tree.plain_pid(), return_exceptions=True)
        assert isinstance(results[0], wool.NoWorkersAvailable) and isinstance(results[1], int)
