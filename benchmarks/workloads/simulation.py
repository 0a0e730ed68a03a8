"""A caller in a simulated mesh of N workers (N = 10, 100, 1,000): what it costs to follow a
namespace that size, and to follow it while it churns.

The workers are fakes (`benchmarks/fakemesh.py`): ROUTER sockets in one host process that
answer calls with the real codec, listed in a real registry. The caller is a separate process
(a `WorkerPool` over that registry), measured from outside: time until all N are in rotation,
its first call (one connection opened: connections are made on demand), then its RSS,
descriptors and CPU idle, and its CPU while the host makes RATE registry changes a second
(a worker leaving, then joining again), each of which the caller reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

from ..config import Config
from ..results import WorkloadResult, per_size
from ..rss import cpu_seconds

ROOT = Path(__file__).resolve().parents[2]


async def _line(proc: subprocess.Popen[str], timeout: float = 180) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)
    if not line:
        raise RuntimeError(f"{proc.args} exited with code {proc.wait()}")
    return line


def _start(role: str, namespace: str, n: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fakemesh", role, namespace, str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


async def _cpu_pct(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / seconds


async def _mesh(n: int, window: float, rate: float) -> dict[str, float]:
    namespace = f"sim-{uuid.uuid4().hex[:12]}"
    host = _start("host", namespace, n)
    caller: subprocess.Popen[str] | None = None
    try:
        assert (await _line(host)).strip() == "ready"
        caller = _start("caller", namespace, n)
        first = json.loads(await _line(caller))
        proc = psutil.Process(caller.pid)
        idle = await _cpu_pct(caller.pid, window)
        rss, fds = proc.memory_info().rss / 1e6, proc.num_fds()
        assert host.stdin is not None
        host.stdin.write(f"churn {rate:g} {window:g}\n")
        host.stdin.flush()
        churn = await _cpu_pct(caller.pid, window)
        churned = int((await _line(host)).split()[1])
    finally:
        for proc_ in (caller, host):
            if proc_ is not None and proc_.stdin is not None:
                proc_.stdin.close()
        for proc_ in (caller, host):
            if proc_ is not None:
                try:
                    proc_.wait(30)
                except subprocess.TimeoutExpired:
                    proc_.kill()
                    proc_.wait()
                if proc_.stdout is not None:
                    proc_.stdout.close()
    return {
        f"listed_s_n{n}": first["listed_s"],
        f"first_call_us_n{n}": first["first_call_us"],
        f"rss_mb_n{n}": rss,
        f"fds_n{n}": fds,
        f"idle_cpu_pct_n{n}": idle,
        f"churn_cpu_pct_n{n}": churn,
        f"churn_rate_n{n}": churned / window,
    }


async def simulation(cfg: Config) -> WorkloadResult:
    metrics = per_size(
        cfg.simulation_sizes,
        ("listed_s", "s", False),
        ("first_call_us", "us", False),
        ("rss_mb", "MB", False),
        ("fds", "fds", False),
        ("idle_cpu_pct", "% of a core", False),
        ("churn_cpu_pct", "% of a core", False),
        ("churn_rate", "changes/s", True),
    )
    samples: dict[str, list[float]] = {}
    for _ in range(cfg.simulation_reps):
        for n in cfg.simulation_sizes:
            for metric, value in (await _mesh(n, cfg.simulation_window, cfg.simulation_churn)).items():
                samples.setdefault(metric, []).append(value)
    return WorkloadResult(
        "simulation",
        f"a caller following a simulated mesh of N fake workers, N in {', '.join(map(str, cfg.simulation_sizes))}: "
        f"idle, and with {cfg.simulation_churn:g} registry changes a second",
        metrics=metrics,
        params={"sizes": list(cfg.simulation_sizes), "window_s": cfg.simulation_window, "churn_per_s": cfg.simulation_churn},
        samples={"wool": samples},
        notes=[
            "fake workers: ROUTER sockets in one host process, answering with the real codec (benchmarks/fakemesh.py)",
            "listed_s: pool entry until all N are in rotation; first_call_us: the first call, which opens its connection",
            "churn_rate: registry changes the host achieved per second (each rewrites the whole file)",
        ],
    )
