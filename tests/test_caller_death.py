"""A caller that dies leaves no orphan work behind on the workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import helpers
import pytest

pytestmark = pytest.mark.multiprocess

CALLER = """
import asyncio, sys, routines, wool

async def main():
    async with wool.WorkerPool(discovery=wool.LocalDiscovery("callers"), liveness=float(sys.argv[2])):
        await routines.block(sys.argv[1], "orphan")

asyncio.run(main())
"""


LIVENESS = 1.0
MARGIN = 2.0  # allowance on top of the bound, for scheduling on a loaded machine


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
async def test_calls_of_a_dead_or_frozen_caller_are_cancelled_within_the_liveness_bound(sig: signal.Signals) -> None:
    async with (
        helpers.Observer() as observer,
        helpers.CliWorker("--discovery", "local:callers", "--liveness", str(LIVENESS)) as worker,
    ):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(helpers.REPO), str(helpers.REPO / "tests")]))
        caller = subprocess.Popen([sys.executable, "-c", CALLER, observer.address, str(LIVENESS)], env=env)
        try:
            await observer.wait_matching(rf"running orphan {worker.pid}")
            caller.send_signal(sig)
            await observer.wait_for("cancelled orphan", timeout=LIVENESS + MARGIN)
        finally:
            if caller.poll() is None:
                caller.kill()
                caller.wait()
        worker.signal()
        assert await worker.wait() == 0
