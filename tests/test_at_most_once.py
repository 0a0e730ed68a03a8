"""At most once, under load and faults: a call is never sent twice and never silently dropped.

Several caller processes issue tens of thousands of calls at once to workers started by hand
(`python -m wool.worker`) while the test kills (SIGKILL) and stops (SIGTERM) workers and
starts replacements. Every call appends its own token to the execution log of the worker
process that runs it (one `O_APPEND` write per execution) and returns the token. Afterwards
each call's outcome must be accounted for exactly once, each result must be its own call's,
no token may have been executed twice, and every call that returned a result must have been
executed exactly once.

Faults are triggered by progress (the number of executions in the logs), never by time, and
a replacement worker is started, and seen serving every running caller, before a worker is
stopped: every caller always has a live worker in its rotation. Some killed workers are
restarted in place, on the same endpoint, where requests meant for the dead incarnation may
still arrive.

The callers call until the test tells them to stop, after the last fault: however fast the
machine runs the calls, every fault lands while every caller is calling (so with calls in
flight on the victim). How many calls that makes depends on the machine; each caller
reports how many it issued, and each of those must be accounted for.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import helpers
import pytest
import routines
from helpers import CliWorker, wait_exit

import wool

pytestmark = pytest.mark.multiprocess

NAME = "at-most-once"
CALLERS = 3
WIDTH = 200  # calls in flight per caller
CALLER_DEADLINE = 150.0  # a caller stops calling by then even if not told (the test failed)
CALLER_DRAIN = 30.0  # after stopping, its calls in flight must end within this (else: hung)
# (signal, restart in place): each fault stops the oldest live worker, once the workers
# started since the last fault serve every running caller and GAP more calls have run.
FAULTS = [(signal.SIGKILL, True), (signal.SIGTERM, False), (signal.SIGKILL, False), (signal.SIGKILL, True)]
GAP = 1_500
# The only failure a call may end in here. NoWorkersAvailable cannot happen (every caller
# always has a live worker in rotation), CancelledError neither (nothing cancels), and the
# routine never raises: anything else (DispatchError, RemoteError, ...) is a wool bug.
ALLOWED_FAILURES = {"WorkerLost"}

CALLER = r"""
import asyncio, itertools, json, os, sys, time
import routines, wool

name, log_dir, index, width, out, deadline, drain = sys.argv[1:]
width, deadline, drain = int(width), float(deadline), float(drain)


async def told_to_stop(stop: asyncio.Event) -> None:
    # One line (or the end) on stdin: the test's signal to stop issuing calls.
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()
    stop.set()


async def main() -> None:
    outcomes = []  # [token, outcome]: one per finished call
    messages = {}  # token -> message of its exception, for the report
    in_flight = set()
    seqs = itertools.count()
    issued = 0
    stop = asyncio.Event()

    async def issue() -> None:
        nonlocal issued
        while not stop.is_set():
            seq = next(seqs)
            issued += 1
            token = f"{index}:{seq}"
            in_flight.add(token)
            try:
                result = await routines.record_execution(log_dir, token)
            except BaseException as e:  # CancelledError too: it would be an outcome to report
                outcome = type(e).__name__
                messages[token] = str(e)
            else:
                outcome = f"ok:{result}"
            in_flight.discard(token)
            outcomes.append([token, outcome])

    async with wool.WorkerPool(discovery=wool.LocalDiscovery(name)) as pool:
        await pool.wait_for_workers(lambda ws: len(ws) >= 2, timeout=30)
        started = time.monotonic()
        listener = asyncio.ensure_future(told_to_stop(stop))
        tasks = [asyncio.ensure_future(issue()) for _ in range(width)]
        try:
            await asyncio.wait_for(stop.wait(), deadline)
        except TimeoutError:
            stop.set()
        listener.cancel()
        _, pending = await asyncio.wait(tasks, timeout=drain)
        report = {
            "issued": issued,
            "outcomes": outcomes,
            "hung": sorted(in_flight),
            "seconds": time.monotonic() - started,
            "messages": messages,
        }
        with open(out + ".tmp", "w") as f:
            json.dump(report, f)
        os.replace(out + ".tmp", out)
        if pending:
            os._exit(3)  # calls hang: do not wait for them on the way out


asyncio.run(main())
"""


class ExecutionLogs:
    """Follows the workers' execution logs (`<pid>.log`, one token per line) as they grow."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.tokens: dict[int, list[str]] = {}  # pid -> tokens, in execution order
        self.served: Counter[tuple[int, str]] = Counter()  # (pid, caller index) -> executions
        self.total = 0
        self._offsets: dict[Path, int] = {}

    def poll(self) -> None:
        for path in self.directory.glob("*.log"):
            offset = self._offsets.get(path, 0)
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1  # whole lines only
            if not end:
                continue
            self._offsets[path] = offset + end
            pid = int(path.stem)
            lines = data[:end].decode().splitlines()
            self.tokens.setdefault(pid, []).extend(lines)
            self.served.update((pid, line.partition(":")[0]) for line in lines)
            self.total += len(lines)

    def executed_by(self, pid: int) -> int:
        return len(self.tokens.get(pid, ()))

    async def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll the logs until `predicate()` holds (a file condition: polling is the way)."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if predicate():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting until {what} ({self.total} executions so far)")
            await asyncio.sleep(0.02)


async def exit_code(proc: subprocess.Popen[bytes], timeout: float) -> int:
    return await wait_exit(proc, timeout)


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@pytest.mark.timeout(240)
async def test_every_call_ends_exactly_once_while_workers_die(tmp_path: Path) -> None:
    log_dir = tmp_path / "executions"
    log_dir.mkdir()
    logs = ExecutionLogs(log_dir)
    workers: list[CliWorker] = []  # every worker started, in start order
    live: list[CliWorker] = []  # those not stopped by the test (oldest first)
    callers: list[subprocess.Popen[bytes]] = []
    terminated: list[CliWorker] = []  # stopped by SIGTERM: each must exit 0
    faults: list[dict[str, object]] = []
    starting: list[asyncio.Task[CliWorker]] = []  # workers starting since the last fault
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(helpers.REPO), str(helpers.REPO / "tests")]))
    began = time.monotonic()

    async def start_worker(*args: str) -> CliWorker:
        worker = CliWorker("--discovery", f"local:{NAME}", *args)
        workers.append(worker)
        await worker.__aenter__()
        live.append(worker)
        return worker

    async def serving_every_caller(worker: CliWorker) -> None:
        # Each running caller has sent it calls, so has it in rotation.
        await logs.wait_until(
            lambda: all(logs.served[worker.pid, i] for i in running()),
            f"worker {worker.pid} serves every running caller",
        )

    def running() -> list[str]:
        return [str(i) for i, caller in enumerate(callers) if caller.poll() is None]

    try:
        for _ in range(3):
            await start_worker()
        for index in range(CALLERS):
            args = [NAME, str(log_dir), str(index), str(WIDTH), str(tmp_path / f"caller{index}.json")]
            with open(tmp_path / f"caller{index}.err", "wb") as err:
                callers.append(
                    subprocess.Popen(
                        [sys.executable, "-c", CALLER, *args, str(CALLER_DEADLINE), str(CALLER_DRAIN)],
                        env=env,
                        stdin=subprocess.PIPE,
                        stdout=err,
                        stderr=err,
                    )
                )

        last = 0
        for sig, restart in FAULTS:
            # The workers started since the last fault serve every running caller: after the
            # victim, each caller still has at least two live workers in rotation.
            for worker in await asyncio.gather(*starting):
                await serving_every_caller(worker)
            await logs.wait_until(lambda last=last: logs.total >= last + GAP or not running(), f"{GAP} more calls ran")
            last = logs.total
            victim = live.pop(0)
            faults.append(
                {
                    "signal": signal.Signals(sig).name,
                    "worker": victim,
                    "executions before": logs.total,
                    "victim had run": logs.executed_by(victim.pid),
                    "callers running": len(running()),
                }
            )
            victim.signal(sig)
            if sig == signal.SIGKILL:
                await victim.wait()  # reaped: its registry entry now names a dead pid
            else:
                terminated.append(victim)
            starting = [asyncio.ensure_future(start_worker())]
            if restart:
                starting.append(asyncio.ensure_future(start_worker("--bind", victim.endpoint)))
                faults[-1]["restarted as"] = starting[-1]
        # The last replacements serve every caller too, then the callers may stop.
        for worker in await asyncio.gather(*starting):
            await serving_every_caller(worker)
        for caller in callers:
            assert caller.stdin is not None
            if caller.poll() is None:
                caller.stdin.write(b"stop\n")
                caller.stdin.flush()

        codes = [await exit_code(caller, timeout=CALLER_DEADLINE + CALLER_DRAIN + 30) for caller in callers]
        calls_done = time.monotonic()
        for worker in live:
            worker.signal(signal.SIGTERM)
        stopped = {w.pid: await w.wait() for w in [*terminated, *live]}
    finally:
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        for caller in callers:
            if caller.poll() is None:
                caller.kill()
            caller.wait()
            if caller.stdin is not None:
                caller.stdin.close()
        for worker in workers:
            await worker.__aexit__()
        await wool.LocalDiscovery(NAME).workers()  # prune the entries of workers killed above

    for index, code in enumerate(codes):
        assert code == 0, f"caller {index} exited {code}:\n{tail(tmp_path / f'caller{index}.err')}"
    assert all(code == 0 for code in stopped.values()), f"a worker stopped by SIGTERM exited badly: {stopped}"

    logs.poll()
    executed = Counter(token for tokens in logs.tokens.values() for token in tokens)
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    seconds = []
    for index in range(CALLERS):
        report = json.loads((tmp_path / f"caller{index}.json").read_text())
        assert report["hung"] == [], f"caller {index}: calls never ended: {report['hung'][:10]}"
        tokens = [token for token, _ in report["outcomes"]]
        issued = {f"{index}:{seq}" for seq in range(report["issued"])}
        assert len(tokens) == len(issued) and set(tokens) == issued, f"caller {index}: outcomes not one per call"
        outcomes.update(report["outcomes"])
        messages.update(report["messages"])
        seconds.append(report["seconds"])

    ok = {token for token, outcome in outcomes.items() if outcome.startswith("ok:")}
    wrong = {token: outcome for token, outcome in outcomes.items() if token in ok and outcome != f"ok:{token}"}
    failures = Counter(outcome for outcome in outcomes.values() if not outcome.startswith("ok:"))
    duplicated = {token: n for token, n in executed.items() if n > 1}
    unissued = set(executed) - set(outcomes)
    ok_not_executed = {token for token in ok if executed[token] != 1}
    lost = {token for token, outcome in outcomes.items() if outcome == "WorkerLost"}
    lost_but_ran = {token for token in lost if executed[token]}

    print(
        f"\nat-most-once: {len(outcomes)} calls issued by {CALLERS} callers, {len(ok)} ok, "
        f"{failures['WorkerLost']} WorkerLost ({len(lost_but_ran)} of them had run), "
        f"other failures { ({k: n for k, n in failures.items() if k != 'WorkerLost'}) }; "
        f"{sum(executed.values())} executions of {len(executed)} tokens; "
        f"calls took {max(seconds):.1f} s per caller, {calls_done - began:.1f} s in all"
    )
    restarted_ran = []
    for fault in faults:
        victim, restarting = fault["worker"], fault.get("restarted as")
        assert isinstance(victim, CliWorker)
        hit = [token for token in lost if victim.id in messages[token]]
        fault |= {"worker": victim.pid, "lost": len(hit), "lost but had run": sum(bool(executed[t]) for t in hit)}
        if isinstance(restarting, asyncio.Task):
            restarted = restarting.result()
            restarted_ran.append(logs.executed_by(restarted.pid))
            fault["restarted as"] = f"{restarted.pid} at {restarted.endpoint}, ran {restarted_ran[-1]}"
        print(f"  fault: {fault}")
    other = Counter(message for token, message in messages.items() if not any(w.id in message for w in workers))
    for message, count in other.most_common(5):
        print(f"  {count} x {message}")

    assert not wrong, f"results delivered to the wrong call: {list(wrong.items())[:10]}"
    assert not duplicated, f"calls executed more than once: {list(duplicated.items())[:10]}"
    assert not unissued, f"executions of tokens nobody issued: {sorted(unissued)[:10]}"
    assert not ok_not_executed, f"calls returned a result without one execution: {sorted(ok_not_executed)[:10]}"
    assert set(failures) <= ALLOWED_FAILURES, f"calls failed in unexpected ways: {failures}"
    # The faults were real: each hit a worker that was serving callers that were still calling
    # (they call until told to stop, after the last fault: this holds unless a caller died).
    assert len(faults) == len(FAULTS), faults
    assert all(f["victim had run"] and f["callers running"] == CALLERS for f in faults), faults
    assert lost, "no call was in flight on a killed worker"
    assert restarted_ran[0], "no call reached the worker restarted on its predecessor's endpoint"


@pytest.mark.timeout(60)
async def test_a_graceful_stop_under_load_fails_no_call(tmp_path: Path) -> None:
    """Calls sent to a worker that is stopping gracefully are refused and go elsewhere (or
    finish there): none ends in `WorkerLost`, and none runs twice."""
    logs = ExecutionLogs(tmp_path)
    outcomes: Counter[str] = Counter()
    enough = asyncio.Event()
    seqs = iter(range(1_000_000))

    async def issue() -> None:
        for seq in seqs:
            if enough.is_set():
                return
            try:
                assert await routines.record_execution(str(tmp_path), f"g:{seq}") == f"g:{seq}"
                outcomes["ok"] += 1
            except wool.WorkerLost:
                outcomes["WorkerLost"] += 1

    spec = f"local:{NAME}"
    async with CliWorker("--discovery", spec) as stopping, CliWorker("--discovery", spec) as other:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(NAME)) as pool:
            await pool.wait_for_workers(lambda ws: len(ws) == 2, timeout=10)
            tasks = [asyncio.ensure_future(issue()) for _ in range(WIDTH // 2)]
            try:
                # (A failing caller task ends the wait early: its error is raised below.)
                await logs.wait_until(
                    lambda: logs.executed_by(stopping.pid) >= 500 or any(t.done() for t in tasks),
                    "the worker to stop is busy",
                    timeout=20,
                )
                stopping.signal(signal.SIGTERM)
                assert await stopping.wait() == 0
                logs.poll()
                after = logs.executed_by(other.pid) + 1000
                await logs.wait_until(
                    lambda: logs.executed_by(other.pid) >= after or any(t.done() for t in tasks),
                    "calls went on after the stop",
                    timeout=20,
                )
            finally:
                enough.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 30)
        other.signal(signal.SIGTERM)
        assert await other.wait() == 0
    logs.poll()
    executed = Counter(token for tokens in logs.tokens.values() for token in tokens)
    print(f"\ngraceful stop under load: {dict(outcomes)}")
    assert not {token for token, n in executed.items() if n > 1}, "a call ran twice"
    assert outcomes["WorkerLost"] == 0, f"calls failed although their worker stopped gracefully: {dict(outcomes)}"
