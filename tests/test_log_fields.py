"""Log records about a call carry `call_id`, `routine`, `worker_id` and `caller` as attributes,
so a JSON formatter (README "Observing", `tests.jsonlog`) writes them out for tools to index."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

import wool
from tests import routines
from tests.helpers import CliWorker
from wool.worker._setup import SETUP_ENV

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


async def test_both_ends_of_a_call_log_the_same_fields(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="wool")
    monkeypatch.setenv(SETUP_ENV, "tests.jsonlog:setup")
    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        async with CliWorker("--discovery", "local:fields", "--log-level", "debug", stderr=stderr) as worker:
            async with wool.WorkerPool(discovery=wool.LocalDiscovery("fields")) as pool:
                await pool.wait_for_workers(timeout=20)
                assert await routines.add(1, 2) == 3
            worker.signal()
            assert await worker.wait() == 0
    (sent,) = [r for r in caplog.records if r.getMessage().startswith("call ") and " sent to worker " in r.getMessage()]
    fields = {"call_id": sent.call_id, "routine": sent.routine, "worker_id": sent.worker_id, "caller": sent.caller}  # type: ignore[attr-defined]
    assert fields["routine"] == "add" and fields["worker_id"] == worker.id
    assert isinstance(fields["call_id"], int) and fields["caller"].startswith(f"{os.getpid()}-")
    # The worker's record of the same call, written by the JSON formatter its set-up installed.
    records = [json.loads(line) for line in log.read_text().splitlines()]
    received = [r for r in records if r["message"] == f"call {fields['call_id']} 'add' from {fields['caller']}"]
    assert len(received) == 1
    assert {k: received[0][k] for k in fields} == fields
