"""Memory sizes as people write them, and a process's resident set size.

A worker's memory limit is checked from its RSS (`/proc/PID/statm`, read without following
links into anything but procfs): what the kernel's OOM killer and container limits count. On
a platform without procfs, `rss` returns None and limits are not enforced (said once, at
start-up, by whoever enforces them).
"""

from __future__ import annotations

import os
import re

# Above the limit between calls a worker recycles; above this multiple of it while calls run
# it is killed: the margin lets one call finish rather than kill on the first byte over.
HARD_FACTOR = 1.2
SAMPLE_INTERVAL = 0.1  # seconds between RSS samples: a leak of 1 GB/s overshoots 100 MB at most

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def parse_size(text: str) -> int:
    """Bytes in `text`: `2GiB`, `150MB`, `512M`, `1.5G`, `1000000`. Decimal units (kB, MB,
    GB) are powers of 1000, binary ones (KiB, MiB, GiB) of 1024. Raises `ValueError`."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: write bytes, or a number with a unit such as 512MB or 2GiB")
    return int(float(match.group(1)) * _UNITS[unit])


def check_memory_limit(limit: int | str | None, what: str = "memory_limit") -> int | None:
    """`limit` in bytes (a string is parsed by `parse_size`), or None for no limit."""
    if limit is None:
        return None
    if isinstance(limit, str):
        limit = parse_size(limit)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"{what} must be a number of bytes, a size such as '2GiB', or None; not {type(limit).__name__}")
    if limit < 1 << 20:
        raise ValueError(f"{what} must be at least 1 MiB (a Python process alone takes more), got {limit} bytes")
    return limit


def show_bytes(n: int) -> str:
    """`n` bytes for a message: `153.2 MB`."""
    for unit, size in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def rss(pid: int | None = None) -> int | None:
    """The resident set size of `pid` (this process by default) in bytes; None if it is gone
    or this platform has no procfs."""
    try:
        with open(f"/proc/{pid or 'self'}/statm", "rb") as f:
            fields = f.read(200).split()
        return int(fields[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None
