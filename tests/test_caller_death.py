"""A caller that dies leaves no orphan work behind on the workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import helpers

pytestmark = pytest.mark.multiprocess

CALLER = """
import asyncio, sys, routines, wool

async def main():
    async with wool.WorkerPool(discovery=wool.LocalDiscovery("callers")):
        await routines.block(sys.argv[1], "orphan")

asyncio.run(main())
"""


async def test_calls_of_a_killed_caller_are_cancelled_on_the_worker() -> None:
    async with helpers.Observer() as observer, helpers.CliWorker("--discovery", "local:callers") as worker:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(helpers.REPO), str(helpers.REPO / "tests")]))
        caller = subprocess.Popen([sys.executable, "-c", CALLER, observer.address], env=env)
        try:
            await observer.wait_matching(rf"running orphan {worker.pid}")
            caller.send_signal(signal.SIGKILL)
            caller.wait()
            await observer.wait_for("cancelled orphan", timeout=15)
        finally:
            if caller.poll() is None:
                caller.kill()
                caller.wait()
        worker.signal()
        assert await worker.wait() == 0
