"""CURVE with real worker processes on 127.0.0.1: a worker started with `--keys DIR` serves
pools that trust it and that it trusts; a caller with an unknown key is refused at the
handshake, told so at once, and nothing it sent ever reaches the worker; secure and insecure
workers and pools never mix; spawned workers and static discovery use the pool's keys."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
import routines
import zmq
import zmq.asyncio
from helpers import CliWorker
from zmq.utils.monitor import parse_monitor_message

import wool
from wool import protocol as p
from wool._keys import generate_directory
from wool.caller._connection import Connection
from wool.caller._dispatch import _dump, _pickled_routine

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

NAME = "secure"


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    """A key directory made as `python -m wool.keys generate DIR` makes it."""
    generate_directory(tmp_path / "keys")
    return tmp_path / "keys"


def secure_worker(key_dir: Path, *args: str, stderr: object = None) -> CliWorker:
    return CliWorker("--discovery", f"local:{NAME}", "--keys", str(key_dir), *args, stderr=stderr)


def discovery() -> wool.LocalDiscovery:
    return wool.LocalDiscovery(NAME)


async def stop(worker: CliWorker) -> None:
    worker.signal()
    assert await worker.wait() == 0


async def test_pool_sharing_the_key_directory_calls_a_secure_worker(key_dir: Path) -> None:
    public = wool.Keys.load(key_dir).public
    async with secure_worker(key_dir) as worker:
        async with wool.WorkerPool(discovery=discovery(), keys=key_dir) as pool:
            (info,) = await pool.wait_for_workers(timeout=10)
            assert (info.id, info.public_key) == (worker.id, public)
            assert await routines.add(1, 2) == 3
            assert await routines.pid() == worker.pid
            assert await routines.fib(10) == 55  # nested calls: the worker's own mesh is secure too
        await stop(worker)


async def test_worker_refuses_a_caller_with_an_unknown_key_and_the_caller_knows_at_once(key_dir: Path, tmp_path: Path) -> None:
    """The stranger trusts the worker's key (so it tries), the worker does not trust the
    stranger's: the call fails promptly with an error naming the refusal, not a hang."""
    worker_key = wool.Keys.load(key_dir).public
    stranger = wool.Keys.generate(trusted=[worker_key])
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        async with secure_worker(key_dir, stderr=log) as worker:
            async with wool.WorkerPool(discovery=discovery(), keys=stranger):
                start = time.monotonic()
                with pytest.raises(wool.NoWorkersAvailable, match="authentication failed") as refused:
                    await routines.add(1, 2)
                elapsed = time.monotonic() - start
            assert worker.id in str(refused.value) and stranger.public in str(refused.value)
            assert elapsed < 5  # the pool would otherwise wait 10 s for the handshake
            # The worker logged the refusal before answering the handshake.
            assert f"its public key {stranger.public} is not trusted" in log_path.read_text()
            async with wool.WorkerPool(discovery=discovery(), keys=key_dir):
                assert await routines.add(2, 3) == 5  # and it serves trusted callers as before
            await stop(worker)
    print(f"\nunknown key refused after {elapsed * 1000:.0f} ms")


async def test_nothing_a_refused_caller_sent_reaches_the_worker(key_dir: Path) -> None:
    """A request queued before the handshake (ZeroMQ would send it once connected) is never
    delivered when the handshake is refused: the worker unpickles nothing. The same request
    from a trusted caller is unpickled, so the check would see it."""
    keys = wool.Keys.load(key_dir)
    stranger = wool.Keys.generate(trusted=[keys.public])
    capturing = routines.routine_capturing_a_marker()
    digest, routine_pickle = _pickled_routine(capturing)
    async with secure_worker(key_dir) as worker:
        async with wool.WorkerPool(discovery=discovery(), keys=keys) as pool:
            (info,) = await pool.wait_for_workers(timeout=10)
            conn = Connection(info, keys=stranger)
            try:
                call = p.Call(
                    conn.new_call_id(),
                    info.id,
                    digest,
                    "marker",
                    False,
                    routine_pickle,
                    _dump("the arguments of {}", "marker", ((), {})),
                )
                with pytest.raises(wool.AuthenticationError, match="refused this process: authentication failed"):
                    await asyncio.wait_for(conn.request(call, False), 10)
            finally:
                conn.close()
            assert await routines.unpickled_count() == 0
            assert await capturing() == 1  # a trusted caller's marker is unpickled
        await stop(worker)


async def test_secure_and_insecure_workers_and_pools_never_mix(key_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="wool")
    async with secure_worker(key_dir) as secure, CliWorker("--discovery", f"local:{NAME}") as plain:
        # Pools take in every worker listed when they open: the other kind is left out then.
        async with wool.WorkerPool(discovery=discovery(), keys=key_dir) as pool:
            assert [w.id for w in await pool.wait_for_workers(timeout=10)] == [secure.id]
            assert {await routines.pid() for _ in range(6)} == {secure.pid}
            assert set(await routines.pids_of_nested(6)) == {secure.pid}  # nor does the worker's mesh
        assert f"worker {plain.id!r} at {plain.endpoint!r} has no CURVE key" in caplog.text
        async with wool.WorkerPool(discovery=discovery()) as pool:
            assert [w.id for w in await pool.wait_for_workers(timeout=10)] == [plain.id]
            assert {await routines.pid() for _ in range(6)} == {plain.pid}
        assert f"worker {secure.id!r} at {secure.endpoint!r} requires CURVE keys" in caplog.text
        await stop(secure)
        await stop(plain)


async def test_untrusted_worker_key_is_ignored_as_a_forged_entry(key_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Discovery is a hint: an entry whose key the pool does not trust is never connected to,
    even when the worker behind it would accept the pool."""
    caplog.set_level(logging.WARNING, logger="wool")
    theirs = wool.Keys.load(key_dir)
    ours = wool.Keys.generate()  # trusted by the worker below, but trusting nobody
    (key_dir / "trusted" / "ours.pub").write_text(ours.public + "\n")
    async with secure_worker(key_dir) as worker:
        async with wool.WorkerPool(discovery=discovery(), keys=ours):
            with pytest.raises(wool.NoWorkersAvailable, match="does not trust"):
                await routines.add(1, 2)
        assert f"publishes the public key {theirs.public!r}, which this process does not trust" in caplog.text
        async with wool.WorkerPool(discovery=discovery(), keys=ours.trusting(theirs.public)):
            assert await routines.add(1, 2) == 3
        await stop(worker)


async def test_pool_with_keys_spawns_secure_workers() -> None:
    keys = wool.Keys.generate()
    async with wool.WorkerPool(size=2, keys=keys) as pool:
        assert {w.public_key for w in pool.workers} == {keys.public}
        assert await routines.fib(12) == 144
        nested = await routines.pids_of_nested(8)
        assert set(nested) <= {proc.pid for proc in pool.processes}


async def test_static_discovery_finds_which_trusted_key_a_worker_holds(key_dir: Path, tmp_path: Path) -> None:
    """Keys directories per machine: the caller trusts several keys, and the worker at the
    listed endpoint holds one of them."""
    worker_keys = wool.Keys.load(key_dir)
    caller_dir = tmp_path / "caller"
    caller = generate_directory(caller_dir)
    (key_dir / "trusted" / "caller.pub").write_text(caller.public + "\n")
    (caller_dir / "trusted" / "worker.pub").write_text(worker_keys.public + "\n")
    (caller_dir / "trusted" / "other.pub").write_text(wool.Keys.generate().public + "\n")
    async with CliWorker("--discovery", "static:tcp://127.0.0.1:9", "--keys", str(key_dir)) as worker:
        static = wool.StaticDiscovery([worker.endpoint], poll_interval=0.05, timeout=2)
        async with wool.WorkerPool(discovery=static, keys=caller_dir) as pool:
            (info,) = await pool.wait_for_workers(timeout=10)
            assert (info.id, info.public_key) == (worker.id, worker_keys.public)
            assert await routines.pid() == worker.pid
        await stop(worker)


async def refused_handshake(endpoint: str, server_key: str) -> None:
    """One CURVE handshake with a fresh client key the worker does not trust, until the
    worker's refusal (the client socket's monitor reports the failed authentication)."""
    public, secret = zmq.curve_keypair()
    sock = zmq.asyncio.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_serverkey = server_key.encode()
    sock.curve_publickey, sock.curve_secretkey = public, secret
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        sock.connect(endpoint)
        event = parse_monitor_message(await asyncio.wait_for(monitor.recv_multipart(), 20))["event"]
        assert event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close()


async def test_handshakes_with_a_fresh_key_each_do_not_flood_the_log(key_dir: Path, tmp_path: Path) -> None:
    """The per-key throttle alone logged one warning per fresh key (28,954 lines in 20 s):
    refusals are capped at one line per interval whatever the key, and the next one counts
    what was held back."""
    server_key = wool.Keys.load(key_dir).public
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        async with secure_worker(key_dir, "--bind", "tcp://127.0.0.1:0", stderr=log) as worker:
            started = time.monotonic()
            for _ in range(100):
                await refused_handshake(worker.endpoint, server_key)
            elapsed = time.monotonic() - started
            async with wool.WorkerPool(discovery=discovery(), keys=key_dir):
                assert await routines.add(2, 3) == 5
            await stop(worker)
    refusals = [line for line in log_path.read_text().splitlines() if "is not trusted" in line]
    intervals = 1 + int(elapsed // 10)  # the throttle's interval is 10 s
    assert 1 <= len(refusals) <= intervals, refusals
