"""Local means this user: another user of the machine who finds a keyless worker's endpoint
(it is listed in /proc/net/unix for everyone to read) can neither connect to it nor get a call
run, whether the worker was spawned by a pool or started by hand with its default bind. The
control shows the same attack succeeding against a worker that opted into keyless TCP with
`--insecure`: the attack is real, and the refusal is what stops it.

The attacker is a child process with a uid of its own (see `attack`): these tests run as root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import routines
from attack import EACCES, attack_as, unused_uid
from helpers import CliWorker

import wool

pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.skipif(os.geteuid() != 0, reason="becoming another user needs root"),
]

NAME = "victim"


@pytest.fixture
def stranger() -> int:
    return unused_uid()


def assert_shut_out(report: dict[str, object]) -> None:
    """The endpoint was visible, but the stranger could not connect, let alone call."""
    assert report["listed"] is True, report
    assert report["connect_errno"] == EACCES, report
    assert (report["connected"], report["pong"], report["reply"]) == (False, None, None), report


async def test_control_a_worker_on_keyless_tcp_runs_the_strangers_call(stranger: int, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with CliWorker("--discovery", f"local:{NAME}", "--insecure", "--bind", "tcp://127.0.0.1:0") as worker:
        report = await attack_as(stranger, worker.endpoint, str(marker))
        assert (report["listed"], report["connect_errno"], report["connected"]) == (True, 0, True), report
        assert report["pong"] == worker.id
        # The stranger's code ran in the worker, as the worker's user (root here), not as theirs.
        assert (report["reply"], report["returned"]) == ("Return", 0)
        assert marker.read_text() == "0"
        worker.signal()
        assert await worker.wait() == 0


async def test_a_strangers_call_never_reaches_a_keyless_pools_workers(stranger: int, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with wool.WorkerPool(size=2) as pool:
        assert len(pool.workers) == 2
        for info in pool.workers:
            assert info.endpoint.startswith("ipc://"), info.endpoint
            assert_shut_out(await attack_as(stranger, info.endpoint, str(marker)))
        assert not marker.exists()
        # The workers are unharmed: both still serve this user.
        assert all(w.returncode is None for w in pool.processes)
        assert {await routines.pid() for _ in range(6)} == {w.pid for w in pool.processes}
    assert not marker.exists()


async def test_a_strangers_call_never_reaches_a_cli_worker_with_its_default_bind(stranger: int, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    async with CliWorker("--discovery", f"local:{NAME}") as worker:
        assert worker.endpoint.startswith("ipc://"), worker.endpoint
        assert_shut_out(await attack_as(stranger, worker.endpoint, str(marker)))
        assert not marker.exists()
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME)) as pool:
            await pool.wait_for_workers(timeout=10)
            assert await routines.pid() == worker.pid
        worker.signal()
        assert await worker.wait() == 0
    assert not marker.exists()
