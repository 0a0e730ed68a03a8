"""What the processes in a comparison hold: resident memory in MB (10^6 bytes), and CPU time.

Peak RSS is the kernel's high-water mark (`VmHWM`). Writing "5" to `/proc/PID/clear_refs`
resets it to the current RSS (Linux >= 4.0, own processes), which is what lets one process
report the peak of each repetition rather than of its whole life; `reset_peak` says whether
that worked, and the report says when it did not.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import psutil

MB = 1_000_000


def rss_mb(pid: int) -> float:
    rss: int = psutil.Process(pid).memory_info().rss
    return rss / MB


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    raise OSError(f"no VmHWM for pid {pid}")


def reset_peak(pids: Iterable[int]) -> bool:
    ok = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def cpu_seconds(pid: int) -> float:
    """Time all of `pid`'s threads (its event loop, and libzmq's I/O thread, which sends the
    heartbeats) have spent on a CPU, in nanosecond resolution (`/proc/PID/task/TID/schedstat`):
    `/proc/PID/schedstat` alone counts only the main thread, and the 10 ms clock ticks of
    `cpu_times` round an idle process's second to zero. A thread that just ended is skipped."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            continue
    return total / 1e9
