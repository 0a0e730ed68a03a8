"""`contextlib.asynccontextmanager` over generator routines behaves as over local generators.

`contextlib` tells an exception that passed through the generator from one the generator
raised by identity (`exc is value`, `exc.__cause__ is value`): an exception thrown in with
`athrow` must come back as the very object thrown, or linked as itself. These are the cases
of CPython's own tests of `asynccontextmanager` (Lib/test/test_contextlib_async.py), run
against real workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import corner_routines as r
import pytest

import wool

pytestmark = pytest.mark.multiprocess

plain = contextlib.asynccontextmanager(r.plain)
recording = contextlib.asynccontextmanager(r.recording)
suppressing = contextlib.asynccontextmanager(r.suppressing)
wrapping = contextlib.asynccontextmanager(r.wrapping)
chaining = contextlib.asynccontextmanager(r.chaining)
chaining_deeper = contextlib.asynccontextmanager(r.chaining_deeper)
noting = contextlib.asynccontextmanager(r.noting)
yields_after_throw = contextlib.asynccontextmanager(r.yields_after_throw)
never_yields = contextlib.asynccontextmanager(r.never_yields)
yields_twice = contextlib.asynccontextmanager(r.yields_twice)
replacing = contextlib.asynccontextmanager(r.replacing)
keywords = contextlib.asynccontextmanager(r.keywords)


class StopIterationSubclass(StopIteration):
    pass


class RuntimeErrorSubclass(RuntimeError):
    pass


@pytest.fixture
async def pool() -> AsyncIterator[wool.WorkerPool]:
    async with wool.WorkerPool(size=1) as pool:
        yield pool


async def test_the_block_runs_between_enter_and_exit_and_the_remote_finally_runs(pool: object, tmp_path: Path) -> None:
    async with plain() as value:
        assert value == 42
    async with keywords(1, b=2) as value:
        assert value == (1, 2)
    log = tmp_path / "log"
    async with recording(str(log)) as value:
        assert value == 42
        assert log.read_text() == "entered\n"
    assert log.read_text() == "entered\nfinally\n"  # exit waited for the remote finally

    log.unlink()
    error = ZeroDivisionError(999)
    with pytest.raises(ZeroDivisionError) as info:
        async with recording(str(log)):
            raise error
    assert info.value is error
    assert log.read_text() == "entered\nthrown ZeroDivisionError\nfinally\n"


async def test_an_exception_the_generator_lets_through_comes_back_as_itself(pool: object) -> None:
    for error in [ZeroDivisionError(1), RuntimeErrorSubclass(42), KeyError("k"), StopIterationSubclass("spam")]:
        with pytest.raises(type(error)) as info:
            async with plain():
                raise error
        assert info.value is error
        assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize("stop", [StopIteration("spam"), StopAsyncIteration("ham"), StopIterationSubclass("spam")], ids=repr)
async def test_stop_iteration_raised_in_the_block_comes_out_as_itself(pool: object, stop: Exception) -> None:
    """The remote generator turns it into a RuntimeError caused by it (PEP 479); `contextlib`
    unwraps that only when the cause is the very object the block raised."""
    with pytest.raises(type(stop)) as info:
        async with plain():
            raise stop
    assert info.value is stop
    # Not suppressed either, when the generator wraps it itself.
    with pytest.raises(type(stop)) as info:
        async with wrapping():
            raise stop
    assert info.value is stop


async def test_tracebacks_are_not_doubled(pool: object) -> None:
    """As in CPython's test: the traceback of what the block raised shows the block's line
    once, not the worker's copy of it on top."""
    for error in [ZeroDivisionError(), RuntimeErrorSubclass(42), StopIteration("spam"), StopAsyncIteration("ham")]:
        try:
            async with plain():
                raise error
        except type(error) as e:
            assert e is error
            frames = traceback.extract_tb(e.__traceback__)
        else:
            pytest.fail(f"{error!r} was suppressed")
        assert len(frames) == 1, traceback.format_tb(error.__traceback__)
        assert frames[0].name == "test_tracebacks_are_not_doubled" and frames[0].line == "raise error"


async def test_exit_returns_false_for_an_exception_it_does_not_suppress(pool: object) -> None:
    """Called directly, `__aexit__` returns False (it must not raise what it was given)."""
    cm = plain()
    await cm.__aenter__()
    error = TypeError("foo")
    assert await cm.__aexit__(TypeError, error, None) is False
    cm = wrapping()
    await cm.__aenter__()
    stop = StopIteration("spam")
    assert await cm.__aexit__(StopIteration, stop, None) is False  # unwrapped: its cause is `stop`


async def test_an_exception_the_generator_handles_is_suppressed(pool: object) -> None:
    async with suppressing():
        raise ZeroDivisionError(999)
    cm = suppressing()
    await cm.__aenter__()
    assert await cm.__aexit__(ZeroDivisionError, ZeroDivisionError(1), None) is True


async def test_an_exception_the_generator_raises_instead_links_the_one_thrown_as_itself(pool: object) -> None:
    error = ZeroDivisionError()
    with pytest.raises(RuntimeError, match="caught") as info:
        async with wrapping():
            raise error
    assert type(info.value) is RuntimeError and info.value.__cause__ is error  # CPython: not unchained
    with pytest.raises(KeyError, match="while handling") as chained:
        async with chaining():
            raise error
    assert chained.value.__context__ is error and chained.value.__cause__ is None
    with pytest.raises(LookupError, match="outer") as deeper:
        async with chaining_deeper():
            raise error
    assert isinstance(deeper.value.__cause__, OSError) and deeper.value.__cause__.__context__ is error


async def test_athrow_gives_back_the_object_thrown_also_a_base_exception(pool: object) -> None:
    """Directly, without `contextlib`: what passes through is the caller's object, even a
    `BaseException` that is not an `Exception` (which the worker must not re-raise itself)."""
    for error in [ValueError("v"), r.Interrupt("stop")]:
        gen = r.plain()
        assert await anext(gen) == 42
        with pytest.raises(type(error)) as info:
            await gen.athrow(error)
        assert info.value is error
    gen = r.wrapping()
    await anext(gen)
    with pytest.raises(RuntimeError) as wrapped:
        await gen.athrow(error := KeyError("k"))
    assert wrapped.value.__cause__ is error


async def test_notes_added_on_the_worker_reach_the_callers_own_exception(pool: object) -> None:
    error = ValueError("v")
    with pytest.raises(ValueError) as info:
        async with noting():
            raise error
    assert info.value is error and error.__notes__ == ["seen on the worker"]


async def test_a_non_normalised_exit_raises_what_the_generator_raises(pool: object) -> None:
    cm = replacing()
    await cm.__aenter__()
    with pytest.raises(SyntaxError) as info:
        await cm.__aexit__(RuntimeError, None, None)
    assert info.value.args == ("replaced",)


async def test_generators_that_misbehave_are_reported_as_locally(pool: object) -> None:
    with pytest.raises(RuntimeError, match="generator didn't yield"):
        async with never_yields():
            pass
    with pytest.raises(RuntimeError, match="generator didn't stop$"):
        async with yields_twice():
            pass
    with pytest.raises(RuntimeError, match=r"generator didn't stop after athrow\(\)"):
        async with yields_after_throw():
            raise ZeroDivisionError


async def test_a_cancelled_block_exits_with_its_own_cancellation(pool: object, tmp_path: Path) -> None:
    """The `CancelledError` thrown in passes through the remote generator and comes back as
    itself, so the cancellation (here: a timeout's) is recognised as the caller's own."""
    log = tmp_path / "log"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(None) as timeout:
            async with recording(str(log)):
                timeout.reschedule(asyncio.get_running_loop().time())  # expires in the block
                await asyncio.Event().wait()
    assert log.read_text() == "entered\nthrown CancelledError\nfinally\n"


async def test_used_as_a_decorator(pool: object, tmp_path: Path) -> None:
    log = tmp_path / "log"

    @recording(str(log))
    async def body(x: int) -> int:
        assert log.read_text() == "entered\n"
        return x * 2

    assert await body(21) == 42
    assert log.read_text() == "entered\nfinally\n"
