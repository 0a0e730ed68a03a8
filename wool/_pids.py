"""Whether a local process still exists, for pruning what dead processes left behind."""

from __future__ import annotations

import os


def process_exists(pid: int) -> bool:
    """True if process `pid` exists and is not a zombie (dead, waiting to be reaped: what it
    left behind may go). A process of another user exists too."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except OSError:  # PermissionError: it exists, it is just not ours
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:  # no /proc here, or it exited just now
        return True
    # The state follows the command name, which is in parentheses and may contain anything.
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"
