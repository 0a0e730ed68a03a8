"""Where a worker listens when it is given no endpoint: an `ipc://` socket of its own in the
runtime directory, so that only this user (and root) can call it.

The runtime directory is private (0700), and every socket lives in its `sockets/`
subdirectory, named after the worker's pid and incarnation: `sockets/PID-ID.sock`. A worker
removes its socket file when it stops; a pool removes those of the workers it had to kill;
and every worker, as it starts, removes the files of workers whose process is gone (killed
by hand), as registry readers prune their entries. A file whose named process is gone may
still be listened on: a worker restarted in place with `--bind` on a killed worker's
endpoint owns it now. So a file is removed only when nothing accepts a connection on it. Measured at the socket level on this
machine, a round trip over ipc took 66 µs against 76 µs over loopback TCP, and a 64 MiB echo
ran at 733 against 535 MB/s (medians of eight runs; `README.md`, "Security model").
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
from pathlib import Path

from .._ipc import IPC_PATH_MAX, ipc_path
from .._pids import process_exists
from ..discovery import private_dir, runtime_dir

_SOCKET = re.compile(r"(\d+)-[0-9a-f]{16}\.sock")


def sockets_dir() -> Path:
    """`RUNTIME_DIR/sockets`, created 0700; `DiscoveryError` if it is not this user's own
    private directory (checked as every runtime directory is, see `discovery._paths`)."""
    return private_dir(runtime_dir() / "sockets")


def private_endpoint(worker_id: str) -> str:
    """A fresh `ipc://` endpoint for worker incarnation `worker_id`. Raises `DiscoveryError`
    for an unusable runtime directory, `OSError` when the path would be too long."""
    directory = sockets_dir()
    prune_sockets(directory)
    path = directory / f"{os.getpid()}-{worker_id[:16]}.sock"
    size = len(os.fsencode(path))
    if size > IPC_PATH_MAX:
        raise OSError(
            errno.ENAMETOOLONG,
            f"cannot listen at {path}: a Unix socket path may have at most {IPC_PATH_MAX} bytes, this one has {size}. "
            f"Set WOOL_RUNTIME_DIR to a shorter directory (at most {IPC_PATH_MAX - size + len(os.fsencode(runtime_dir()))} "
            "bytes; it is created 0700)",
        )
    return f"ipc://{path}"


def _owner_pid(path: Path) -> int | None:
    match = _SOCKET.fullmatch(path.name)
    return int(match.group(1)) if match else None


def _listened_on(path: Path) -> bool:
    """Whether a process accepts connections on the Unix socket at `path` (a stale file
    refuses them; one that is not a socket cannot be connected to at all)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fsencode(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def remove_socket(endpoint: str) -> None:
    """Remove the socket file of a private endpoint (one `private_endpoint` made) whose
    process has stopped, or is this one stopping. Anything else is left alone."""
    path = ipc_path(endpoint)
    if path is None:
        return
    socket_path = Path(path)
    pid = _owner_pid(socket_path)
    if pid is None or socket_path.parent != runtime_dir() / "sockets":
        return
    if pid != os.getpid() and (process_exists(pid) or _listened_on(socket_path)):
        return
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()


def prune_sockets(directory: Path) -> None:
    """Remove the socket files left by workers that were killed (best effort)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        pid = _owner_pid(Path(name))
        if pid is not None and pid != os.getpid() and not process_exists(pid) and not _listened_on(directory / name):
            with contextlib.suppress(OSError):
                (directory / name).unlink()
