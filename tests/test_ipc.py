"""Which ipc:// endpoints are private to this user: the socket's directory is this user's and
0700, and nothing on the way to it, links included, could be swapped by another user."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from attack import unused_uid

from wool._ipc import ipc_endpoint_problem, private_directory_problem

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")


def directory(path: Path, mode: int = 0o700, uid: int | None = None) -> Path:
    path.mkdir()
    path.chmod(mode)  # whatever the umask
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def test_a_0700_directory_of_this_user_is_private(tmp_path: Path) -> None:
    private = directory(tmp_path / "private")
    assert private_directory_problem(str(private)) is None
    assert ipc_endpoint_problem(f"ipc://{private}/w.sock") is None


def test_under_a_sticky_world_writable_directory_is_still_private(tmp_path: Path) -> None:
    shared = directory(tmp_path / "shared", 0o1777)
    assert private_directory_problem(str(directory(shared / "mine"))) is None


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o711, 0o770])
def test_a_directory_open_to_others_is_not(tmp_path: Path, mode: int) -> None:
    open_ = directory(tmp_path / "open", mode)
    assert private_directory_problem(str(open_)) == f"{open_} is open to other users (mode {mode:04o}; 0700 keeps them out)"


def test_a_directory_of_another_user_is_not(tmp_path: Path) -> None:
    uid = unused_uid()
    theirs = directory(tmp_path / "theirs", uid=uid)
    assert private_directory_problem(str(theirs)) == f"{theirs} belongs to uid {uid}, not to this user (uid {os.getuid()})"


def test_below_a_directory_others_can_write_to_it_is_not(tmp_path: Path) -> None:
    shared = directory(tmp_path / "shared", 0o777)
    mine = directory(shared / "mine")
    problem = private_directory_problem(str(mine))
    assert problem == (
        f"{shared}, on the way to {mine}, is writable by other users without the sticky bit (mode 0777), "
        "so they could rename what is below it away and put their own in its place"
    )


def test_below_a_directory_of_another_user_it_is_not(tmp_path: Path) -> None:
    uid = unused_uid()
    theirs = directory(tmp_path / "theirs", 0o755, uid=uid)
    mine = directory(theirs / "mine")
    assert private_directory_problem(str(mine)) == (
        f"{theirs}, on the way to {mine}, belongs to uid {uid}, who could replace what is below it"
    )


def test_a_link_another_user_owns_is_not_followed_into_trust(tmp_path: Path) -> None:
    """They could point it elsewhere between the check and the bind."""
    private = directory(tmp_path / "private")
    link = tmp_path / "link"
    link.symlink_to(private)
    assert private_directory_problem(str(link)) is None  # this user's own link
    uid = unused_uid()
    os.lchown(link, uid, uid)
    assert private_directory_problem(str(link)) == (
        f"{link}, on the way to {private}, belongs to uid {uid}, who could replace what is below it"
    )


def test_missing_abstract_and_wildcard_endpoints_are_not(tmp_path: Path) -> None:
    assert ipc_endpoint_problem(f"ipc://{tmp_path}/missing/w.sock") == f"{tmp_path}/missing does not exist"
    assert "abstract socket" in str(ipc_endpoint_problem("ipc://@wool"))
    assert "wildcard" in str(ipc_endpoint_problem("ipc://*"))
    assert ipc_endpoint_problem("tcp://127.0.0.1:1") == "tcp://127.0.0.1:1 is not an ipc:// endpoint"
