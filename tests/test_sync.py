"""WorkerPool from synchronous code (`with`, `pool.run`, `pool.map`), Ctrl-C during
`pool.run`, and which pool a call uses when none is in its context (`await pool.start()` in
one notebook cell, calls in the next)."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import routines as r
import sync_routines as sr
from helpers import REPO

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


def script_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH")])),
    }


def test_script_without_asyncio_runs_calls_maps_and_sees_errors() -> None:
    source = (REPO / "examples" / "sync.py").read_text()
    assert "import asyncio" not in source and "from asyncio" not in source
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "sync.py")], capture_output=True, text=True, timeout=60, env=script_env()
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "apple: 1.5",
        "basket: 4.25",
        "apple: 1.50",
        "fig: 0.75",
        "kiwi: 2.00",
        "ran in another process: True",
        "error: \"no price for 'durian'\"",
        "pool closed",
    ]


def test_run_returns_raises_and_gathers() -> None:
    with wool.WorkerPool(size=2) as pool:
        assert pool.run(r.add(1, 2)) == 3
        assert pool.run(asyncio.gather(r.add(1, 2), r.add(3, 4))) == [3, 7]
        with pytest.raises(r.Oops) as info:
            pool.run(r.fail("bad", 7))
        assert info.value.code == 7
        assert pool.run(r.pid()) in {w.pid for w in pool.workers}
    assert pool.workers == []
    with pytest.raises(RuntimeError, match="not open"):
        pool.run(r.add(1, 2))


def test_wool_run_in_sync_code_is_pool_run_on_the_latest_with_pool() -> None:
    with pytest.raises(RuntimeError, match="with wool.WorkerPool"):
        wool.run(r.add(1, 2))  # no pool open: the error says where wool.run works
    with wool.WorkerPool(size=1) as pool:
        assert wool.run(r.add(1, 2)) == 3
        assert wool.run(r.pid()) in {w.pid for w in pool.workers}
        with pytest.raises(r.Oops):
            wool.run(r.fail("bad", 7))


def test_map_is_a_plain_iterator_with_wool_map_semantics() -> None:
    with wool.WorkerPool(size=2) as pool:
        results = pool.map(sr.double, range(10), concurrency=3)
        assert iter(results) is results
        assert list(results) == [2 * i for i in range(10)]
        assert sorted(pool.map(sr.double, range(10), ordered=False)) == [2 * i for i in range(10)]
        with pytest.raises(ValueError, match="three"):
            list(pool.map(sr.fail_on_three, range(10)))
        with pytest.raises(ValueError, match="concurrency"):
            pool.map(sr.double, range(3), concurrency=0)


def test_closing_a_map_early_cancels_the_calls_in_flight(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "started")
    with wool.WorkerPool(size=1) as pool:
        with pool.map(sr.first_fast_then_hang, [(str(tmp_path), i) for i in range(3)], concurrency=3) as results:
            assert next(results) == 0
            assert sr.read_fifo(tmp_path / "started", timeout=30, lines=2) == "started\nstarted"
        cancelled = sorted(p.name for p in tmp_path.iterdir() if p.name != "started")
        assert cancelled == ["cancelled-1", "cancelled-2"]


def test_run_on_the_pools_own_loop_is_refused() -> None:
    async def main() -> None:
        async with wool.WorkerPool(size=1) as pool:
            call = r.add(1, 2)
            with pytest.raises(RuntimeError, match="await"):
                pool.run(call)

    asyncio.run(main())


def test_run_from_another_thread_uses_a_pool_opened_with_async_with() -> None:
    async def main() -> int:
        async with wool.WorkerPool(size=1) as pool:
            return await asyncio.to_thread(pool.run, r.add(2, 3))

    assert asyncio.run(main()) == 5


def test_started_pool_serves_calls_made_outside_its_context() -> None:
    async def main() -> None:
        pool = wool.WorkerPool(size=1)
        outside = contextvars.copy_context()  # a later notebook cell's context
        await asyncio.get_running_loop().create_task(pool.start())  # the cell that opened it
        try:
            assert await asyncio.get_running_loop().create_task(r.add(1, 1), context=outside) == 2
        finally:
            await pool.close()
        with pytest.raises(wool.NoPoolError, match="outside any worker pool"):
            await r.add(1, 1)

    asyncio.run(main())


def test_most_recent_pool_wins_and_nested_async_with_keeps_its_meaning() -> None:
    async def main() -> None:
        first, second = wool.WorkerPool(size=1), wool.WorkerPool(size=1)
        outside = contextvars.copy_context()
        await asyncio.create_task(first.start())
        await asyncio.create_task(second.start())
        try:
            loop = asyncio.get_running_loop()
            assert await loop.create_task(r.pid(), context=outside) == second.workers[0].pid
            async with wool.WorkerPool(size=1) as inner:
                assert await r.pid() == inner.workers[0].pid
                # outside any pool's context: the most recently opened, the inner one
                assert await loop.create_task(r.pid(), context=outside) == inner.workers[0].pid
            await asyncio.create_task(second.close())
            assert await loop.create_task(r.pid(), context=outside) == first.workers[0].pid
        finally:
            await first.close()
            await second.close()

    asyncio.run(main())


def test_a_pool_is_not_used_from_another_loop() -> None:
    with wool.WorkerPool(size=1):

        async def call() -> int:
            return await r.add(1, 2)

        with pytest.raises(wool.NoPoolError, match=r"another loop.*pool\.run\(add\(\.\.\.\)\)"):
            asyncio.run(call())


def test_with_in_a_thread_with_a_running_loop_works_through_run() -> None:
    """A notebook's sync cell runs on the kernel's loop: `with` still opens the pool on a
    thread of its own, and `pool.run` blocks that loop for the call."""

    async def main() -> int:
        with wool.WorkerPool(size=1) as pool:
            return pool.run(r.add(4, 5))

    assert asyncio.run(main()) == 9


def test_ctrl_c_during_run_cancels_the_remote_call(tmp_path: Path) -> None:
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    marker = tmp_path / "cancelled"
    script = tmp_path / "interrupted.py"
    script.write_text(
        textwrap.dedent(f"""
        import sync_routines, wool
        with wool.WorkerPool(size=1) as pool:
            try:
                pool.run(sync_routines.announce_then_hang({str(fifo)!r}, {str(marker)!r}))
            except KeyboardInterrupt:
                print("KeyboardInterrupt; remote saw:", open({str(marker)!r}).read(), flush=True)
                raise
        """)
    )
    # SIGINT is ignored in background jobs: let the script install Python's own handler.
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert sr.read_fifo(fifo, timeout=30) == "started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert out == "KeyboardInterrupt; remote saw: CancelledError\n"
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert proc.returncode != 0


def test_exiting_the_block_leaves_no_thread_and_no_process() -> None:
    before = set(threading.enumerate())
    with wool.WorkerPool(size=2) as pool:
        pids = [w.pid for w in pool.workers]
        assert set(threading.enumerate()) - before
    assert not {t for t in set(threading.enumerate()) - before if t.is_alive()}
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_routine_called_but_never_awaited_says_how_to_run_it() -> None:
    with pytest.warns(
        RuntimeWarning, match=r"routine 'add' was called but never awaited.*pool\.run\(add\(\.\.\.\)\).*await add"
    ) as caught:
        r.add(1, 2)  # dropped at once: nothing was sent
    assert caught[0].filename == __file__

    async def plain() -> None:
        pass

    with pytest.warns(RuntimeWarning, match=r"^coroutine '.*plain' was never awaited$") as caught:
        plain()
    assert caught[0].filename == __file__


def test_a_blocking_call_from_another_thread_ends_when_the_pool_closes() -> None:
    """No caller waits forever: a `pool.run` of a coroutine that waits on nothing wool knows
    about is cancelled when the block ends."""
    outcome: list[BaseException] = []
    started = threading.Event()

    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    def caller(pool: wool.WorkerPool) -> None:
        try:
            pool.run(wait_forever())
        except BaseException as e:
            outcome.append(e)

    with wool.WorkerPool(size=1) as pool:
        thread = threading.Thread(target=caller, args=(pool,))
        thread.start()
        assert started.wait(timeout=30)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [type(e) for e in outcome] == [asyncio.CancelledError]
