"""A durable pool: workers started by hand outlive the programs that use them.

Start two workers in a namespace called "desk" (each serves until SIGTERM or Ctrl-C):

    python -m wool.worker --discovery local:desk &
    python -m wool.worker --discovery local:desk &

then run this script as often as you like; it spawns nothing and uses those workers:

    python examples/durable_pool.py
"""

import asyncio
import os
import sys

import wool


@wool.routine
async def where(i: int) -> str:
    return f"call {i} ran in worker pid {os.getpid()}"


async def main() -> None:
    async with wool.WorkerPool(discovery=wool.LocalDiscovery("desk")):
        try:
            for line in await asyncio.gather(*(where(i) for i in range(4))):
                print(line)
        except wool.NoWorkersAvailable:
            sys.exit("no workers in namespace 'desk': start some with `python -m wool.worker --discovery local:desk`")


asyncio.run(main())
