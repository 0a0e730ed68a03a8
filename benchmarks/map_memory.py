"""The caller's memory over a long `wool.map`: RSS before, and peak RSS after, N trivial
calls (default 1,000,000) on two spawned workers, with the default concurrency.

    python benchmarks/map_memory.py [N]
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import psutil  # noqa: E402

import wool  # noqa: E402
from benchmarks import routines  # noqa: E402

MIB = 2**20


async def main(n: int) -> None:
    async with wool.WorkerPool(size=2):
        async for _ in wool.map(lambda x: routines.add(x, 1), range(10_000)):  # warm up
            pass
        before = psutil.Process().memory_info().rss
        t = time.perf_counter()
        count = 0
        async for _ in wool.map(lambda x: routines.add(x, 1), range(n)):
            count += 1
        seconds = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"wool.map over {count:,} items: {seconds:.1f} s ({count / seconds:,.0f} items/s); caller RSS before "
        f"{before / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB: growth {(peak - before) / MIB:.1f} MiB"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
