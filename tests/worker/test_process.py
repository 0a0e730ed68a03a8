"""Spawned worker processes never outlive their pool, even when the pool's process is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import helpers
import psutil
import pytest

pytestmark = pytest.mark.multiprocess

SCRIPT = """
import asyncio, os, sys, wool

async def main():
    async with wool.WorkerPool(size=2) as pool:
        print(" ".join(str(p.pid) for p in pool.processes), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_workers_stop_when_the_pool_process_is_killed() -> None:
    owner = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, cwd=helpers.REPO)
    try:
        assert owner.stdout is not None
        line = await helpers.read_line(owner.stdout)
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2
        # The workers, and the template they were forked from.
        descendants = psutil.Process(owner.pid).children(recursive=True)
        assert set(pids) < {d.pid for d in descendants}
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        # Orphaned workers are reparented, so wait on them through psutil.
        gone, alive = psutil.wait_procs(descendants, timeout=20)
        assert not alive, f"processes outlived their pool: {alive}"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


async def test_a_spawned_worker_ignores_sigint_its_pool_decides() -> None:
    """Ctrl-C in a terminal signals the whole process group: the workers a pool spawned keep
    serving, and stop when the pool exits (here, normally)."""
    import routines

    import wool

    async with wool.WorkerPool(size=1) as pool:
        worker = pool.processes[0]
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGINT)
        assert await routines.pid() == worker.pid  # still in rotation, still serving
        assert await routines.pid() == worker.pid
    assert worker.returncode == 0


async def test_workers_are_forked_from_one_template_that_leaves_with_the_pool() -> None:
    import routines

    import wool

    async with wool.WorkerPool(size=3) as pool:
        template = pool._template
        assert template is not None
        parents = {psutil.Process(w.pid).ppid() for w in pool.processes if w.pid is not None}
        assert parents == {template.pid}
        assert {await routines.pid() for _ in range(3)} == {w.pid for w in pool.processes}
        workers = pool.processes
    assert [w.returncode for w in workers] == [0, 0, 0]  # as the template reported them
    assert pool._template is None and not psutil.pid_exists(template.pid)


async def test_workers_outlive_a_killed_template_and_the_pool_still_learns_when_they_exit() -> None:
    """The template dying takes nothing with it: its workers keep serving, and closing the
    pool stops them and learns that each exited (its pidfd tells; the code died with the
    template, so it reads EXIT_UNKNOWN), rather than waiting out every timeout for a report
    that will never come."""
    import routines

    import wool
    from wool.worker._process import EXIT_UNKNOWN

    async with wool.WorkerPool(size=2) as pool:
        template = pool._template
        assert template is not None
        workers = pool.processes
        os.kill(template.pid, signal.SIGKILL)
        await template._exited  # reaped by the pool's process, whose child it is
        assert {await routines.pid() for _ in range(2)} == {w.pid for w in workers}
        procs = [psutil.Process(w.pid) for w in workers if w.pid is not None]
    assert [w.returncode for w in workers] == [EXIT_UNKNOWN, EXIT_UNKNOWN]
    gone, alive = psutil.wait_procs(procs, timeout=10)  # reparented: reaped by init
    assert not alive


async def test_without_templates_workers_are_fresh_interpreters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a template cannot work (no fork, no descriptor passing), a worker is a
    `python -m wool.worker --spawned` child of the pool's process: the same worker."""
    import routines

    import wool
    from wool import _pool

    monkeypatch.setattr(_pool, "templates_work", lambda: False)
    async with wool.WorkerPool(size=2) as pool:
        assert pool._template is None
        assert {psutil.Process(w.pid).ppid() for w in pool.processes if w.pid is not None} == {os.getpid()}
        assert {await routines.pid() for _ in range(2)} == {w.pid for w in pool.processes}
        workers = pool.processes
    assert [w.returncode for w in workers] == [0, 0]
