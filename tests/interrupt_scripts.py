"""Scripts the interrupt tests run as real programs (a Ctrl-C reaches a whole process group,
a SIGKILL leaves no chance to clean up): each prints one line `ready PID TEMPLATE WORKER...`
once its pool serves, then blocks its worker with a routine."""

from __future__ import annotations

BLOCKING = """\
import asyncio
import os
import time

import wool


@wool.routine
async def block():
    time.sleep(60)  # blocks the worker's event loop: it answers nothing meanwhile


async def main():
    async with wool.WorkerPool(size={size}) as pool:
        template = pool._template.pid if pool._template is not None else 0
        print("ready", os.getpid(), template, *[w.pid for w in pool.processes], flush=True)
        await block()


asyncio.run(main())
"""


def blocking(size: int = 1) -> str:
    return BLOCKING.format(size=size)
