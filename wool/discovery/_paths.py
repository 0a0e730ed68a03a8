"""Where wool keeps per-user runtime files (registry files, ipc sockets).

The directory is private to the user (0700), because anything that can reach a worker's
socket can run code in it."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ._interface import DiscoveryError


def runtime_dir() -> Path:
    """The per-user runtime directory, created 0700 if missing.

    `WOOL_RUNTIME_DIR` overrides it (tests use this to isolate themselves)."""
    override = os.environ.get("WOOL_RUNTIME_DIR")
    if override:
        path = Path(override)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "wool"
    else:
        path = Path(tempfile.gettempdir()) / f"wool-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as e:
        raise DiscoveryError(f"cannot create wool runtime directory {path}: {e}") from e
    if info.st_uid != os.getuid():
        raise DiscoveryError(f"wool runtime directory {path} belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        try:
            path.chmod(0o700)
        except OSError as e:
            raise DiscoveryError(f"wool runtime directory {path} is not private: {e}") from e
    return path
