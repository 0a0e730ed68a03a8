"""Acting as another local user, for tests that really attack from another uid (the tests
run as root). Commands run through `/bin/sh` with `subprocess`'s `user=`: no Python of
ours needs to be readable by that user."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

OTHER_UID = 54321  # no account has it: a uid only the kernel knows, like a fresh local user


def needs_root() -> pytest.MarkDecorator:
    return pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


def as_other_user(script: str, stdin: bytes = b"") -> None:
    """Run the shell `script` as `OTHER_UID` with umask 0 (what it creates is open to all)."""
    subprocess.run(
        ["/bin/sh", "-c", f"umask 0; {script}"],
        input=stdin,
        user=OTHER_UID,
        group=OTHER_UID,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        check=True,
        timeout=20,
    )


@contextlib.contextmanager
def shared_tmp() -> Iterator[Path]:
    """A world-writable sticky directory like /tmp, under /tmp (so every user can reach it),
    removed afterwards with whatever other users left in it."""
    path = Path(tempfile.mkdtemp(prefix="wool-shared-", dir="/tmp"))
    try:
        os.chmod(path, 0o1777)
        yield path
    finally:
        shutil.rmtree(path)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)
