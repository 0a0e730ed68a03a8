"""Worker lifespans and `wool.state()`: entered once per worker before its first call, exited
after its last on a graceful stop, a failure to enter reported with the user's exception,
and nested calls from inside a lifespan."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
import traceback

import fanout_routines
import lifespans
import pytest
from helpers import REPO, CliWorker, Observer, wait_exit

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


def test_state_outside_a_worker_says_where_it_works() -> None:
    with pytest.raises(RuntimeError, match="only works inside a routine running on a worker"):
        wool.state()


def test_a_lifespan_must_be_callable() -> None:
    with pytest.raises(TypeError, match="lifespan must be a zero-argument callable"):
        wool.WorkerPool(size=1, lifespan=object())  # type: ignore[arg-type]


async def test_each_worker_enters_once_routines_read_its_state_and_it_exits_on_stop() -> None:
    async with Observer() as observer:
        async with wool.WorkerPool(size=2, lifespan=functools.partial(lifespans.curves, observer.address)) as pool:
            pids = {w.pid for w in pool.workers}
            # Entered before the pool was ready: once per worker.
            assert sorted(e for e in observer.events if e.startswith("enter")) == sorted(f"enter {pid}" for pid in pids)
            seen = [await lifespans.read_state_here() for _ in range(8)]
            assert {state["pid"] for state, _ in seen} == pids
            assert all(state["pid"] == pid and state["curve"] == [1.0, 2.0, 3.0] for state, pid in seen)
        # The pool's exit waited for the workers, whose lifespans exited first.
        assert sorted(e for e in observer.events if e.startswith("exit")) == sorted(f"exit {pid}" for pid in pids)
        assert len(observer.events) == 4


async def test_without_a_lifespan_state_is_none() -> None:
    async with wool.WorkerPool(size=1):
        assert await lifespans.read_state() is None


async def test_a_lifespan_that_raises_fails_the_pool_with_the_users_exception() -> None:
    with pytest.raises(wool.WorkerStartError) as caught:
        async with wool.WorkerPool(size=2, lifespan=lifespans.failing):
            raise AssertionError("the pool should not have started")
    assert "CurvesMissing: no curves in /data/curves" in str(caught.value)
    cause = caught.value.__cause__
    assert isinstance(cause, lifespans.CurvesMissing)
    assert str(cause) == "no curves in /data/curves"
    remote = "".join(traceback.format_exception(cause))
    assert "in load_curves" in remote and "in failing" in remote  # the worker's traceback


async def test_a_factory_that_returns_no_context_manager_is_named() -> None:
    with pytest.raises(wool.WorkerStartError, match="returned int, not an async context manager") as caught:
        async with wool.WorkerPool(size=1, lifespan=lifespans.not_a_context_manager):
            pass
    assert isinstance(caught.value.__cause__, TypeError)


async def test_a_lifespan_can_call_routines_while_it_is_entered() -> None:
    async with Observer() as observer:
        async with wool.WorkerPool(size=2, lifespan=functools.partial(lifespans.nested, observer.address)):
            assert observer.events == ["nested 42", "nested 42"]
            assert await lifespans.read_state() == 42


async def test_cli_lifespan_enters_serves_and_exits_on_sigterm() -> None:
    async with CliWorker("--discovery", "local:life", "--lifespan", "lifespans:failing_on_exit", stderr=subprocess.PIPE) as w:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery("life")) as pool:
            await pool.wait_for_workers(timeout=20)
            assert await lifespans.read_state() == "ok"
        w.signal(signal.SIGTERM)
        assert await w.wait() == 0  # an exception on exit is logged; the worker still exits
        assert w.proc is not None and w.proc.stderr is not None
        err = w.proc.stderr.read().decode()
        assert "raised on exit" in err and "could not flush the cache" in err


def test_cli_lifespan_that_raises_exits_non_zero_and_prints_it() -> None:
    env = {"PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}
    done = subprocess.run(
        [sys.executable, "-m", "wool.worker", "--discovery", "local:life", "--lifespan", "lifespans:failing"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, **env},
    )
    assert done.returncode == 1
    assert "lifespans:failing raised CurvesMissing: no curves in /data/curves" in done.stderr
    assert "in load_curves" in done.stderr  # with its traceback
    assert "listening" not in done.stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lifespans", "must look like module:attr"),
        ("lifespans:nowhere", "has no attribute nowhere"),
        ("lifespans:CurvesMissing.nope", "has no attribute CurvesMissing.nope"),
        ("no_such_module_here:x", "cannot import it: ModuleNotFoundError"),
    ],
)
def test_cli_lifespan_spec_errors(spec: str, message: str) -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}
    done = subprocess.run(
        [sys.executable, "-m", "wool.worker", "--discovery", "local:life", "--lifespan", spec],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env=env,
    )
    assert done.returncode == 2
    assert message in done.stderr


async def test_a_stopping_worker_exits_its_lifespan_after_its_last_call(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Observer() as observer:
        monkeypatch.setenv("WOOL_TEST_OBSERVER", observer.address)
        async with CliWorker("--discovery", "local:life", "--lifespan", "lifespans:observed") as w:
            async with wool.WorkerPool(discovery=wool.LocalDiscovery("life")) as pool:
                await pool.wait_for_workers(timeout=20)
                call = asyncio.ensure_future(fanout_routines.held(observer.address, "last"))
                await observer.wait_for(f"ran {w.pid}")
                w.signal(signal.SIGTERM)  # the call in flight may finish within the grace period
                observer.open("last")
                assert await call == w.pid
            assert await w.wait() == 0
        assert observer.events == ["entered", f"ran {w.pid}", "at last", "exited"]


async def test_a_worker_stopped_while_its_lifespan_enters_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Observer() as observer:
        monkeypatch.setenv("WOOL_TEST_OBSERVER", observer.address)
        env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "wool.worker", "--discovery", "local:life", "--lifespan", "lifespans:hanging"],
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        try:
            await observer.wait_for("entering")
            proc.send_signal(signal.SIGTERM)
            assert await wait_exit(proc, 20) == 0
            assert observer.events == ["entering", "entry cancelled"]
            assert proc.stdout is not None and b"listening" not in proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
