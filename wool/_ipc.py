"""Whether an `ipc://` endpoint is private to this user.

A Unix socket is reached through the file system: connecting needs search permission on
every directory above it, and creating one needs write permission on its directory. So a
socket inside a directory that only this user can access (0700, owned by this user, with no
ancestor that another user could rename it out of) can be reached, and replaced, only by this
user and root. Linux's abstract sockets (`ipc://@name`) have no file and no permissions at
all: every local user can connect to them.
"""

from __future__ import annotations

import os
import stat

IPC_PATH_MAX = 107  # bytes in a Unix socket path (sun_path, less its terminating NUL)


def ipc_path(endpoint: str) -> str | None:
    """The file system path of an `ipc://` endpoint, else None."""
    return endpoint[len("ipc://") :] if endpoint.startswith("ipc://") else None


def private_directory_problem(directory: str) -> str | None:
    """None if only this user (and root) can create or reach sockets in `directory`, else
    what is wrong with it. Follows links to the real directory, then checks it and each
    directory above it without following links."""
    real = os.path.realpath(directory)
    me = os.getuid()
    try:
        info = os.lstat(real)
    except FileNotFoundError:
        return f"{directory} does not exist"
    except OSError as e:
        return f"cannot check {directory}: {e}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{real} is not a directory"
    if info.st_uid != me:
        return f"{real} belongs to uid {info.st_uid}, not to this user (uid {me})"
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return f"{real} is open to other users (mode {mode:04o}; 0700 keeps them out)"
    parent = os.path.dirname(real)
    while True:
        try:
            above = os.lstat(parent)
        except OSError as e:
            return f"cannot check {parent}: {e}"
        if above.st_uid not in (0, me):
            return f"{parent}, above {real}, belongs to uid {above.st_uid}, who could replace what is below it"
        if above.st_mode & 0o022 and not above.st_mode & stat.S_ISVTX:
            return f"{parent}, above {real}, is writable by other users, who could replace what is below it"
        if parent == os.path.dirname(parent):
            return None
        parent = os.path.dirname(parent)


def ipc_endpoint_problem(endpoint: str) -> str | None:
    """None if `endpoint` is an `ipc://` socket only this user (and root) can reach or bind,
    else why not. Not for tcp:// endpoints."""
    path = ipc_path(endpoint)
    if not path:
        return f"{endpoint} is not an ipc:// endpoint"
    if path.startswith("@"):
        return f"{endpoint} is an abstract socket, which every user of this machine can connect to"
    if path == "*" or path.endswith("/*"):
        return f"{endpoint} is a wildcard, whose directory cannot be checked"
    return private_directory_problem(os.path.dirname(os.path.abspath(path)))
