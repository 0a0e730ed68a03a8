"""What unauthenticated peers cost a keyed worker on TCP, and what trusted calls pay meanwhile.

    python benchmarks/preauth_memory.py [--peers 32] [--seconds 10] [--calls 300] [--flood] [--wool-path DIR]

Starts `python -m wool.worker --keys DIR --bind tcp://127.0.0.1:0`, connects a trusted pool,
and times `--calls` sequential calls of `add` while idle. Then an attacker process opens
`--peers` connections that each greet the worker as a CURVE client and, instead of HELLO,
send a frame of 128 MiB - 1 bytes (the default max message size allows it) and hold the
connection until the worker hangs up; with `--flood`, each reconnects at once whenever the
worker hangs up, for `--seconds` (on this 2-core machine the attacker then takes most of
both cores: what calls pay then is mostly the machine's); meanwhile the same calls are timed again and
the worker's RSS is read from /proc every 10 ms. Prints one JSON object: RSS before, the
largest RSS sampled and the kernel's high-water mark (`VmHWM`) during the attack, latency
percentiles idle and under attack, and how many bytes the attacker got sent.
`--wool-path DIR` runs the worker from another checkout (the one before a change, say).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import wool  # noqa: E402
from benchmarks import routines  # noqa: E402
from benchmarks.rss import peak_rss_mb, reset_peak, rss_mb  # noqa: E402
from wool._keys import generate_directory  # noqa: E402

NAME = "preauth-bench"
# ZMTP 3.0 greeting of a CURVE client, then a long command frame of 128 MiB - 1 bytes.
GREETING = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 0]) + b"CURVE".ljust(20, b"\x00") + b"\x00" + bytes(31)
FRAME = (128 << 20) - 1
CLAIM = bytes([0x06]) + FRAME.to_bytes(8, "big")


def attack(port: int, peers: int, seconds: float, flood: bool) -> None:
    """The attacker (its own process): `peers` threads, each sending frames until the end."""
    sent = [0] * peers
    end = time.monotonic() + seconds
    chunk = bytes(1 << 20)

    def peer(i: int) -> None:
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.settimeout(max(0.01, end - time.monotonic()))
                    s.sendall(GREETING + CLAIM)
                    left = FRAME
                    while left and time.monotonic() < end:
                        n = s.send(chunk[: min(left, len(chunk))])
                        left -= n
                        sent[i] += n
                    while time.monotonic() < end and s.recv(4096):  # hold it until hung up on
                        pass
            except OSError:
                pass
            if not flood:
                return

    threads = [threading.Thread(target=peer, args=(i,)) for i in range(peers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"sent_mb": sum(sent) / 1e6}), flush=True)


async def timed_calls(n: int) -> list[float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        await routines.add(i, 1)
        times.append((time.perf_counter() - start) * 1000)
    return times


def percentiles(ms: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50_ms": round(qs[49], 3), "p99_ms": round(qs[98], 3), "max_ms": round(max(ms), 3)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peers", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--flood", action="store_true")
    parser.add_argument("--wool-path", default=None)
    parser.add_argument("--attack", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        attack(int(args.attack[0]), int(args.attack[1]), float(args.attack[2]), args.attack[3] == "flood")
        return
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys")
        generate_directory(keys)
        env = dict(os.environ, WOOL_RUNTIME_DIR=os.path.join(tmp, "run"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (args.wool_path, repo) if p)
        os.environ["WOOL_RUNTIME_DIR"] = env["WOOL_RUNTIME_DIR"]
        cmd = [sys.executable, "-m", "wool.worker", "--discovery", f"local:{NAME}", "--keys", keys, "--bind", "tcp://127.0.0.1:0"]
        worker = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=tmp)
        try:
            assert worker.stdout is not None
            line = worker.stdout.readline().decode()
            match = re.match(r"wool worker (\w+) listening on (\S+) \(pid (\d+)\)", line)
            assert match, line
            port = int(match.group(2).rsplit(":", 1)[1])
            async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME), keys=keys) as pool:
                await pool.wait_for_workers(timeout=20)
                await timed_calls(50)  # warm up
                before = rss_mb(worker.pid)
                idle = await timed_calls(args.calls)
                reset_peak([worker.pid])
                attacker = subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--attack",
                        str(port),
                        str(args.peers),
                        str(args.seconds),
                        "flood" if args.flood else "hold",
                    ],
                    stdout=subprocess.PIPE,
                )
                sampled = [before]
                stop = threading.Event()

                def sample() -> None:
                    while not stop.wait(0.01):
                        try:
                            sampled.append(rss_mb(worker.pid))
                        except Exception:
                            return

                sampler = threading.Thread(target=sample)
                sampler.start()
                await asyncio.sleep(min(1.0, args.seconds / 4))  # the attack under way
                loaded: list[float] = []
                end = time.monotonic() + args.seconds * 0.6
                while time.monotonic() < end:
                    loaded += await timed_calls(args.calls // 10)
                stop.set()
                sampler.join()
                out, _ = attacker.communicate(timeout=args.seconds + 30)
                peak = peak_rss_mb(worker.pid)
            print(
                json.dumps(
                    {
                        "peers": args.peers,
                        "flood": args.flood,
                        "worker_from": args.wool_path or repo,
                        "rss_before_mb": round(before, 1),
                        "rss_max_sampled_mb": round(max(sampled), 1),
                        "rss_peak_mb": round(peak, 1),
                        "idle": percentiles(idle),
                        "attacked": percentiles(loaded),
                        "attack": json.loads(out.decode().strip().splitlines()[-1]),
                    }
                )
            )
        finally:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


if __name__ == "__main__":
    asyncio.run(main())
