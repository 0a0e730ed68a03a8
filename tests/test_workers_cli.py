"""`python -m wool.workers`: the live workers of a namespace, as they report themselves."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import routines
from helpers import REPO, CliWorker, Observer

import wool
from wool._keys import generate_directory

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


async def workers_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wool.workers",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_lists_each_worker_with_its_calls_and_marks_unreachable_entries() -> None:
    namespace = wool.LocalDiscovery("listed")
    ghost = wool.WorkerInfo("ghost", "tcp://127.0.0.1:9", os.getpid())  # nobody listens there
    await namespace.publish(ghost)
    try:
        async with (
            Observer() as obs,
            CliWorker("--discovery", "local:listed", "--tag", "gpu", "--max-calls", "3") as worker,
        ):
            async with wool.WorkerPool(discovery=namespace) as pool:
                await pool.wait_for_workers()
                busy = asyncio.create_task(routines.wait_at(obs.address, "x"))
                await obs.wait_for("at x")
                code, out, _ = await workers_cli("--discovery", "local:listed", "--json", "--timeout", "1")
                assert code == 0
                rows: dict[str, dict[str, Any]] = {r["id"]: r for r in json.loads(out)}
                expected = {
                    "endpoint": worker.endpoint,
                    "pid": worker.pid,
                    "tags": ["gpu"],
                    "reachable": True,
                    "calls": 1,
                    "queued": 0,
                    "max_calls": 3,
                }
                assert {key: rows[worker.id][key] for key in expected} == expected
                assert rows["ghost"]["reachable"] is False
                code, table, _ = await workers_cli("--discovery", "local:listed", "--timeout", "1")
                assert code == 0
                lines = table.splitlines()
                assert lines[0].split() == ["ID", "ENDPOINT", "PID", "HOST", "TAGS", "CALLS", "QUEUED", "MAX"]
                mine = next(line.split() for line in lines if line.startswith(worker.id))
                assert mine[1:3] == [worker.endpoint, str(worker.pid)] and mine[-4:] == ["gpu", "1", "0", "3"]
                assert "unreachable" in next(line for line in lines if line.startswith("ghost"))
                obs.open("x")
                assert await busy == "x"
            worker.signal()
            assert await worker.wait() == 0
    finally:
        await namespace.withdraw(ghost)


async def test_empty_namespace_and_bad_discovery() -> None:
    assert await workers_cli("--discovery", "local:nobody") == (0, "no workers in local:nobody\n", "")
    code, _, err = await workers_cli("--discovery", "zeroconf")
    assert code == 2 and "unknown discovery 'zeroconf'" in err


async def test_workers_that_require_keys_are_asked_with_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    generate_directory(keys)
    async with CliWorker("--discovery", "local:listed", "--keys", str(keys)) as worker:
        code, out, _ = await workers_cli("--discovery", "local:listed", "--json", "--timeout", "1")
        assert code == 0
        (row,) = json.loads(out)
        assert (row["id"], row["reachable"], row["untrusted"]) == (worker.id, False, True)
        assert row["public_key"] == wool.Keys.load(keys).public
        code, table, _ = await workers_cli("--discovery", "local:listed")
        assert code == 0 and "untrusted" in table
        code, out, _ = await workers_cli("--discovery", "local:listed", "--json", "--keys", str(keys))
        assert code == 0
        (row,) = json.loads(out)
        assert (row["reachable"], row["calls"]) == (True, 0)
        worker.signal()
        assert await worker.wait() == 0
