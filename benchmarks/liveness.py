"""How long a caller takes to learn that a worker is gone: SIGKILL (its sockets close) and
SIGSTOP (silent: only heartbeats tell), for two liveness bounds.

    python benchmarks/liveness.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import wool  # noqa: E402
from wool.workers import survey  # noqa: E402


@wool.routine
async def sleepy() -> None:
    await asyncio.sleep(3600)


async def detection(sig: signal.Signals, liveness: float) -> float:
    """Seconds from the signal to the call's WorkerLost."""
    namespace = wool.LocalDiscovery(f"liveness-{os.getpid()}")
    async with wool.WorkerPool(size=1, liveness=liveness, discovery=namespace) as pool:
        call = asyncio.create_task(sleepy())
        while [r["calls"] for r in await survey(await namespace.workers(), 5.0)] != [1]:
            pass  # until the call runs on the worker
        pid = pool.processes[0].pid
        assert pid is not None
        start = time.perf_counter()
        os.kill(pid, sig)
        try:
            await call
        except wool.WorkerLost:
            return time.perf_counter() - start
        finally:
            if sig == signal.SIGSTOP:
                os.kill(pid, signal.SIGCONT)
    raise AssertionError("the call did not fail")


async def main(rounds: int) -> None:
    for sig in (signal.SIGKILL, signal.SIGSTOP):
        for liveness in (5.0, 1.0):
            times = [await detection(sig, liveness) for _ in range(rounds)]
            shown = ", ".join(f"{t * 1000:.0f} ms" for t in times)
            print(f"{sig.name:7} liveness {liveness:g} s: WorkerLost after {shown}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds))
