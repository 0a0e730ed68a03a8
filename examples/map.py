"""wool.map: a routine over many items, a bounded number at a time, lazily.

python examples/map.py
"""

import asyncio
import itertools

import wool


@wool.routine
async def square(x: int) -> int:
    return x * x


@wool.routine
async def lucky(x: int) -> int:
    if x == 13:
        raise ValueError(f"item {x} is unlucky")
    return x


async def main():
    async with wool.WorkerPool(size=2):
        total = 0
        async for y in wool.map(square, range(10_000), concurrency=32):
            total += y
        print("sum of squares below 10,000:", total)

        # An endless input: pulled only as results are consumed.
        firsts = []
        async with wool.map(square, itertools.count()) as results:
            async for y in results:
                firsts.append(y)
                if len(firsts) == 5:
                    break  # the calls still in flight are cancelled
        print("first five squares:", firsts)

        done = set()
        async for x in wool.map(square, [3, 1, 2], ordered=False):
            done.add(x)
        print("in completion order, all of:", sorted(done))

        try:
            async for _ in wool.map(lucky, range(100), concurrency=8):
                pass
        except ValueError as e:
            print("stopped:", e)


asyncio.run(main())
