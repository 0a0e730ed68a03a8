"""No process outlives its pool, however the pool's process ends: killed outright, its worker
template is killed by the kernel, its idle workers stop cleanly, and one whose loop a routine
blocks is killed after the grace period; what that one leaves in the runtime directory (its
socket, its registry entry) is removed by the next pool."""

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
from interrupt_scripts import Script, listing, wait_gone

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]


async def test_sigkill_of_the_pool_kills_its_template_and_workers_and_the_next_pool_cleans_up(
    runtime_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "pool.py"
    path.write_text(interrupt_scripts.blocking(size=2))
    script = Script(path)
    try:
        _, template, *workers = await script.start()
        assert len(workers) == 2
        script.proc.kill()
        assert await asyncio.to_thread(script.proc.wait, 30) == -signal.SIGKILL
        for pid in (template, *workers):
            await wait_gone(pid)
    finally:
        script.close()
    left = listing(runtime_dir)  # the blocked worker's: the idle one withdrew as it stopped
    assert any(name.startswith("registry/pool-") and name.endswith(".json") for name in left), left
    assert sum(name.startswith("sockets/") for name in left) == 1, left
    async with wool.WorkerPool(size=1):
        assert await routines.add(1, 2) == 3
        assert [n for n in listing(runtime_dir) if n in left] == []  # the dead pool's files are gone
    assert listing(runtime_dir) == []


def test_a_process_whose_parent_is_already_gone_dies_at_once() -> None:
    """The parent died before the death signal was armed: the kernel will not send it."""
    code = "from wool.worker._lifeline import die_with_parent; die_with_parent(1); print('alive')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert run.returncode == -signal.SIGKILL
    assert run.stdout == ""


def test_a_process_with_its_parent_alive_lives() -> None:
    code = f"from wool.worker._lifeline import die_with_parent; die_with_parent({os.getpid()}); print('alive')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout) == (0, "alive\n")
