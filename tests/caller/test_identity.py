"""Telling the worker discovery described from an impostor on a new connection
(`wool.caller._identity`): pure, no sockets."""

from __future__ import annotations

import pytest

from wool import protocol as p
from wool.caller._identity import hello_mismatch, peer_mismatch, peer_uid
from wool.discovery import WorkerInfo

WORKER = WorkerInfo("a" * 32, "ipc:///run/wool/sockets/1-aaaa.sock", 1, "", frozenset())


@pytest.mark.parametrize(
    ("address", "uid"),
    [
        ("localhost:1000:1000:4242", 1000),
        ("localhost:0:0:1", 0),
        ("", None),
        (None, None),
        ("127.0.0.1", None),
        ("x:y:z:w", None),
    ],
)
def test_the_uid_is_read_from_zeromqs_peer_address(address: str | None, uid: int | None) -> None:
    assert peer_uid(address) == uid


def test_a_peer_of_this_user_passes_and_another_users_is_refused() -> None:
    assert peer_mismatch(WORKER, "localhost:1000:1000:4242", 1000) is None
    refused = peer_mismatch(WORKER, "localhost:54321:54321:99", 1000)
    assert refused is not None and refused.refused
    assert "runs as uid 54321, not as this user (uid 1000)" in refused.reason and WORKER.endpoint in refused.reason


def test_a_peer_without_credentials_is_not_trusted() -> None:
    refused = peer_mismatch(WORKER, "127.0.0.1", 1000)
    assert refused is not None and refused.refused and "cannot tell which user" in refused.reason


def test_only_the_pong_to_the_hello_from_the_listed_incarnation_passes() -> None:
    assert hello_mismatch(WORKER, p.Pong(7, WORKER.id), 7) is None
    # Another incarnation of this user's at that endpoint: lost (it may be listed again), not refused.
    restarted = hello_mismatch(WORKER, p.Pong(7, "b" * 32), 7)
    assert restarted is not None and not restarted.refused and repr("b" * 32) in restarted.reason
    for unasked in (p.Pong(8, WORKER.id), p.Return(7, (b"",))):  # not the answer to hello 7
        mismatch = hello_mismatch(WORKER, unasked, 7)
        assert mismatch is not None and mismatch.refused
    early = hello_mismatch(WORKER, p.Pong(7, WORKER.id), None)  # before any hello was sent
    assert early is not None and early.refused and "before its hello" in early.reason
