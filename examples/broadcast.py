"""Broadcast: run a routine once on every worker, here to refresh each worker's cache (kept in
its lifespan's state), and see every worker's answer, failures included.

    python examples/broadcast.py
"""

import asyncio
import contextlib
import os

import wool


@contextlib.asynccontextmanager
async def cache():
    yield {"version": 0}


@wool.routine
async def reload(version: int) -> int:
    wool.state()["version"] = version
    return version


@wool.routine
async def version() -> int:
    return wool.state()["version"]


@wool.routine
async def check(bad_pid: int) -> str:
    if os.getpid() == bad_pid:
        raise RuntimeError("disk full")
    return "ok"


async def main():
    async with wool.WorkerPool(size=3, lifespan=cache) as pool:
        reloaded = await pool.broadcast(reload, 7)
        print(f"reloaded on {len(reloaded)} workers, keyed by worker id: {set(reloaded) == {w.id for w in pool.workers}}")
        versions = await pool.broadcast(version)
        print("versions now:", sorted(versions.values()))
        checked = await pool.broadcast(check, pool.workers[0].pid)
        print("checks:", sorted(repr(result) for result in checked.values()))


asyncio.run(main())
