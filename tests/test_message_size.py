"""The maximum message size, with real workers: a call whose arguments, sent value or result
has a part over the limit fails at once with `DispatchError` naming the limit and how to
raise it, and nothing else on that worker is disturbed (its connection stays up, it stays in
rotation); a worker started by hand with a smaller limit publishes it and callers keep to
it; the limit is checked where it is given."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import routines
from helpers import REPO, CliWorker

import wool

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

MiB = 1 << 20
LIMIT = MiB


async def test_arguments_over_the_limit_are_refused_before_sending() -> None:
    async with wool.WorkerPool(size=1, max_message_size=LIMIT) as pool:
        (worker,) = pool.workers
        with pytest.raises(wool.DispatchError, match=r"echo was not sent: it has a part of 2097152 bytes.*1048576 bytes") as e:
            await routines.echo(bytes(2 * MiB))
        assert "WorkerPool(max_message_size=BYTES)" in str(e.value)
        assert pool.workers == [worker]  # still in rotation: its connection never broke
        assert len(await routines.echo(bytes(LIMIT - 4096))) == LIMIT - 4096  # what fits still goes


async def test_a_result_over_the_limit_fails_that_call_only() -> None:
    async with wool.WorkerPool(size=1, max_message_size=LIMIT) as pool:
        (worker,) = pool.workers
        with pytest.raises(
            wool.DispatchError, match=r"the result of apply was not sent: .* part of 2097152 bytes.*max message size"
        ):
            await routines.apply(bytes, 2 * MiB)
        assert pool.workers == [worker]
        assert await routines.add(1, 2) == 3


async def test_a_value_sent_into_a_generator_over_the_limit_is_refused() -> None:
    """As with a value that cannot be pickled: the error ends the generator (as any
    exception out of `asend` does), and its remote end is cancelled."""
    async with wool.WorkerPool(size=1, max_message_size=LIMIT) as pool:
        (worker,) = pool.workers
        gen = routines.accumulate()
        assert await anext(gen) == 0
        with pytest.raises(wool.DispatchError, match=r"the send step was not sent.*1048576 bytes"):
            await gen.asend(bytearray(2 * MiB))
        with pytest.raises(StopAsyncIteration):
            await anext(gen)
        assert pool.workers == [worker]
        assert await routines.add(2, 3) == 5


async def test_a_hand_started_worker_publishes_its_smaller_limit_and_callers_keep_to_it() -> None:
    discovery = wool.LocalDiscovery("limits")
    async with CliWorker("--discovery", "local:limits", "--max-message-size", str(LIMIT)) as cli:
        async with wool.WorkerPool(discovery=discovery) as pool:  # the default, larger limit
            (info,) = await pool.wait_for_workers(timeout=10)
            assert info.max_message_size == LIMIT
            with pytest.raises(wool.DispatchError, match=rf"more than the 1048576 bytes .* worker '{cli.id}' accepts"):
                await routines.echo(bytes(2 * MiB))
            assert await routines.pid() == cli.pid
        cli.signal()
        assert await cli.wait() == 0


async def test_a_worker_found_through_a_static_list_tells_its_limit_and_callers_keep_to_it() -> None:
    """A static list (or DNS) says only where a worker listens; its pong says the rest,
    its limit included. Without it, a caller with the default, larger limit would send the
    part, and the worker would drop the whole connection, failing every call on it."""
    async with CliWorker("--discovery", "local:limits-static", "--max-message-size", str(LIMIT)) as cli:
        async with wool.WorkerPool(discovery=wool.StaticDiscovery([cli.endpoint])) as pool:
            (info,) = await pool.wait_for_workers(timeout=10)
            assert (info.id, info.max_message_size) == (cli.id, LIMIT)
            with pytest.raises(wool.DispatchError, match=rf"more than the 1048576 bytes .* worker '{cli.id}' accepts"):
                await routines.echo(bytes(2 * MiB))
            assert await routines.pid() == cli.pid
            assert pool.workers == [info]  # its connection never broke
        cli.signal()
        assert await cli.wait() == 0


@pytest.mark.parametrize(("value", "error"), [(1024, ValueError), (True, TypeError), (1.5, TypeError)])
def test_the_pool_checks_the_limit(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_message_size"):
        wool.WorkerPool(size=1, max_message_size=value)  # type: ignore[arg-type]


def test_the_cli_checks_the_limit() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wool.worker", "--discovery", "local:x", "--max-message-size", "10"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--max-message-size: max_message_size must be at least 65536 bytes, got 10" in result.stderr


async def test_a_reply_over_the_callers_own_limit_fails_the_call_promptly_naming_the_limit() -> None:
    """A worker with a larger limit than the caller sends a result the caller's socket
    refuses: ZeroMQ drops the connection, and the caller's error says why, at once."""
    discovery = wool.LocalDiscovery("limits")
    async with CliWorker("--discovery", "local:limits", "--max-message-size", str(4 * MiB)) as cli:
        async with wool.WorkerPool(discovery=discovery, max_message_size=LIMIT) as pool:
            await pool.wait_for_workers(timeout=10)
            with pytest.raises(wool.WorkerLost, match=r"max message size of 1048576 bytes.*max_message_size=BYTES"):
                await asyncio.wait_for(routines.apply(bytes, 2 * MiB), 10)
        cli.signal()
        assert await cli.wait() == 0
