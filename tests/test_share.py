"""`wool.share`: a value serialized once, mapped by workers on this host without a copy."""

from __future__ import annotations

import base64
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import share_routines as r
from other_user import as_other_user, needs_root

import wool
from wool import sharing

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]
MiB = 1 << 20


def test_handle_is_small_and_the_value_comes_back_here() -> None:
    a = np.arange(4 * MiB // 8, dtype=np.float64)
    with wool.share(a) as handle:
        assert len(pickle.dumps(handle)) < 600
        again = pickle.loads(pickle.dumps(handle))
        value = again.get_blocking()
        assert np.array_equal(value, a) and not value.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            value[0] = 1.0
        assert oct(os.stat(handle.path).st_mode & 0o777) == "0o600"
    assert not handle.path.exists()
    with pytest.raises(wool.SharedReleased, match=r"at the end of its `with` block at .*test_share.py:\d+"):
        handle.get_blocking()


def test_unpicklable_value_is_a_serialization_error() -> None:
    with pytest.raises(wool.SerializationError, match="could not be pickled"):
        wool.share(x for x in ())  # a generator cannot be pickled


async def test_zero_copy_on_one_worker() -> None:
    a = np.random.default_rng(1).random(64 * MiB // 8)
    async with wool.WorkerPool(size=1):
        handle = wool.share(a)
        first = await r.inspect_view(handle)
        second = await r.inspect_view(handle)
    assert first["sum"] == second["sum"] == pytest.approx(float(a.sum()))
    assert first["writeable"] is False
    assert second["shares_previous"] is True, "the second call's array is not a view of the same memory"
    # Summing touches every page of the mapping, which is shared file memory: the worker's own
    # (anonymous) memory grows by far less than the array.
    assert first["anon_after"] - first["anon_before"] < a.nbytes // 4
    assert not handle.path.exists(), "the pool's close did not release what was shared in it"


async def test_handle_in_a_container_and_nested_calls() -> None:
    a = np.ones(MiB // 8)
    async with wool.WorkerPool(size=1):
        with wool.share(a) as handle:
            assert await r.total_in_box({"array": handle}) == a.size
            # The routine passes the value it got on to a nested call: the handle travels again,
            # and the nested call gets this worker's cached object, not a copy.
            assert await r.outer(handle) is True
            assert await r.total_in_thread({"array": handle}) == a.size
            assert [x async for x in r.running_totals(handle, 4)] == [a.size / 4] * 4  # a generator routine
            stats = await r.cache_stats()
    assert stats["loads"] == 1


async def test_released_handle_names_where() -> None:
    async with wool.WorkerPool(size=1):
        handle = wool.share(np.zeros(1000))
        assert await r.total(handle) == 0.0
        handle.release()
        handle.release()  # harmless
        with pytest.raises(wool.SharedReleased, match=r"by release\(\) at .*test_share.py:\d+"):
            await r.total(handle)


async def test_owner_death_is_shared_lost(runtime_dir: Path) -> None:
    script = (
        "import base64, pickle, sys, numpy as np, wool\n"
        "h = wool.share(np.arange(1000.0))\n"
        "print(base64.b64encode(pickle.dumps(h)).decode(), flush=True)\n"
        "sys.stdin.read()\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert owner.stdout is not None
        handle = pickle.loads(base64.b64decode(owner.stdout.readline()))
        async with wool.WorkerPool(size=1):
            assert await r.total(handle) == sum(range(1000))
            owner.kill()
            owner.wait(timeout=10)
            with pytest.raises(wool.SharedLost, match=f"pid {owner.pid}"):
                await r.total(handle)
        assert not handle.path.exists(), "the dead owner's memory was not freed"
    finally:
        owner.kill()
        owner.wait(timeout=10)


async def test_cache_limit_evicts_and_maps_again() -> None:
    a, b = np.ones(2 * MiB // 8), np.zeros(2 * MiB // 8)
    async with wool.WorkerPool(size=1, share_cache=3 * MiB):
        with wool.share(a) as ha, wool.share(b) as hb:
            for h in (ha, hb, ha, hb):
                await r.total(h)
            stats = await r.cache_stats()
    assert stats["loads"] == 4 and stats["evictions"] >= 3
    assert stats["bytes"] <= 3 * MiB


async def test_cache_large_enough_maps_once() -> None:
    a, b = np.ones(2 * MiB // 8), np.zeros(2 * MiB // 8)
    async with wool.WorkerPool(size=1, share_cache=8 * MiB):
        with wool.share(a) as ha, wool.share(b) as hb:
            for h in (ha, hb, ha, hb):
                await r.total(h)
            stats = await r.cache_stats()
    assert stats["loads"] == 2 and stats["evictions"] == 0


def test_share_cache_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="share_cache must not be negative"):
        wool.WorkerPool(size=1, share_cache=-1)
    with pytest.raises(TypeError, match="share_cache must be an int"):
        wool.WorkerPool(size=1, share_cache=1.5)  # type: ignore[arg-type]
    assert 0 < sharing.default_limit() <= 1 << 30


async def test_a_worker_shares_a_result_another_reads() -> None:
    async with wool.WorkerPool(size=2):
        handle = await r.share_range(100_000)
        assert isinstance(handle, wool.Shared) and handle.owner_pid != os.getpid()
        results = {await r.total(handle) for _ in range(4)}
        assert results == {float(sum(range(100_000)))}
        assert handle.get_blocking()[-1] == 99_999.0  # and the caller maps it too


@needs_root()
def test_another_user_cannot_open_shared_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Where values go outside tests: /dev/shm/wool-$UID when the runtime directory is on disk.
    monkeypatch.delenv("WOOL_RUNTIME_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with wool.share(np.arange(10_000.0)) as handle:
        path = handle.path
        assert path.exists()
        with pytest.raises(subprocess.CalledProcessError):
            as_other_user(f"cat {path} > /dev/null")
        with pytest.raises(subprocess.CalledProcessError):
            as_other_user(f"ls {path.parent} > /dev/null")
    assert not path.exists()


def test_a_planted_file_is_refused(tmp_path: Path) -> None:
    with wool.share(np.arange(10.0)) as handle:
        path = handle.path
        os.chmod(path, 0o644)
        sharing.cache.drop(handle.key)
        with pytest.raises(PermissionError, match="open to other users"):
            handle.get_blocking()
        os.unlink(path)
        os.symlink(tmp_path / "elsewhere", path)
        with pytest.raises(PermissionError, match="symbolic link"):
            handle.get_blocking()
        os.unlink(path)
