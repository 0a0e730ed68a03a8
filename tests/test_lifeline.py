"""No process outlives its pool, however the pool's process ends: killed outright, its worker
template and workers (even one whose loop a routine blocks) are killed by the kernel; what they
leave in the runtime directory (sockets, registry files) is removed by the next pool."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import interrupt_scripts
import pytest
import routines
from helpers import read_line, wait_exit

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]


async def wait_gone(pid: int, timeout: float = 30.0) -> None:
    """Wait until process `pid` (not a child of ours) has exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    loop.add_reader(pidfd, lambda: gone.done() or gone.set_result(None))
    try:
        async with asyncio.timeout(timeout):
            await gone
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def listing(runtime_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(runtime_dir)) for p in runtime_dir.rglob("*") if p.is_file() or p.is_socket())


async def test_sigkill_of_the_pool_kills_its_template_and_workers_and_the_next_pool_cleans_up(
    runtime_dir: Path, tmp_path: Path
) -> None:
    script = tmp_path / "pool.py"
    script.write_text(interrupt_scripts.blocking(size=2))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, start_new_session=True)
    try:
        fields = (await read_line(proc.stdout)).split()
        assert fields[0] == "ready", fields
        pool_pid, template, *workers = map(int, fields[1:])
        assert template and len(workers) == 2
        proc.kill()
        assert await wait_exit(proc) == -signal.SIGKILL
        for pid in (template, *workers):
            await wait_gone(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = listing(runtime_dir)
    assert any(name.startswith("registry/pool-") and name.endswith(".json") for name in left), left
    assert sum(name.startswith("sockets/") for name in left) == 2, left
    async with wool.WorkerPool(size=1):
        assert await routines.add(1, 2) == 3
        assert [n for n in listing(runtime_dir) if n in left] == []  # the dead pool's files are gone
    assert listing(runtime_dir) == []


def test_a_process_whose_parent_is_already_gone_dies_at_once() -> None:
    """The parent died before the death signal was armed: the kernel will not send it."""
    code = "from wool.worker._lifeline import die_with_parent; die_with_parent(1, may_thread=False); print('alive')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert run.returncode == -signal.SIGKILL
    assert run.stdout == ""


def test_a_process_with_its_parent_alive_lives() -> None:
    code = f"from wool.worker._lifeline import die_with_parent; die_with_parent({os.getpid()}, may_thread=False); print('alive')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout) == (0, "alive\n")
