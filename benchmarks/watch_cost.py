"""What watching a static list of endpoints costs a process while nothing changes: its open
descriptors and its CPU per second of idle, against N listed workers.

    python benchmarks/watch_cost.py [--quick] [--sizes 4,16,64] [--window 30] [--recheck SECONDS] [--keys]

For each N, spawns `WorkerPool(size=N)` (idle workers on private ipc:// sockets), then a
separate watcher process running `StaticDiscovery(endpoints).watch()` with its defaults (or
the given `recheck_interval`: 1 asks every worker every second over a fresh connection, the
cost of short-lived probes without a longer recheck). Once the watcher has reported every
worker "added" and settled, its CPU time over the idle window (all its threads'
`/proc/PID/task/TID/schedstat`, one core = 100 %) and its descriptors (all, and sockets) are
read, and the CPU the N workers spent in the same window (answering the probes, and their own
idle upkeep). The window should span a recheck interval (30 s by default) to count the
rechecks. `--keys`: the workers and the watcher share a CURVE key directory, so every
question pays a CURVE handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import wool  # noqa: E402
from benchmarks.rss import cpu_seconds  # noqa: E402
from wool._keys import generate_directory  # noqa: E402

WATCHER = """
import asyncio, sys
import wool

async def main():
    recheck, keys, *endpoints = sys.argv[1:]
    options = {"recheck_interval": float(recheck)} if recheck else {}
    if keys:
        options["keys"] = keys
    seen = set()
    async for event in wool.StaticDiscovery(endpoints, **options).watch():
        if event.kind == "added":
            seen.add(event.worker.id)
        else:
            seen.discard(event.worker.id)
        print(event.kind, len(seen), flush=True)

asyncio.run(main())
"""


def _descriptors(pid: int) -> tuple[int, int]:
    """(all open descriptors, sockets among them) of `pid`."""
    fd_dir = f"/proc/{pid}/fd"
    links = []
    for name in os.listdir(fd_dir):
        try:
            links.append(os.readlink(os.path.join(fd_dir, name)))
        except OSError:
            continue
    return len(links), sum(link.startswith("socket:") for link in links)


async def measure(n: int, settle: float, window: float, recheck: float | None, keys: str | None) -> dict[str, float]:
    async with wool.WorkerPool(size=n, keys=keys) as pool:
        endpoints = [w.endpoint for w in pool.workers]
        pids = [w.pid for w in pool.processes if w.pid is not None]
        watcher = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WATCHER,
            "" if recheck is None else str(recheck),
            keys or "",
            *endpoints,
            stdout=asyncio.subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert watcher.stdout is not None
        try:
            t0 = time.perf_counter()
            while True:
                line = (await asyncio.wait_for(watcher.stdout.readline(), 60)).decode().split()
                if not line:
                    raise RuntimeError("the watcher exited")
                if int(line[1]) == n:
                    break
            found = time.perf_counter() - t0
            await asyncio.sleep(settle)
            before = cpu_seconds(watcher.pid)
            workers_before = sum(cpu_seconds(pid) for pid in pids)
            await asyncio.sleep(window)
            cpu = cpu_seconds(watcher.pid) - before
            workers_cpu = sum(cpu_seconds(pid) for pid in pids) - workers_before
            fds, sockets = _descriptors(watcher.pid)
        finally:
            watcher.terminate()
            await watcher.wait()
    return {
        "found_s": found,
        "idle_cpu_pct": 100 * cpu / window,
        "fds": fds,
        "sockets": sockets,
        "workers_cpu_pct": 100 * workers_cpu / window,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 4 and 16, a 3 s window")
    parser.add_argument("--sizes", default="4,16,64")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--recheck", type=float, default=None, help="the watch's recheck_interval (default: its own)")
    parser.add_argument("--keys", action="store_true", help="CURVE keys on both sides")
    args = parser.parse_args()
    sizes = [4, 16] if args.quick else [int(s) for s in args.sizes.split(",")]
    window = 3.0 if args.quick else args.window
    with tempfile.TemporaryDirectory(prefix="watch-cost-") as tmp:
        key_dir = None
        if args.keys:
            key_dir = os.path.join(tmp, "keys")
            generate_directory(key_dir)
        print(f"{'N':>4} {'found s':>8} {'watcher CPU %':>14} {'fds':>5} {'sockets':>8} {'workers CPU %':>14}")
        for n in sizes:
            r = await measure(n, settle=2.0, window=window, recheck=args.recheck, keys=key_dir)
            print(
                f"{n:>4} {r['found_s']:>8.2f} {r['idle_cpu_pct']:>14.2f} {r['fds']:>5} {r['sockets']:>8} {r['workers_cpu_pct']:>14.2f}",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
