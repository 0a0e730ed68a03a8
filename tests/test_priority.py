"""`wool.options(priority=N)`: where calls wait, higher priorities go first."""

from __future__ import annotations

import asyncio

import pytest
import recycle_routines as rr
import routines
from helpers import Observer

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]


def test_a_bad_priority_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="priority must be an int, not str"):
        with wool.options(priority="high"):  # type: ignore[arg-type]
            pass
    with pytest.raises(ValueError, match="priority must be within"):
        with wool.options(priority=2**40):
            pass


async def test_an_urgent_call_overtakes_the_queued_bulk_calls() -> None:
    done: list[str] = []

    async def call(label: str, priority: int = 0) -> None:
        with wool.options(priority=priority):
            await rr.pid()
        done.append(label)

    async with Observer() as observer:
        async with wool.WorkerPool(size=1, max_calls=1):
            blocker = asyncio.create_task(routines.gate(observer.address, "go"))
            await observer.wait_for("at go")  # the worker's only slot is taken
            bulk = [asyncio.create_task(call(f"bulk{i}")) for i in range(200)]
            urgent = asyncio.create_task(call("urgent", priority=10))
            made_at = len(done)
            observer.open("go")
            await asyncio.gather(blocker, urgent, *bulk)
    assert len(done) == 201
    assert done.index("urgent") - made_at < 5, done[:10]


async def test_priority_travels_into_nested_calls_unless_overridden() -> None:
    async with wool.WorkerPool(size=2):
        assert await rr.priority_here() == 0
        with wool.options(priority=7):
            assert await rr.nested_priority() == (7, -3)
