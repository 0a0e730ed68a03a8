"""Where wool keeps per-user runtime files (registry files, ipc sockets), and how it opens them.

The directory is private to the user (0700), because anything that can reach a worker's
socket can run code in it, and anything that can write a registry file can send this user's
callers to a worker of its choosing.

Theory of operation. Nothing in the runtime directory is trusted by its path alone: another
user may have created it first (`/tmp/wool-$UID` in a shared `/tmp`), or planted a symbolic
link there or in its place. So every directory and file is opened without following links
(`O_NOFOLLOW`) and checked on the opened descriptor (`fstat`): a directory must be ours and
closed to group and others, a file ours and writable only by us. wool changes the mode of a
directory only when it has just created it itself (to undo a restrictive umask): tightening
a directory someone else prepared could lock every other user out of it (a planted link to
a shared 1777 directory), so a violation is an error that says how to fix it instead.

A private directory is only as private as its parents: whoever can write to a parent
without the sticky bit (a `/tmp/shared` made 0777 by another user, a `TMPDIR` that is
world-writable but not sticky) can rename the directory away at any moment and put one of
their own, with their own sockets, in its place. So every directory above it, as named and
as resolved, must belong to this user or root and be closed to others' writes unless it is
sticky (`_ipc.replaceable_ancestor`, the same check `--bind ipc://` gets).

Once the runtime directory passes, no other user can add, rename or replace anything inside
it (it is ours and 0700, and nothing above it is theirs to rename), so paths below it are
safe to use between check and use; the checks below it catch what was put there before (or
by root), not races.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from .._info import DiscoveryError
from .._ipc import replaceable_ancestor

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _fix(path: Path) -> str:
    return f"remove {path} if you do not need it, or set WOOL_RUNTIME_DIR to a private directory (yours, mode 0700)"


def _refuse(path: Path, problem: str) -> DiscoveryError:
    return DiscoveryError(f"wool will not use {path}: {problem}; {_fix(path)}")


def _describe_unopenable(path: Path, error: OSError) -> str:
    """Why `path` could not be opened as a directory without following links."""
    try:
        info = os.lstat(path)
    except OSError:
        return str(error)
    if stat.S_ISLNK(info.st_mode):
        return f"it is a symbolic link (to {os.readlink(path)!r}), and wool does not follow links here"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory"
    return str(error)


def check_owner(path: Path, info: os.stat_result, *, private: int) -> None:
    """Raise `DiscoveryError` unless `info` (of `path`, from `fstat`) belongs to this user and
    has none of the `private` mode bits (0o077: not accessible to others; 0o022: not
    writable by them)."""
    if info.st_uid != os.getuid():
        raise _refuse(path, f"it belongs to uid {info.st_uid}, not to this user (uid {os.getuid()})")
    mode = stat.S_IMODE(info.st_mode)
    if mode & private:
        what = "accessible" if private & 0o044 else "writable"
        raise _refuse(
            path, f"it is {what} by other users (mode {mode:04o}), and wool only changes the mode of directories it created"
        )


def private_dir(path: Path, *, parents: bool = False) -> Path:
    """`path`, a directory of this user's that no other user can access, created 0700 if
    missing (with its missing parents if `parents`). Raises `DiscoveryError` if it cannot be
    created, or if what is there is a link, not a directory, another user's, or open to
    others (and left as it is)."""
    created = False
    try:
        os.mkdir(path, 0o700)
        created = True
    except FileExistsError:
        pass
    except FileNotFoundError:
        if not parents:
            raise DiscoveryError(f"cannot create wool runtime directory {path}: its parent does not exist") from None
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.mkdir(path, 0o700)
            created = True
        except FileExistsError:
            pass
        except OSError as e:
            raise DiscoveryError(f"cannot create wool runtime directory {path}: {e}") from e
    except OSError as e:
        raise DiscoveryError(f"cannot create wool runtime directory {path}: {e}") from e
    try:
        fd = os.open(path, _OPEN_DIR)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(path, _describe_unopenable(path, e)) from None
        raise DiscoveryError(f"cannot open wool runtime directory {path}: {e}") from e
    try:
        info = os.fstat(fd)
        if created and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)  # ours, just made: only a umask made it differ
            info = os.fstat(fd)
        check_owner(path, info, private=0o077)
    finally:
        os.close(fd)
    _check_ancestors(path, created)
    return path


def _check_ancestors(path: Path, created: bool) -> None:
    """Raise `DiscoveryError` naming the first directory above `path` that another user
    could rename `path` out of (see the module docstring); a `path` just created there is
    removed again."""
    found = replaceable_ancestor(str(path))
    if found is None:
        return
    if created:
        with contextlib.suppress(OSError):
            os.rmdir(path)
    ancestor, problem = found
    raise DiscoveryError(
        f"wool will not use {path}: {problem}; make {ancestor} writable only by its owner, or sticky as /tmp is "
        f"(chmod +t {ancestor}), or set WOOL_RUNTIME_DIR to a directory only you and root can write above"
    )


def open_file(path: Path, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """A descriptor of the regular file at `path`, opened with `flags` without following a
    link, and checked: ours, and writable by nobody else. Raises `FileNotFoundError` if it
    is missing (and `flags` has no `O_CREAT`), `DiscoveryError` for anything else wrong."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse(
                path, f"it is a symbolic link (to {os.readlink(path)!r}), and wool does not follow links here"
            ) from None
        raise DiscoveryError(f"cannot open {path}: {e}") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, "it is not a regular file")
        check_owner(path, info, private=0o022)
    except BaseException:
        os.close(fd)
        raise
    return fd


def runtime_dir() -> Path:
    """The per-user runtime directory, created 0700 if missing and checked (see the module
    docstring); raises `DiscoveryError` naming the problem and its fix.

    `WOOL_RUNTIME_DIR` overrides it (tests use this to isolate themselves); else
    `$XDG_RUNTIME_DIR/wool`; else `wool-$UID` in the temporary directory."""
    override = os.environ.get("WOOL_RUNTIME_DIR")
    if override:
        return private_dir(Path(override), parents=True)
    if os.environ.get("XDG_RUNTIME_DIR"):
        return private_dir(Path(os.environ["XDG_RUNTIME_DIR"]) / "wool", parents=True)
    return private_dir(Path(tempfile.gettempdir()) / f"wool-{os.getuid()}")
