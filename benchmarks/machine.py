"""What the numbers were measured on: printed above the table and stored in the JSON, since a
ratio only means something next to the machine and versions that produced it."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import zmq

import wool

_ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _server_loop() -> str:
    """The event loop of wool's workers and of the baseline servers (both pick uvloop when
    installed, unless WOOL_UVLOOP=0); callers always run asyncio's own."""
    uvloop = _version("uvloop")
    if uvloop == "not installed" or os.environ.get("WOOL_UVLOOP", "1") == "0":
        return "asyncio"
    return f"uvloop {uvloop}"


def describe() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "msgpack": _version("msgpack"),
        "cloudpickle": _version("cloudpickle"),
        "server_event_loop": _server_loop(),
        "wool": getattr(wool, "__version__", "unknown"),
        "wool_commit": _git_commit(),
    }


def headline(m: dict[str, Any]) -> str:
    load = ", ".join(f"{x:g}" for x in m["load_average"])
    return (
        f"{m['cpus_usable']} of {m['cpu_count']} CPUs ({m['cpu_model']}), load {load}; "
        f"{m['python']}; pyzmq {m['pyzmq']} / libzmq {m['libzmq']}; servers on {m['server_event_loop']}; "
        f"wool {m['wool']} at {m['wool_commit'][:12]}" + (" (dirty)" if m["wool_commit"].endswith("+dirty") else "")
    )
