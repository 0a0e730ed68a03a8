"""Logging goes through the `wool` logger: quiet by default, and at DEBUG enough to follow one
call from the caller's log to the worker's (call id, worker id, caller id)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import routines
from helpers import CliWorker

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


async def serve_one_call(log: Path, *args: str) -> CliWorker:
    with log.open("w") as stderr:
        async with CliWorker("--discovery", "local:logged", *args, stderr=stderr) as worker:
            async with wool.WorkerPool(discovery=wool.LocalDiscovery("logged")) as pool:
                await pool.wait_for_workers()
                assert await routines.add(1, 2) == 3
            worker.signal()
            assert await worker.wait() == 0
    return worker


async def test_one_call_can_be_followed_from_caller_to_worker_at_debug(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wool")
    worker = await serve_one_call(tmp_path / "worker.log", "--log-level", "debug")
    sent = [m for r in caplog.records if (m := re.fullmatch(r"call (\d+) add sent to worker '(\w+)' by (\S+)", r.getMessage()))]
    assert len(sent) == 1
    call_id, worker_id, caller = sent[0].groups()
    assert worker_id == worker.id
    assert f"call {call_id} 'add' from {caller}" in (tmp_path / "worker.log").read_text()


async def test_a_worker_is_quiet_by_default(tmp_path: Path) -> None:
    await serve_one_call(tmp_path / "worker.log")
    assert (tmp_path / "worker.log").read_text() == ""
