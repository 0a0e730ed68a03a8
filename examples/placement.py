"""Placing calls by tags.

Workers carry tags (`wool.WorkerPool("gpu", ...)`, `python -m wool.worker --tag gpu`).
`@wool.routine(tags=...)` runs a routine only on workers that have all of them; a
`wool.options(tags=...)` block does the same for every call made in it, including the
nested calls those routines make. Two pools share one discovery namespace here, so the
inner one sees the workers of both.

    python examples/placement.py
"""

import asyncio
import os

import wool


@wool.routine(tags="gpu")
async def render(frame: int) -> int:
    return os.getpid()


@wool.routine
async def pid() -> int:
    return os.getpid()


@wool.routine
async def pipeline(frames: int) -> list[int]:
    return [await pid() for _ in range(frames)]  # nested calls: placed by the caller's options


@wool.routine(tags="tpu")
async def train() -> None: ...


async def main() -> None:
    here = wool.LocalDiscovery("placement-example")
    async with wool.WorkerPool("gpu", size=1, discovery=here), wool.WorkerPool(size=2, discovery=here) as pool:
        await pool.wait_for_workers(lambda workers: len(workers) == 3, timeout=30)
        label = {w.pid: "+".join(sorted(w.tags)) or "untagged" for w in pool.workers}

        def ran_on(pids: list[int]) -> str:
            return ", ".join(sorted({label[p] for p in pids}))

        print("render ran on:", ran_on([await render(i) for i in range(4)]))
        print("untagged calls ran on:", ran_on([await pid() for _ in range(9)]))
        with wool.options(tags="gpu"):
            print("nested calls under options(tags='gpu') ran on:", ran_on(await pipeline(4)))
        try:
            await train()
        except wool.NoWorkersAvailable as e:
            print("train:", e)


asyncio.run(main())
