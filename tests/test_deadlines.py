"""Deadlines across the tree of calls: a caller's timeout or cancellation reaches every nested
call at every depth, and `wool.options(timeout=...)` gives each call a deadline that travels
down the tree, readable with `wool.remaining()`."""

from __future__ import annotations

import asyncio
import re

import pytest
import tree
from helpers import Observer

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


async def test_a_callers_timeout_cancels_the_deepest_of_three_levels() -> None:
    """caller -> level 2 -> level 1 -> level 0, spread over workers; the caller's
    `asyncio.timeout` expires while level 0 runs: level 0 is cancelled, and its report of it
    is in before the caller's `TimeoutError` (each level waited for the one below to unwind)."""
    async with Observer() as observer, wool.WorkerPool(size=3):
        loop = asyncio.get_running_loop()
        timeouts: list[asyncio.Timeout] = []

        async def call() -> None:
            async with asyncio.timeout(None) as timeout:
                timeouts.append(timeout)
                await tree.level(2, observer.address)

        task = asyncio.create_task(call())
        await observer.wait_matching(r"deepest running in \d+")
        timeouts[0].reschedule(loop.time())
        with pytest.raises(TimeoutError):
            await task
        assert "deepest cancelled" in observer.events


async def test_cancelling_the_caller_cancels_the_whole_tree() -> None:
    async with Observer() as observer, wool.WorkerPool(size=2):
        task = asyncio.create_task(tree.level(3, observer.address))
        await observer.wait_matching(r"deepest running in \d+")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert "deepest cancelled" in observer.events


async def test_options_timeout_cancels_the_tree_below_a_call() -> None:
    async with Observer() as observer, wool.WorkerPool(size=2):
        await tree.plain_pid()  # the pool is warm: the deepest level starts well within 1 s
        with wool.options(timeout=1.0):
            with pytest.raises(TimeoutError):
                await tree.level(2, observer.address)
        deepest = [e for e in observer.events if e.startswith("deepest")]
        assert deepest in ([], [deepest[0], "deepest cancelled"])
        assert deepest, "the deepest level did not start within the deadline"
        assert re.fullmatch(r"deepest running in \d+", deepest[0])


async def test_remaining_travels_down_and_only_shrinks() -> None:
    async with wool.WorkerPool(size=2):
        assert await tree.remaining_down(2) == [None, None, None]
        with wool.options(timeout=60):
            levels = await tree.remaining_down(2)
            assert all(isinstance(v, float) for v in levels), levels
            assert 0 < levels[2] <= levels[1] <= levels[0] <= 60  # type: ignore[operator]
            # A nested call asking for more time gets no more than its parent has.
            outer, inner = await tree.remaining_with(3600)
            assert 0 < inner <= outer <= 60  # type: ignore[operator]
        # Asking for less shortens it.
        with wool.options(timeout=60):
            outer, inner = await tree.remaining_with(30)
            assert inner is not None and outer is not None and inner <= 30 < 60


async def test_remaining_outside_routines_is_none() -> None:
    assert wool.remaining() is None
    with wool.options(timeout=5):
        assert wool.remaining() is None  # a deadline belongs to the calls made here


async def test_a_deadline_already_passed_sends_nothing() -> None:
    async with Observer() as observer, wool.WorkerPool(size=1):
        with wool.options(timeout=0):
            with pytest.raises(TimeoutError, match="deadline had passed"):
                await tree.level(0, observer.address)
        assert observer.events == []


async def test_a_stream_has_one_deadline_for_all_its_steps() -> None:
    """A generator called under a timeout gets one deadline; the step waiting when it passes
    raises `TimeoutError`, and the remote generator is closed (its `finally` ran)."""
    async with Observer() as observer, wool.WorkerPool(size=1):
        await tree.plain_pid()
        items = []
        with wool.options(timeout=1.0):
            with pytest.raises(TimeoutError):
                async for item in tree.one_then_wait(observer.address):
                    items.append(item)
        assert items == [1]
        assert "stream cancelled" in observer.events


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"timeout": -1}, ValueError, "non-negative"),
        ({"timeout": float("inf")}, ValueError, "finite"),
        ({"timeout": float("nan")}, ValueError, "finite"),
        ({"timeout": "1"}, TypeError, "number of seconds"),
        ({"timeout": True}, TypeError, "number of seconds"),
        ({"tags": [""]}, TypeError, "non-empty strings"),
        ({"tags": [1]}, TypeError, "non-empty strings"),
        ({"tags": 5}, TypeError, "iterable of strings"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        with wool.options(**options):  # type: ignore[arg-type]
            pass
