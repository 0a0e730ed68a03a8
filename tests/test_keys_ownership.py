"""`Keys.load` against another local user (uid 54321): a key directory or `trusted/` that
others may write, or that belongs to someone else, an `id.key` someone else owns, and links
in place of any of them are refused with an error naming the path and the fix; a key that
another user slipped into a world-writable `trusted/` never becomes trusted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from other_user import OTHER_UID, as_other_user, needs_root, shared_tmp

import wool
from wool._keys import generate_directory

pytestmark = [needs_root(), pytest.mark.timeout(30)]


@pytest.fixture
def key_dir() -> Iterator[Path]:
    """A key directory where another user could reach it (under a shared /tmp-like root)."""
    with shared_tmp() as root:
        generate_directory(root / "keys")
        yield root / "keys"


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_key_directory_others_can_write_is_refused(key_dir: Path, mode: int) -> None:
    os.chmod(key_dir, mode)
    with pytest.raises(ValueError, match=rf"{key_dir} is writable by other users \(mode 0{mode:o}\).*chmod go-w"):
        wool.Keys.load(key_dir)


def test_a_key_another_user_added_to_a_world_writable_trusted_directory_is_not_trusted(key_dir: Path) -> None:
    intruder = wool.Keys.generate()
    os.chmod(key_dir, 0o711)  # others may pass through, not write
    os.chmod(key_dir / "trusted", 0o777)
    as_other_user(f"cat > {key_dir}/trusted/intruder.pub", intruder.public.encode() + b"\n")
    with pytest.raises(ValueError, match=r"trusted is writable by other users \(mode 0777\)"):
        wool.Keys.load(key_dir)
    with pytest.raises(ValueError):
        wool.WorkerPool(size=1, keys=key_dir)
    os.chmod(key_dir / "trusted", 0o755)  # the owner closes it: the file is still another user's
    with pytest.raises(ValueError, match=rf"intruder.pub belongs to uid {OTHER_UID}"):
        wool.Keys.load(key_dir)


@pytest.mark.parametrize("target", [".", "trusted", "id.key"])
def test_a_key_directory_or_file_of_another_user_is_refused(key_dir: Path, target: str) -> None:
    path = key_dir / target
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(ValueError, match=rf"belongs to uid {OTHER_UID}, not to this user.*wool.keys generate"):
        wool.Keys.load(key_dir)


def test_links_are_not_followed(key_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(key_dir)
    with pytest.raises(ValueError, match="link is a symbolic link"):
        wool.Keys.load(tmp_path / "link")
    other = generate_directory(tmp_path / "other")
    (key_dir / "trusted" / "other.pub").symlink_to(tmp_path / "other" / "id.pub")
    with pytest.raises(ValueError, match="other.pub is a symbolic link"):
        wool.Keys.load(key_dir)
    (key_dir / "trusted" / "other.pub").unlink()
    os.rename(key_dir / "id.key", key_dir / "real.key")
    (key_dir / "id.key").symlink_to(tmp_path / "other" / "id.key")
    with pytest.raises(ValueError, match="id.key is a symbolic link"):
        wool.Keys.load(key_dir)
    (key_dir / "id.key").unlink()
    os.rename(key_dir / "real.key", key_dir / "id.key")
    assert other.public not in wool.Keys.load(key_dir).allowed  # loads again once the links are gone


def test_generating_into_a_shared_directory_is_refused_and_leaves_it_alone(tmp_path: Path) -> None:
    with shared_tmp() as shared:
        with pytest.raises(ValueError, match=r"writable by other users \(mode 1777\)"):
            generate_directory(shared)
        (tmp_path / "link").symlink_to(shared)
        with pytest.raises(ValueError, match="is a symbolic link"):
            generate_directory(tmp_path / "link")
        assert os.stat(shared).st_mode & 0o7777 == 0o1777 and list(shared.iterdir()) == []
