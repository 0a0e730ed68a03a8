"""`python -m wool.worker`: its options, its errors, publishing and withdrawing on a stop
signal, and letting running calls finish (or cancelling them) within the grace period."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import routines
from helpers import REPO, CliWorker, Observer, stop_and_wait_withdrawn

import wool
from wool.worker._config import WorkerConfig, bind_refusal

pytestmark = pytest.mark.multiprocess

NAME = "cli"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    return subprocess.run(
        [sys.executable, "-m", "wool.worker", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=30
    )


@contextlib.asynccontextmanager
async def pool_over_one_worker(*args: str) -> AsyncIterator[tuple[Observer, CliWorker, wool.LocalDiscovery]]:
    """A discovery pool serving over one CLI worker started with `args`; the worker must have
    exited 0 once the pool is closed."""
    discovery = wool.LocalDiscovery(NAME)
    async with Observer() as observer, CliWorker("--discovery", f"local:{NAME}", *args) as worker:
        async with wool.WorkerPool(discovery=discovery) as pool:
            await wait_serving(pool, worker)
            yield observer, worker, discovery
        assert await worker.wait() == 0


async def wait_serving(pool: wool.WorkerPool, worker: CliWorker, timeout: float = 10.0) -> None:
    """Wait until the pool has connected to `worker`."""
    await pool.wait_for_workers(lambda workers: worker.pid in {w.pid for w in workers}, timeout)


# -- options and errors ------------------------------------------------------------------------


def test_help_documents_every_option() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--discovery", "--bind", "--tag", "--grace", "--log-level"):
        assert option in result.stdout
    assert "local:NAME" in result.stdout


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ((), r"--discovery is required"),
        (("--discovery", "bogus:x"), r"unknown discovery 'bogus:x'"),
        (("--discovery", "local:"), r"namespace must not be empty"),
    ],
    ids=["missing", "unknown-scheme", "empty-name"],
)
def test_bad_discovery_exits_2_naming_the_problem(args: tuple[str, ...], pattern: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert re.search(pattern, result.stderr), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("grace", ["-1", "nan", "inf"])
def test_a_bad_grace_period_exits_2_naming_it(grace: str) -> None:
    result = run_cli("--discovery", f"local:{NAME}", "--grace", grace)
    assert result.returncode == 2
    assert "--grace must be a finite, non-negative number of seconds" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# -- safe defaults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bind", ["tcp://0.0.0.0:0", "tcp://*:0", "tcp://[::]:0", "tcp://10.1.2.3:5555", "tcp://eth0:5555", "tcp://myhost:5555"]
)
def test_listening_beyond_loopback_without_keys_is_refused(bind: str) -> None:
    """Refused before anything binds, with the way out spelt out."""
    result = run_cli("--discovery", f"local:{NAME}", "--bind", bind)
    assert result.returncode == 2
    assert f"refusing to listen on {bind} without CURVE keys: anyone who can reach that address" in result.stderr
    assert "python -m wool.keys generate DIR" in result.stderr and "--keys DIR" in result.stderr
    assert "--insecure" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("bind", ["tcp://127.0.0.1:0", "tcp://[::1]:0", "tcp://localhost:5555"])
def test_listening_on_loopback_without_keys_is_refused(bind: str) -> None:
    """Every local user can connect to a loopback port: keyless TCP is an explicit opt-in."""
    result = run_cli("--discovery", f"local:{NAME}", "--bind", bind)
    assert result.returncode == 2
    assert f"refusing to listen on {bind} without CURVE keys: every user of this machine can connect" in result.stderr
    assert "Leave --bind out" in result.stderr and "--insecure" in result.stderr and "--keys DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_ipc_bind_outside_a_private_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)  # whatever the umask
    bind = f"ipc://{shared}/w.sock"
    result = run_cli("--discovery", f"local:{NAME}", "--bind", bind)
    assert result.returncode == 2
    assert f"refusing to listen on {bind} without CURVE keys: {shared} is open to other users (mode 0755" in result.stderr
    assert not (shared / "w.sock").exists()


@pytest.mark.parametrize(
    "bind, refused",
    [
        (None, None),
        ("inproc://w", None),
        ("ipc://@wool-abstract", "an abstract socket, which every user of this machine can connect to"),
        ("ipc:///nonexistent-wool-dir/w.sock", "/nonexistent-wool-dir does not exist"),
        ("tcp://127.0.0.1:0", "every user of this machine can connect"),
        ("tcp://127.9.8.7:0", "every user of this machine can connect"),
        ("tcp://[::1]:0", "every user of this machine can connect"),
        ("tcp://localhost:0", "every user of this machine can connect"),
        ("tcp://0.0.0.0:0", "anyone who can reach that address"),
        ("tcp://192.168.1.2:0", "anyone who can reach that address"),
        ("tcp://lo:0", "anyone who can reach that address"),  # an interface name: not worth guessing what it reaches
        ("ws://127.0.0.1:0", "anyone who can reach that address"),
    ],
)
def test_only_this_user_may_be_served_without_keys(bind: str | None, refused: str | None) -> None:
    problem = bind_refusal(bind)
    if refused is None:
        assert problem is None
        WorkerConfig(bind=bind)
    else:
        assert problem is not None and refused in problem
        with pytest.raises(ValueError, match="without CURVE keys"):
            WorkerConfig(bind=bind)
        WorkerConfig(bind=bind, insecure=True)
        WorkerConfig(bind=bind, keys=wool.Keys.generate())


def test_an_ipc_socket_in_a_private_directory_needs_no_keys(runtime_dir: Path, tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    assert bind_refusal(f"ipc://{private}/w.sock") is None
    assert bind_refusal(f"ipc://{runtime_dir}/w.sock") is None


def test_keys_options_are_checked(tmp_path: Path) -> None:
    both = run_cli("--discovery", f"local:{NAME}", "--keys", str(tmp_path), "--insecure")
    assert both.returncode == 2 and "--insecure and --keys exclude each other" in both.stderr
    missing = run_cli("--discovery", f"local:{NAME}", "--keys", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "--keys:" in missing.stderr and "id.key" in missing.stderr


async def test_insecure_worker_starts_and_publishes_no_key() -> None:
    """`--insecure` lifts the refusal (bound to loopback here: the test exposes nothing
    beyond this machine)."""
    async with CliWorker("--discovery", f"local:{NAME}", "--insecure", "--bind", "tcp://127.0.0.1:0") as worker:
        (info,) = await wool.LocalDiscovery(NAME).workers()
        assert (info.id, info.endpoint, info.public_key) == (worker.id, worker.endpoint, None)
        assert worker.endpoint.startswith("tcp://127.0.0.1:")
        worker.signal()
        assert await worker.wait() == 0


# -- publishing and withdrawing ----------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_publishes_itself_and_withdraws_on_stop_signal(sig: signal.Signals) -> None:
    discovery = wool.LocalDiscovery(NAME)
    async with CliWorker("--discovery", f"local:{NAME}") as worker:
        (entry,) = await discovery.workers()
        assert (entry.id, entry.endpoint, entry.pid) == (worker.id, worker.endpoint, worker.pid)
        worker.signal(sig)
        assert await worker.wait() == 0
        assert await discovery.workers() == []


async def test_bind_to_any_loopback_port() -> None:
    async with CliWorker("--discovery", f"local:{NAME}", "--insecure", "--bind", "tcp://127.0.0.1:0") as worker:
        match = re.fullmatch(r"tcp://127\.0\.0\.1:(\d+)", worker.endpoint)
        assert match is not None, worker.endpoint
        assert 0 < int(match.group(1)) < 65536
        (entry,) = await wool.LocalDiscovery(NAME).workers()
        assert entry.endpoint == worker.endpoint
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME)) as pool:
            await wait_serving(pool, worker)
            assert await routines.pid() == worker.pid
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0


async def test_tags_are_published() -> None:
    async with CliWorker("--discovery", f"local:{NAME}", "--tag", "gpu", "--tag", "fast") as worker:
        (entry,) = await wool.LocalDiscovery(NAME).workers()
        assert entry.id == worker.id
        assert entry.tags == frozenset({"gpu", "fast"})
        worker.signal(signal.SIGTERM)
        assert await worker.wait() == 0


# -- stopping with calls in flight ---------------------------------------------------------------


async def test_stop_lets_running_calls_finish_within_grace() -> None:
    async with pool_over_one_worker() as (observer, worker, discovery):
        first = asyncio.create_task(routines.wait_at(observer.address, "g1"))
        last = asyncio.create_task(routines.wait_at(observer.address, "g2"))
        await observer.wait_for("at g1")
        await observer.wait_for("at g2")
        # Withdrawal is the worker's first step after the signal: it is now draining.
        await stop_and_wait_withdrawn(discovery, worker)
        assert worker.proc is not None and worker.proc.poll() is None
        observer.open("g1")
        assert await asyncio.wait_for(first, 10) == "g1"
        assert worker.proc.poll() is None  # still draining: g2 is running
        observer.open("g2")
        assert await asyncio.wait_for(last, 10) == "g2"
    assert {"done g1", "done g2"} <= set(observer.events)
    assert not [e for e in observer.events if e.startswith("cancelled")]


async def test_stop_cancels_a_call_that_outlives_grace() -> None:
    async with pool_over_one_worker("--grace", "0.5") as (observer, worker, discovery):
        call = asyncio.create_task(routines.block(observer.address, "x"))
        await observer.wait_for(f"running x {worker.pid}")
        worker.signal(signal.SIGTERM)
        await observer.wait_for("cancelled x", timeout=10)
        (outcome,) = await asyncio.wait_for(asyncio.gather(call, return_exceptions=True), 10)
        # The caller did not cancel: the worker gave up on the call when its grace ran out,
        # and the caller hears WorkerLost (not CancelledError).
        assert isinstance(outcome, wool.WorkerLost), repr(outcome)
        assert not call.cancelled()


# The tests below keep the caller's loop busy until the worker exited, so the worker's last
# reply is still unread when the connection breaks: it must be delivered all the same.


async def test_result_of_a_call_finished_during_stop_reaches_a_busy_caller() -> None:
    async with pool_over_one_worker() as (observer, worker, discovery):
        call = asyncio.create_task(routines.wait_at(observer.address, "g"))
        await observer.wait_for("at g")
        await stop_and_wait_withdrawn(discovery, worker)
        observer.open("g")
        await observer.wait_for("done g")
        assert worker.proc is not None
        worker.proc.wait(timeout=10)  # the caller is busy while the worker replies and exits
        (outcome,) = await asyncio.wait_for(asyncio.gather(call, return_exceptions=True), 10)
    assert outcome == "g"


async def test_caller_is_told_its_call_outlived_the_grace_period() -> None:
    async with pool_over_one_worker("--grace", "0.5") as (observer, worker, discovery):
        call = asyncio.create_task(routines.block(observer.address, "x"))
        await observer.wait_for(f"running x {worker.pid}")
        worker.signal(signal.SIGTERM)
        await observer.wait_for("cancelled x", timeout=10)
        assert worker.proc is not None
        worker.proc.wait(timeout=10)  # the caller is busy while the worker replies and exits
        (outcome,) = await asyncio.wait_for(asyncio.gather(call, return_exceptions=True), 10)
    assert isinstance(outcome, wool.WorkerLost)
    assert "grace period" in str(outcome)


@pytest.mark.timeout(60)
async def test_a_worker_whose_stdout_nobody_reads_still_serves(tmp_path: Path) -> None:
    """The start-up line goes to stdout; a reader that went away (a supervisor's pipe closed,
    or the reader of a worker that re-executed itself) must not stop the worker."""
    name = f"no-reader-{tmp_path.name}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wool.worker", "--discovery", f"local:{name}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")])),
        cwd=REPO,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # nobody will read the line it prints once it listens
    try:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(name)) as pool:
            await pool.wait_for_workers(lambda ws: proc.pid in {w.pid for w in ws}, timeout=30)
            assert await routines.add(1, 2) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
