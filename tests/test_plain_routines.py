"""Plain `def` routines: awaited like `async def` ones, run in a thread of their worker, so the
worker keeps serving other calls, answering pings and cancels while one blocks; one at a time
per worker unless `threads` says more; the call's context, deadline and `wool.state()` are
there; nested calls go through `wool.run`; a cancelled call answers at once and the function
finishes in the background."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from collections.abc import Sequence
from typing import TypeVar

import plain_routines as plain
import pytest
import routines
from helpers import Observer

import wool

C = TypeVar("C", bound=wool.Candidate)

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]


def test_a_plain_def_routine_is_a_coroutine_function() -> None:
    assert inspect.iscoroutinefunction(plain.inside)
    assert plain.inside.__name__ == "inside"
    assert inspect.signature(plain.nested_add) == inspect.signature(plain.nested_add.__wrapped__)  # type: ignore[attr-defined]


def test_a_plain_generator_is_refused_with_what_to_do() -> None:
    def numbers():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(TypeError, match=r"numbers is `def` with `yield`\): make it `async def`"):
        wool.routine(numbers)


def test_threads_is_validated() -> None:
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        wool.WorkerPool(size=1, threads=0)
    with pytest.raises(TypeError, match="threads must be an int"):
        wool.WorkerPool(size=1, threads=1.5)  # type: ignore[arg-type]
    cli = subprocess.run(
        [sys.executable, "-m", "wool.worker", "--discovery", "local:x", "--threads", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 2
    assert "--threads must be at least 1, got 0" in cli.stderr


def test_wool_run_outside_a_plain_routine_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"inside a plain `def` routine"):
        wool.run(routines.add(1, 2))


async def test_wool_run_in_a_running_loop_says_to_await() -> None:
    with pytest.raises(RuntimeError, match=r"use `await` here"):
        wool.run(routines.add(1, 2))


async def test_a_blocked_plain_routine_leaves_its_worker_serving() -> None:
    """While a plain routine blocks its thread, 100 async calls to the same worker complete,
    and a 1 s liveness does not take the worker for lost while it blocks for 2 s."""
    async with Observer() as observer, wool.WorkerPool(size=1, liveness=1.0) as pool:
        sleeper = asyncio.create_task(plain.blocking_sleep(observer.address, "go", 2.0))
        await observer.wait_for("running go")
        assert await asyncio.gather(*(routines.add(i, 1) for i in range(100))) == [i + 1 for i in range(100)]
        assert not sleeper.done()  # it waits at its gate until now
        observer.open("go")
        pid, thread = await sleeper
        assert pid == pool.processes[0].pid
        assert thread == "wool-routine"
        assert await routines.add(1, 1) == 2


async def test_context_deadline_and_state_inside_a_plain_routine() -> None:
    async with wool.WorkerPool(size=1, lifespan=plain.answer):
        token = plain.REQUEST.set("r-1")
        try:
            with wool.options(timeout=30):
                seen = await plain.inside()
            assert seen["request"] == "r-1"
            assert 0 < seen["remaining"] <= 30
            assert seen["state"] == 42
            assert plain.REQUEST.get() == "changed on the worker"  # brought back, as from async def
            seen = await plain.inside()
            assert seen["remaining"] is None
        finally:
            plain.REQUEST.reset(token)


async def test_nested_calls_through_wool_run() -> None:
    async with wool.WorkerPool(size=1):
        assert await plain.nested_add(4) == 50
        # Each level blocks the only thread in wool.run while the next needs it: it is lent.
        assert await plain.chain(5) == 5


async def test_exceptions_come_back_as_themselves() -> None:
    async with wool.WorkerPool(size=1):
        with pytest.raises(ValueError, match="bad input") as info:
            await plain.fails("bad input")
        assert "raise ValueError(message)" in "".join(__import__("traceback").format_exception(info.value))


class Counting:
    """Chooses the only worker, noting how many calls it had in flight."""

    def __init__(self) -> None:
        self.in_flight: list[int] = []

    def choose(self, candidates: Sequence[C]) -> C:
        self.in_flight.append(candidates[0].in_flight)
        return candidates[0]


async def test_one_plain_call_at_a_time_by_default() -> None:
    counting = Counting()
    async with Observer() as observer, wool.WorkerPool(size=1, loadbalancer=counting):
        first = asyncio.create_task(plain.at_gate(observer.address, "a"))
        await observer.wait_for("start a")
        second = asyncio.create_task(plain.at_gate(observer.address, "b"))
        # Requests on one connection arrive in order: once a call chosen with both in flight
        # ran, `second` is on the worker, waiting for the thread.
        while not counting.in_flight or counting.in_flight[-1] < 2:
            assert await routines.add(0, 0) == 0
        observer.open("a")
        await observer.wait_for("start b")
        assert observer.events.index("end a") < observer.events.index("start b")
        observer.open("b")
        assert await asyncio.gather(first, second) == ["a", "b"]


async def test_threads_lets_plain_calls_run_together() -> None:
    async with Observer() as observer, wool.WorkerPool(size=1, threads=2):
        calls = [asyncio.create_task(plain.at_gate(observer.address, name)) for name in ("a", "b")]
        await observer.wait_for("start a")
        await observer.wait_for("start b")  # both run before either may end
        observer.open("a")
        observer.open("b")
        assert await asyncio.gather(*calls) == ["a", "b"]


async def test_cancelling_a_plain_call_answers_at_once_and_the_function_finishes() -> None:
    async with Observer() as observer, wool.WorkerPool(size=1):
        call = asyncio.create_task(plain.nested_after_cancel(observer.address))
        await observer.wait_for("waiting")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call  # while the function still waits at its gate
        observer.open("cancelled")
        # The function went on, and its nested call was refused: its own call is cancelled.
        await observer.wait_for("nested raised CancelledError")
        assert "nested ran" not in observer.events
        assert await routines.add(2, 2) == 4
