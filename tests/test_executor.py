"""`wool.Executor`: a real `concurrent.futures.Executor` over real workers: submit, map,
as_completed, cancelling a running call (its remote `finally` runs), shutdown with
`cancel_futures`, `loop.run_in_executor`, and `pool.executor()` on an open pool."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from pathlib import Path

import pytest
import routines as r
import sync_routines as sr

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


def square(x: int) -> int:
    return x * x


def test_is_a_concurrent_futures_executor() -> None:
    assert issubclass(wool.Executor, concurrent.futures.Executor)
    with pytest.raises(TypeError, match="size"):
        wool.Executor(size="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="either an open pool"):
        wool.Executor(pool=wool.WorkerPool(size=1), size=1)


def test_submit_runs_functions_and_routines_on_workers() -> None:
    with wool.Executor(size=2) as executor:
        assert executor.submit(square, 7).result(timeout=30) == 49
        assert executor.submit(r.add, 1, y=2).result(timeout=30) == 3
        assert executor.submit(os.getpid).result(timeout=30) != os.getpid()
        failed = executor.submit(r.fail, "bad", 5)
        assert isinstance(failed.exception(timeout=30), r.Oops)
        with pytest.raises(TypeError, match="async generator"):
            executor.submit(r.countdown, 3)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(square, 1)


def test_map_and_as_completed() -> None:
    with wool.Executor(size=2) as executor:
        assert list(executor.map(square, range(10))) == [i * i for i in range(10)]
        assert list(executor.map(r.add, range(5), range(5), chunksize=2)) == [2 * i for i in range(5)]
        futures = [executor.submit(sr.double, i) for i in range(8)]
        assert sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=30)) == [2 * i for i in range(8)]
        with pytest.raises(ValueError, match="three"):
            list(executor.map(sr.fail_on_three, range(5)))
        with pytest.raises(ValueError, match="chunksize"):
            executor.map(square, range(3), chunksize=0)


def test_cancel_of_a_running_call_cancels_it_remotely(tmp_path: Path) -> None:
    fifo, marker = tmp_path / "started", tmp_path / "ended"
    os.mkfifo(fifo)
    with wool.Executor(size=1) as executor:
        future = executor.submit(sr.announce_then_hang, str(fifo), str(marker))
        assert sr.read_fifo(fifo, timeout=30) == "started"
        assert future.running()
        assert future.cancel()
        assert future.cancelled()
        done, _ = concurrent.futures.wait([future], timeout=30)
        assert done == {future}
        executor.shutdown(wait=True)  # returns once the cancelled call has unwound
        assert marker.read_text() == "CancelledError"


def test_shutdown_with_cancel_futures_cancels_every_call_not_ended(tmp_path: Path) -> None:
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    executor = wool.Executor(size=1)
    finished = executor.submit(square, 3)
    assert finished.result(timeout=30) == 9
    hanging = [executor.submit(sr.announce_then_hang, str(fifo), str(tmp_path / f"ended-{i}")) for i in range(2)]
    assert sr.read_fifo(fifo, timeout=30, lines=2) == "started\nstarted"
    executor.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in hanging)
    assert not finished.cancelled()
    assert [(tmp_path / f"ended-{i}").read_text() for i in range(2)] == ["CancelledError", "CancelledError"]


def test_run_in_executor_and_cancelling_the_awaiting_task(tmp_path: Path) -> None:
    fifo, marker = tmp_path / "started", tmp_path / "ended"
    os.mkfifo(fifo)
    executor = wool.Executor(size=1)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(executor, square, 12)
        waiting = asyncio.ensure_future(loop.run_in_executor(executor, sr.announce_then_hang, str(fifo), str(marker)))
        assert await asyncio.to_thread(sr.read_fifo, fifo, 30) == "started"
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return result

    try:
        assert asyncio.run(main()) == 144
    finally:
        executor.shutdown(wait=True)
    assert marker.read_text() == "CancelledError"


def test_pool_executor_leaves_the_pool_open() -> None:
    with wool.WorkerPool(size=1) as pool:
        executor = pool.executor()
        assert isinstance(executor, wool.Executor)
        assert executor.submit(square, 4).result(timeout=30) == 16
        executor.shutdown()
        assert pool.run(r.add(1, 1)) == 2


async def test_pool_executor_of_an_async_pool_does_not_block_its_loop() -> None:
    async with wool.WorkerPool(size=1) as pool:
        executor = pool.executor()
        loop = asyncio.get_running_loop()
        assert await asyncio.gather(*(loop.run_in_executor(executor, square, i) for i in range(4))) == [0, 1, 4, 9]
        with pytest.raises(RuntimeError, match="wait=False"):
            executor.shutdown(wait=True)
        executor.shutdown(wait=False)
