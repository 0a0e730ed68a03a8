"""Fan-out: one routine splits a job into chunks and dispatches them to its peers.

Run: python examples/fanout.py
"""

import asyncio

import wool


@wool.routine
async def sum_of_squares(lo: int, hi: int) -> int:
    return sum(i * i for i in range(lo, hi))


@wool.routine
async def total(n: int, chunks: int) -> int:
    # Runs on a worker; each nested call goes to a peer (possibly this worker itself).
    step = -(-n // chunks)
    async with asyncio.TaskGroup() as tg:
        parts = [tg.create_task(sum_of_squares(lo, min(lo + step, n))) for lo in range(0, n, step)]
    return sum(p.result() for p in parts)


async def main() -> None:
    async with wool.WorkerPool(size=2):
        result = await total(1_000_000, chunks=16)
        assert result == sum(i * i for i in range(1_000_000))
        print(result)


asyncio.run(main())
