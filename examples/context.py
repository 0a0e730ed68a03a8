"""Context variables that follow calls across the mesh, both ways.

A request id set by the caller is visible to the routine on a worker and to the nested
routines it calls on its peers; what the routines set comes back to the caller, as it would
from local coroutines. Concurrent requests never see each other's values.

    python examples/context.py
"""

import asyncio

import wool

REQUEST_ID = wool.ContextVar("request_id", namespace="example", default="-")
HOPS = wool.ContextVar("hops", namespace="example", default=())


@wool.routine
async def price(item: str) -> str:
    HOPS.set((*HOPS.get(), f"price({item})"))
    return f"[{REQUEST_ID.get()}] {item}: {len(item) * 1.5:.2f}"


@wool.routine
async def quote(items: list[str]) -> list[str]:
    HOPS.set((*HOPS.get(), "quote"))
    return [await price(item) for item in items]  # nested calls, on the worker's peers


async def request(request_id: str, item: str) -> str:
    REQUEST_ID.set(request_id)  # in this task's own copy of the context
    return await price(item)


async def main() -> None:
    async with wool.WorkerPool(size=2):
        REQUEST_ID.set("req-42")
        for line in await quote(["apple", "fig"]):
            print(line)
        print("hops:", " -> ".join(HOPS.get()))
        for line in await asyncio.gather(request("req-1", "kiwi"), request("req-2", "kiwi")):
            print(line)
        print("still", REQUEST_ID.get())


asyncio.run(main())
