"""Where a worker listens by default: an ipc:// socket of its own in the private runtime
directory, unique per incarnation, removed when the worker stops (by the worker, by its pool
when it had to be killed, or by the next worker to start when it was killed by hand), and a
clear error when the runtime directory is too long for a socket path."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import routines
from helpers import REPO, CliWorker, wait_exit

import wool
from wool._ipc import IPC_PATH_MAX

pytestmark = pytest.mark.multiprocess

NAME = "endpoint"


def socket_files(runtime_dir: Path) -> list[str]:
    return sorted(os.listdir(runtime_dir / "sockets"))


async def test_a_cli_worker_listens_in_the_private_runtime_directory_and_cleans_up(runtime_dir: Path) -> None:
    async with CliWorker("--discovery", f"local:{NAME}") as worker:
        path = Path(worker.endpoint.removeprefix("ipc://"))
        assert worker.endpoint.startswith("ipc://") and path.parent == runtime_dir / "sockets"
        assert path.name.startswith(f"{worker.pid}-") and worker.id.startswith(path.stem.partition("-")[2])
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert stat.S_IMODE(os.lstat(path.parent).st_mode) == 0o700
        (entry,) = await wool.LocalDiscovery(NAME).workers()  # discovery lists the ipc endpoint
        assert entry.endpoint == worker.endpoint
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0
    assert socket_files(runtime_dir) == []


async def test_incarnations_get_distinct_sockets(runtime_dir: Path) -> None:
    async with wool.WorkerPool(size=3) as pool:
        endpoints = {w.endpoint for w in pool.workers}
        assert len(endpoints) == 3 and all(e.startswith("ipc://") for e in endpoints)
        assert {f"ipc://{runtime_dir}/sockets/{name}" for name in socket_files(runtime_dir)} == endpoints
    assert socket_files(runtime_dir) == []


async def test_a_pool_removes_the_sockets_of_the_workers_it_had_to_kill(runtime_dir: Path) -> None:
    async with wool.WorkerPool(size=2) as pool:
        victim = pool.processes[0]
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        assert await victim.wait(10) == -signal.SIGKILL
        assert len(socket_files(runtime_dir)) == 2  # a killed worker cannot remove its own
    assert socket_files(runtime_dir) == []


async def test_a_starting_worker_removes_the_socket_of_one_killed_by_hand(runtime_dir: Path) -> None:
    async with CliWorker("--discovery", f"local:{NAME}") as killed:
        killed.signal(signal.SIGKILL)
        assert await killed.wait() == -signal.SIGKILL
        stale = Path(killed.endpoint.removeprefix("ipc://"))
        assert stale.exists()
        async with CliWorker("--discovery", f"local:{NAME}") as worker:
            assert not stale.exists()
            assert socket_files(runtime_dir) == [Path(worker.endpoint).name]
            async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME)) as pool:
                await pool.wait_for_workers(lambda ws: worker.id in {w.id for w in ws}, timeout=10)
                assert await routines.pid() == worker.pid
            worker.signal(signal.SIGTERM)
            assert await worker.wait() == 0


async def test_a_worker_restarted_in_place_keeps_the_socket_it_took_over(runtime_dir: Path) -> None:
    """The killed worker's socket name still names its dead pid, but a worker restarted with
    `--bind` on that endpoint listens there now: a worker starting later must not remove it."""
    async with CliWorker("--discovery", f"local:{NAME}") as killed:
        killed.signal(signal.SIGKILL)
        assert await killed.wait() == -signal.SIGKILL
        taken = Path(killed.endpoint.removeprefix("ipc://"))
        async with CliWorker("--discovery", f"local:{NAME}", "--bind", killed.endpoint) as restarted:
            async with CliWorker("--discovery", f"local:{NAME}") as later:
                assert taken.exists()
                assert sorted(socket_files(runtime_dir)) == sorted([taken.name, Path(later.endpoint).name])
                async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME)) as pool:
                    await pool.wait_for_workers(lambda ws: restarted.id in {w.id for w in ws}, timeout=10)
                    assert (await pool.broadcast(routines.pid))[restarted.id] == restarted.pid
                later.signal(signal.SIGTERM)
                assert await later.wait() == 0
            restarted.signal(signal.SIGTERM)
            assert await restarted.wait() == 0
    assert socket_files(runtime_dir) == []


def long_runtime_dir(runtime_dir: Path) -> Path:
    """A runtime directory whose socket paths would pass the Unix socket path limit."""
    return runtime_dir / ("d" * (IPC_PATH_MAX - len(str(runtime_dir))))


async def test_a_runtime_directory_too_long_for_a_socket_path_is_a_clear_error(
    runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WOOL_RUNTIME_DIR", str(long_runtime_dir(runtime_dir)))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "wool.worker", "--discovery", f"local:{NAME}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    assert await wait_exit(proc) == 1
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    assert stdout == ""
    assert f"a Unix socket path may have at most {IPC_PATH_MAX} bytes" in stderr
    assert "Set WOOL_RUNTIME_DIR to a shorter directory" in stderr
    assert "Traceback" not in stderr
    with pytest.raises(wool.WorkerStartError, match=f"at most {IPC_PATH_MAX} bytes.*WOOL_RUNTIME_DIR"):
        async with wool.WorkerPool(size=1):
            pass
