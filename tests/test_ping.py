"""`python -m wool.ping`, the readiness probe: 0 when a worker answers (with the keys it
requires), 1 when none does or it refuses these keys, 2 for a bad command line."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from helpers import REPO, CliWorker

from wool._keys import generate_directory

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]


async def ping(*args: str) -> tuple[int, str]:
    """Exit status and output (stdout, then stderr) of `python -m wool.ping ARGS`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wool.ping",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


def closed_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


async def test_ping_answers_only_for_a_worker_that_trusts_these_keys(tmp_path: Path) -> None:
    generate_directory(tmp_path / "mine")
    generate_directory(tmp_path / "other")
    async with CliWorker("--keys", str(tmp_path / "mine"), "--discovery", f"static:{closed_endpoint()}") as worker:
        code, out = await ping(worker.endpoint, "--keys", str(tmp_path / "mine"))
        assert (code, out.strip()) == (0, f"worker {worker.id} answers at {worker.endpoint}")
        code, out = await ping(worker.endpoint, "--keys", str(tmp_path / "other"), "--timeout", "1")
        assert code == 1 and "no worker answered" in out
    code, out = await ping(closed_endpoint(), "--timeout", "0.5")
    assert code == 1 and "no worker answered" in out


@pytest.mark.parametrize(
    "args, problem",
    [
        (["tcp://0.0.0.0:7001"], "wildcard"),
        (["tcp://127.0.0.1:7001", "--timeout", "0"], "positive"),
        (["x", "--keys", "/nonexistent"], "--keys"),
    ],
)
async def test_bad_command_line_exits_2(args: list[str], problem: str) -> None:
    code, out = await ping(*args)
    assert code == 2 and problem in out
