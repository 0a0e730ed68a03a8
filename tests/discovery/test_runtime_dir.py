"""The runtime directory and the registry in it, attacked by another local user: a planted
link, a squatted `/tmp/wool-$UID`, a `registry/` or registry file of another uid, a file
swapped for a link, and a forged entry. wool refuses each with an error naming the path and
the fix, follows no link, and changes the mode of nothing it did not create."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from other_user import OTHER_UID, as_other_user, mode, needs_root, shared_tmp

import wool
from wool.discovery import DiscoveryError, LocalDiscovery, WorkerInfo, runtime_dir

pytestmark = [needs_root(), pytest.mark.timeout(30)]

ME = os.getuid()
FIX = "WOOL_RUNTIME_DIR"


def entry(wid: str, endpoint: str = "tcp://127.0.0.1:5000") -> WorkerInfo:
    return WorkerInfo(wid, endpoint, os.getpid(), "", frozenset())


@pytest.fixture
def default_location(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A shared sticky temp root standing in for /tmp, with no override: wool picks
    `<root>/wool-$UID` as it would `/tmp/wool-$UID`."""
    with shared_tmp() as root:
        monkeypatch.delenv("WOOL_RUNTIME_DIR", raising=False)
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        monkeypatch.setattr(tempfile, "tempdir", str(root))
        yield root


def test_the_default_directory_is_created_private(default_location: Path) -> None:
    assert runtime_dir() == default_location / f"wool-{ME}"
    assert mode(default_location / f"wool-{ME}") == 0o700


def test_a_directory_squatted_by_another_user_is_refused_and_left_alone(default_location: Path) -> None:
    squatted = default_location / f"wool-{ME}"
    as_other_user(f"mkdir {squatted}")
    with pytest.raises(DiscoveryError, match=f"belongs to uid {OTHER_UID}") as refused:
        runtime_dir()
    assert str(squatted) in str(refused.value) and FIX in str(refused.value)
    assert (os.lstat(squatted).st_uid, mode(squatted)) == (OTHER_UID, 0o777)


def test_a_link_planted_at_the_default_location_is_not_followed(default_location: Path) -> None:
    """Another user links /tmp/wool-$UID to a shared 1777 directory: wool neither uses it
    nor makes it 0700 (which would lock everyone else out of it)."""
    with shared_tmp() as target:
        link = default_location / f"wool-{ME}"
        as_other_user(f"ln -s {target} {link}")
        with pytest.raises(DiscoveryError, match="symbolic link") as refused:
            runtime_dir()
        assert str(link) in str(refused.value) and FIX in str(refused.value)
        assert mode(target) == 0o1777 and list(target.iterdir()) == []


async def test_a_linked_runtime_directory_is_refused_and_its_target_unchanged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with shared_tmp() as target:
        monkeypatch.setenv("WOOL_RUNTIME_DIR", str(tmp_path / "link"))
        (tmp_path / "link").symlink_to(target)
        with pytest.raises(DiscoveryError, match="symbolic link"):
            await LocalDiscovery("desk").publish(entry("a"))
        with pytest.raises(DiscoveryError, match="symbolic link"):
            await LocalDiscovery("desk").workers()
        assert mode(target) == 0o1777 and list(target.iterdir()) == []


async def test_an_existing_directory_open_to_others_is_refused_not_chmodded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    monkeypatch.setenv("WOOL_RUNTIME_DIR", str(shared))
    with pytest.raises(DiscoveryError, match=r"accessible by other users \(mode 0755\)"):
        runtime_dir()
    assert mode(shared) == 0o755


async def test_a_registry_directory_of_another_user_is_refused(runtime_dir: Path) -> None:
    registry = runtime_dir / "registry"
    registry.mkdir(mode=0o700)
    os.chown(registry, OTHER_UID, OTHER_UID)
    try:
        with pytest.raises(DiscoveryError, match=f"{registry}: it belongs to uid {OTHER_UID}"):
            await LocalDiscovery("desk").publish(entry("a"))
        with pytest.raises(DiscoveryError, match=f"belongs to uid {OTHER_UID}"):
            await LocalDiscovery("desk").workers()
    finally:
        registry.rmdir()


async def test_a_registry_file_replaced_by_a_link_is_refused(runtime_dir: Path, tmp_path: Path) -> None:
    d = LocalDiscovery("desk")
    await d.publish(entry("a"))
    path = runtime_dir / "registry" / "desk.json"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({"version": 1, "workers": {"evil": entry("evil").to_dict()}}))
    path.unlink()
    path.symlink_to(forged)
    try:
        with pytest.raises(DiscoveryError, match="desk.json: it is a symbolic link"):
            await d.workers()
        with pytest.raises(DiscoveryError, match="symbolic link"):
            await d.publish(entry("b"))
        with pytest.raises(DiscoveryError, match="symbolic link"):
            await anext(d.watch())
    finally:
        path.unlink()
    await d.withdraw(entry("a"))


async def test_a_registry_file_of_another_user_is_refused(runtime_dir: Path) -> None:
    d = LocalDiscovery("desk")
    await d.publish(entry("a"))
    path = runtime_dir / "registry" / "desk.json"
    os.chown(path, OTHER_UID, OTHER_UID)
    try:
        with pytest.raises(DiscoveryError, match=f"desk.json: it belongs to uid {OTHER_UID}"):
            await d.workers()
        with pytest.raises(DiscoveryError, match=f"belongs to uid {OTHER_UID}"):
            await d.withdraw(entry("a"))
    finally:
        os.chown(path, ME, ME)
    await d.withdraw(entry("a"))


@pytest.mark.multiprocess
async def test_a_forged_entry_written_by_another_user_is_refused(runtime_dir: Path) -> None:
    """Another user writes a registry naming its own endpoint (while the directories were
    open to it): a pool over that namespace refuses to open, and never connects there."""
    decoy = socket.create_server(("127.0.0.1", 0))
    decoy.setblocking(False)
    registry = runtime_dir / "registry"
    registry.mkdir(mode=0o700)
    path = registry / "desk.json"
    try:
        os.chmod(runtime_dir, 0o711)
        os.chmod(registry, 0o777)
        forged = entry("evil", f"tcp://127.0.0.1:{decoy.getsockname()[1]}").to_dict()
        as_other_user(f"cat > {path}", json.dumps({"version": 1, "workers": {"evil": forged}}).encode())
        os.chmod(registry, 0o700)
        os.chmod(runtime_dir, 0o700)
        assert os.lstat(path).st_uid == OTHER_UID
        with pytest.raises(DiscoveryError, match=f"belongs to uid {OTHER_UID}"):
            async with wool.WorkerPool(discovery=LocalDiscovery("desk")):
                pass
        with pytest.raises(BlockingIOError):
            decoy.accept()  # nobody ever connected to the forged endpoint
    finally:
        decoy.close()
        path.unlink(missing_ok=True)
        registry.rmdir()


def test_a_runtime_directory_below_a_parent_another_user_opened_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user made `/tmp/shared` 0777 without the sticky bit: they could rename
    `/tmp/shared/wool` away at any moment and put their own in its place. wool refuses it,
    naming that parent and the fix, and leaves nothing of its own there."""
    with shared_tmp() as root:
        parent = root / "shared"
        as_other_user(f"mkdir {parent}")
        assert (os.lstat(parent).st_uid, mode(parent)) == (OTHER_UID, 0o777)
        monkeypatch.setenv("WOOL_RUNTIME_DIR", str(parent / "wool"))
        with pytest.raises(DiscoveryError, match=f"belongs to uid {OTHER_UID}") as refused:
            runtime_dir()
        assert f"{parent}, on the way to" in str(refused.value) and FIX in str(refused.value)
        assert list(parent.iterdir()) == []


def test_a_root_owned_parent_writable_by_all_without_the_sticky_bit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with shared_tmp() as root:
        parent = root / "shared"
        parent.mkdir()
        os.chmod(parent, 0o777)
        monkeypatch.setenv("WOOL_RUNTIME_DIR", str(parent / "wool"))
        with pytest.raises(DiscoveryError, match=r"writable by other users without the sticky bit \(mode 0777\)") as refused:
            runtime_dir()
        assert f"chmod +t {parent}" in str(refused.value) and FIX in str(refused.value)
        os.chmod(parent, 0o1777)  # sticky, as /tmp is: nobody can rename what is not theirs
        assert runtime_dir() == parent / "wool"


@pytest.mark.multiprocess
async def test_a_pool_refuses_a_tmpdir_writable_by_all_without_the_sticky_bit(
    default_location: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default location, `$TMPDIR/wool-$UID`, in a `TMPDIR` that is world-writable but not
    sticky: the pool does not start (no worker, no socket there), and the error names it."""
    os.chmod(default_location, 0o777)
    monkeypatch.setenv("TMPDIR", str(default_location))  # as its workers see it too
    with pytest.raises(DiscoveryError, match=r"writable by other users without the sticky bit") as refused:
        async with wool.WorkerPool(size=1):
            pass
    assert str(default_location) in str(refused.value) and FIX in str(refused.value)
    assert list(default_location.iterdir()) == []
