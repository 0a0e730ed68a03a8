"""Whether an `ipc://` endpoint is private to this user.

A Unix socket is reached through the file system: connecting needs search permission on
every directory above it, and creating one needs write permission on its directory. So a
socket inside a directory that only this user can access (0700, owned by this user, and
nothing on the way to it that another user could swap) can be reached, and replaced, only by
this user and root. Linux's abstract sockets (`ipc://@name`) have no file and no permissions at
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
    what is wrong with it. The real directory must be this user's and 0700; nothing on the
    way to it, as named or as resolved (links included), may belong to another user or be a
    directory others can write to without the sticky bit, since they could swap what lies
    below it. Checked without following links."""
    me = os.getuid()
    given = os.path.abspath(directory)
    real = os.path.realpath(given)
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
    found = replaceable_ancestor(given)
    return None if found is None else found[1]


def replaceable_ancestor(directory: str) -> tuple[str, str] | None:
    """None if no directory above `directory`, as named or as resolved (links included), could
    be replaced by another user; else that directory and what is wrong with it. Each must
    belong to this user or root and, if others can write to it, be sticky (as `/tmp` is):
    whoever can write to a directory without the sticky bit can rename what is in it away
    and put their own in its place. `directory` itself is the caller's to check. Checked
    without following links (`lstat`), from `directory` up to `/`."""
    me = os.getuid()
    given = os.path.abspath(directory)
    real = os.path.realpath(given)
    for path in dict.fromkeys([*_lineage(given), *_lineage(real)]):
        if path != real:
            problem = _replaceable(path, real, me)
            if problem is not None:
                return path, problem
    return None


def _lineage(path: str) -> list[str]:
    """`path` and every directory above it, up to the root."""
    paths = [path]
    while (parent := os.path.dirname(paths[-1])) != paths[-1]:
        paths.append(parent)
    return paths


def _replaceable(path: str, real: str, me: int) -> str | None:
    try:
        info = os.lstat(path)
    except OSError as e:
        return f"cannot check {path}: {e}"
    if info.st_uid not in (0, me):
        return f"{path}, on the way to {real}, belongs to uid {info.st_uid}, who could replace what is below it"
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode) and mode & 0o022 and not mode & stat.S_ISVTX:
        return (
            f"{path}, on the way to {real}, is writable by other users without the sticky bit (mode {mode:04o}), "
            "so they could rename what is below it away and put their own in its place"
        )
    return None


def ipc_endpoint_problem(endpoint: str) -> str | None:
    """None if `endpoint` is an `ipc://` socket only this user (and root) can reach or bind,
    else why not. Not for tcp:// endpoints."""
    path = ipc_path(endpoint)
    if not path:
        return f"{endpoint} is not an ipc:// endpoint"
    if path.startswith("@"):
        return f"{endpoint} is an abstract socket, which every user of this machine can connect to"
    if path == "*":
        return f"{endpoint} is a wildcard, whose directory ZeroMQ chooses and wool cannot check"
    return private_directory_problem(os.path.dirname(os.path.abspath(path)))


def ipc_connect_problem(endpoint: str) -> str | None:
    """None if a caller without keys may connect to the `ipc://` socket `endpoint`: its
    directory passes `ipc_endpoint_problem`, and what is at its path is nothing yet (the
    connection retries until a worker listens) or a socket of this user's. Checked without
    following links; else what is wrong."""
    problem = ipc_endpoint_problem(endpoint)
    if problem is not None:
        return problem
    path = os.path.abspath(endpoint[len("ipc://") :])
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot check {path}: {e}"
    if not stat.S_ISSOCK(info.st_mode):
        return f"{path} is not a socket"
    if info.st_uid != os.getuid():
        return f"the socket {path} belongs to uid {info.st_uid}, not to this user (uid {os.getuid()})"
    return None
