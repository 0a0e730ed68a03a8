"""Another user puts their own socket where a keyless pool's worker listens, and the pool's
next connection to that worker (an idle one reopened) must not trust it: it never sends the
impostor a call (its arguments), never unpickles its reply, and the call fails with a clear
wool error instead of hanging.

Two ways in. The rename-and-rebind attack: a directory above the runtime directory becomes
writable by the other user (the start-up check refuses such a parent, so here it changes
under a running pool), who renames the runtime directory away and rebuilds it with their own
socket under the worker's name; the caller's path check before connecting refuses it. And a
lost race: the socket at the worker's path is the impostor's although every check on the path
passes (root moved it there and made it ours, as a swap between the check and the connect
would leave it); then the kernel's word on who listens (the peer's uid) refuses it, after
the hello ping and before any call.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
import routines
from impostor import Impostor
from other_user import OTHER_UID, as_other_user, needs_root, shared_tmp

import wool
from wool._ipc import ipc_path

pytestmark = [needs_root(), pytest.mark.multiprocess, pytest.mark.timeout(60)]


def close_connections(pool: wool.WorkerPool) -> None:
    """What the idle sweep does to a connection that carried nothing for `idle_timeout`."""
    assert pool._mesh is not None
    for conn in pool._mesh.connections:
        pool._mesh._close(conn)


async def test_a_runtime_directory_renamed_away_and_rebuilt_by_another_user_gets_no_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with shared_tmp() as root:
        parent = root / "parent"
        parent.mkdir(mode=0o755)
        runtime, moved = parent / "wool", parent / "wool.old"
        monkeypatch.setenv("WOOL_RUNTIME_DIR", str(runtime))
        marker = root / "marker"
        async with wool.WorkerPool(size=1) as pool:
            (worker,) = pool.workers
            assert await routines.pid() == pool.processes[0].pid
            close_connections(pool)
            socket_path = Path(str(ipc_path(worker.endpoint)))
            os.chmod(parent, 0o777)
            try:
                async with Impostor(OTHER_UID, socket_path, worker.id, marker, rename=(runtime, moved)) as impostor:
                    assert os.lstat(socket_path).st_uid == OTHER_UID  # the worker's path is theirs now
                    with pytest.raises(wool.NoWorkersAvailable, match=f"belongs to uid {OTHER_UID}") as refused:
                        await asyncio.wait_for(routines.pid(), 30)
                    assert str(socket_path.parent) in str(refused.value)
            finally:
                shutil.rmtree(runtime, ignore_errors=True)
                moved.rename(runtime)
                os.chmod(parent, 0o755)
            assert impostor.received == []  # not even a connection: nothing sent at all
            assert not marker.exists()
            assert pool.processes[0].returncode is None  # the real worker is unharmed
        assert list(parent.iterdir()) == [runtime]


async def test_a_socket_swapped_in_past_the_path_checks_gets_only_the_hello(runtime_dir: Path) -> None:
    with shared_tmp() as root:
        marker = root / "marker"
        lair = root / "lair"
        as_other_user(f"mkdir {lair}")
        async with wool.WorkerPool(size=1) as pool:
            (worker,) = pool.workers
            assert await routines.pid() == pool.processes[0].pid
            close_connections(pool)
            socket_path = Path(str(ipc_path(worker.endpoint)))
            hidden = socket_path.with_name("hidden")
            async with Impostor(OTHER_UID, lair / "w.sock", worker.id, marker) as impostor:
                socket_path.rename(hidden)  # the real worker still listens on it, unnamed
                (lair / "w.sock").rename(socket_path)
                os.chown(socket_path, os.getuid(), os.getgid())  # every check on the path passes
                try:
                    with pytest.raises(wool.NoWorkersAvailable, match=f"runs as uid {OTHER_UID}"):
                        await asyncio.wait_for(routines.pid(), 30)
                finally:
                    socket_path.unlink()
                    hidden.rename(socket_path)
            # The impostor answered the hello with the real worker's id; it got nothing else.
            assert impostor.received == ["ping"]
            assert not marker.exists()
            assert pool.processes[0].returncode is None
