"""Coroutine routines on real workers: values, copies, errors, serialization failures."""

from __future__ import annotations

import asyncio
import os
import threading
import traceback
from pathlib import Path
from typing import Any

import helpers
import pytest
import routines
from routines import Calculator, Oops

import wool

pytestmark = pytest.mark.multiprocess


async def test_result_comes_back() -> None:
    async with wool.WorkerPool(size=1):
        assert await routines.add(1, 2) == 3


async def test_runs_in_another_process() -> None:
    async with wool.WorkerPool(size=1) as pool:
        assert await routines.pid() == pool.processes[0].pid != os.getpid()


async def test_arguments_are_copies() -> None:
    items = [1]
    async with wool.WorkerPool(size=1):
        assert await routines.mutate(items) == [1, 99]
    assert items == [1]


async def test_lambdas_and_closures_travel_as_arguments() -> None:
    offset = 10
    async with wool.WorkerPool(size=1):
        assert await routines.apply(lambda x: x + offset, 5) == 15


async def test_routine_defined_in_a_closure() -> None:
    factor = 3

    @wool.routine
    async def scale(x: int) -> int:
        return x * factor

    async with wool.WorkerPool(size=1):
        assert await scale(4) == 12
        assert await scale(5) == 15


async def test_never_awaited_call_sends_nothing(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    async with wool.WorkerPool(size=1):
        never = routines.append_line(str(log), "never")
        never.close()
        # One worker, one socket, calls started in order: had the first been sent, its line
        # would be written before this one.
        await routines.append_line(str(log), "awaited")
    assert log.read_text() == "awaited\n"


async def test_remote_exception_keeps_type_message_attributes_and_chain() -> None:
    async with wool.WorkerPool(size=1):
        with pytest.raises(Oops) as info:
            await routines.fail("nope", 42)
    exc = info.value
    assert str(exc) == "('nope', 42)" and exc.args == ("nope", 42)
    assert exc.code == 42
    assert isinstance(exc.__cause__, KeyError) and exc.__cause__.args == ("inner",)
    assert exc.__context__ is exc.__cause__


_STATE = {
    SyntaxError: ("msg", "filename", "lineno", "offset", "text", "end_lineno", "end_offset"),
    UnicodeDecodeError: ("encoding", "object", "start", "end", "reason"),
}


@pytest.mark.parametrize(
    ("fn", "args"),
    [(compile, ("x = (", "<cell>", "exec")), (bytes.decode, (b"ok \xff", "utf-8"))],
    ids=["SyntaxError", "UnicodeDecodeError"],
)
async def test_builtin_exceptions_keep_the_state_their_message_is_made_of(fn: Any, args: tuple[Any, ...]) -> None:
    """Their message is built from fields `__init__` sets, not from `args` alone."""
    with pytest.raises(Exception) as here:
        fn(*args)
    local = here.value
    async with wool.WorkerPool(size=1):
        with pytest.raises(type(local)) as there:
            await routines.apply(fn, *args)
    remote = there.value
    assert str(remote) == str(local)
    names = _STATE[type(local)]
    assert [getattr(remote, n) for n in names] == [getattr(local, n) for n in names]
    assert "in apply" in "".join(traceback.format_exception(remote))


async def test_remote_traceback_is_visible() -> None:
    async with wool.WorkerPool(size=1):
        with pytest.raises(Oops) as info:
            await routines.fail("nope")
    text = "".join(traceback.format_exception(info.value))
    assert "routines.py" in text and "in fail" in text
    assert "raise Oops(message, code) from e" in text
    assert "KeyError: 'inner'" in text


@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "SystemExit", "GeneratorExit"])
async def test_base_exceptions_neither_kill_the_worker_nor_the_caller(kind: str) -> None:
    async with wool.WorkerPool(size=1) as pool:
        before = await routines.pid()
        with pytest.raises(wool.RemoteBaseException, match=kind) as info:
            await routines.raise_base(kind)
        assert info.value.type_name == kind
        assert await routines.pid() == before
        assert pool.processes[0].returncode is None


async def test_routine_raising_cancelled_error_cancels_the_caller() -> None:
    async with wool.WorkerPool(size=1):
        with pytest.raises(asyncio.CancelledError):
            await routines.raise_cancelled()
        assert await routines.add(1, 1) == 2


async def test_unpicklable_argument_fails_at_call_site_and_sends_nothing() -> None:
    async with wool.WorkerPool(size=1):
        with pytest.raises(wool.SerializationError, match="arguments of echo") as info:
            await routines.echo(threading.Lock())
        assert isinstance(info.value, TypeError)
        assert await routines.add(2, 2) == 4


async def test_unpicklable_result_fails_that_call_only() -> None:
    async with wool.WorkerPool(size=1):
        with pytest.raises(wool.SerializationError, match="result of unpicklable_result could not be pickled"):
            await routines.unpicklable_result()
        assert await routines.add(2, 3) == 5


async def test_instance_static_and_class_methods() -> None:
    calc = Calculator(10)
    async with wool.WorkerPool(size=1):
        assert await calc.plus(5) == 15
        assert await Calculator.double(4) == 8
        assert await calc.double(5) == 10
        assert await Calculator.triple(3) == 9
        assert await Calculator.name() == "Calculator"


async def test_many_concurrent_calls_run_at_once_on_two_workers() -> None:
    """100 calls that can only finish together: each waits at a gate the test opens only
    after all 100 have arrived. Run one at a time, they would never finish."""
    async with wool.WorkerPool(size=2), helpers.Observer() as observer:
        calls = [asyncio.ensure_future(routines.wait_at(observer.address, "all")) for _ in range(100)]
        await observer.wait_for("at all", count=100, timeout=30)
        observer.open("all")
        assert await asyncio.wait_for(asyncio.gather(*calls), 30) == ["all"] * 100


async def test_calls_spread_over_the_workers() -> None:
    async with wool.WorkerPool(size=2) as pool:
        pids = [await routines.pid() for _ in range(4)]
        assert sorted(pids) == sorted(2 * [w.pid for w in pool.workers])


async def test_large_values_round_trip_intact_and_of_their_own_type() -> None:
    # Large enough that every one of them travels in frames of its own, not copied by ZeroMQ.
    big = bytes(range(256)) * 4096 * 3
    text = big.decode("latin-1")
    async with wool.WorkerPool(size=1):
        for value in (big, bytearray(big), routines.PickledByBuffer(big), text):
            out = await routines.echo(value)
            assert type(out) is type(value) and out == value
        out = await routines.echo({"a": [big, (bytearray(big), text)], "b": big[::-1]})
        assert out == {"a": [big, (bytearray(big), text)], "b": big[::-1]}
        assert [type(out["a"][0]), type(out["a"][1][0]), type(out["b"])] == [bytes, bytearray, bytes]
        received = await routines.echo(bytearray(big))
        received[0] ^= 0xFF  # a writable value of its own, not a view of a receive buffer
        assert received[1:] == big[1:] and received[0] == big[0] ^ 0xFF


async def test_a_routine_is_pickled_once_per_process_and_unpickled_once_per_worker() -> None:
    counted = routines.routine_capturing_a_marker()
    before = routines.PICKLED
    async with wool.WorkerPool(size=1):
        assert [await counted() for _ in range(3)] == [1, 1, 1]
    assert routines.PICKLED - before == 1
