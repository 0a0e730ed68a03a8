"""What routines print and log reaches the process that called them, prefixed with the
worker; identical lines are merged; a flood of output is dropped and counted, not kept."""

from __future__ import annotations

import logging
import re

import psutil
import pytest
import recycle_routines as rr
from helpers import CliWorker

import wool
from wool import protocol as p
from wool.caller import output

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]

PREFIX = r"\(worker [0-9a-f]{4} pid=(\d+) host=\S+\)"


async def test_print_and_logging_on_a_hand_started_worker_reach_the_caller(tmp_path, capsys, caplog) -> None:
    name = f"output-{tmp_path.name}"
    caplog.set_level(logging.INFO, logger="wool.remote")
    async with CliWorker("--discovery", f"local:{name}") as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(name)):
            assert await rr.chatty("hello") == worker.pid
        worker.signal()
        assert await worker.wait() == 0
    captured = capsys.readouterr()
    out = re.search(rf"^{PREFIX} out: hello$", captured.out, re.M)
    assert out is not None and int(out.group(1)) == worker.pid
    assert re.search(rf"^{PREFIX} err: hello$", captured.err, re.M)
    [record] = [r for r in caplog.records if r.name == "wool.remote"]
    assert record.levelno == logging.WARNING
    assert re.fullmatch(rf"{PREFIX} app.reports: log: hello", record.getMessage())


async def test_nested_calls_output_reaches_the_top_level_caller(capsys) -> None:
    async with wool.WorkerPool(size=2, forward_output=True):
        await rr.chatty_parent("deep")
    captured = capsys.readouterr().out
    assert re.search(rf"^{PREFIX} parent: deep$", captured, re.M)
    assert re.search(rf"^{PREFIX} out: deep$", captured, re.M)


async def test_forward_output_false_drops_it_and_spawned_workers_keep_theirs(tmp_path, capsys) -> None:
    name = f"quiet-{tmp_path.name}"
    async with CliWorker("--discovery", f"local:{name}") as worker:
        async with wool.WorkerPool(discovery=wool.LocalDiscovery(name), forward_output=False):
            assert await rr.chatty("dropped") == worker.pid
        worker.signal()
        assert await worker.wait() == 0
    # Spawned workers do not forward by default: what they print goes to the shared terminal.
    async with wool.WorkerPool(size=1):
        await rr.chatty("local")
    assert "(worker " not in capsys.readouterr().out


async def test_a_routine_printing_100_mb_does_not_grow_the_caller(capsys) -> None:
    me = psutil.Process()
    async with wool.WorkerPool(size=1, forward_output=True):
        await rr.pid()
        before = me.memory_info().rss
        await rr.flood(100)
        after = me.memory_info().rss
    captured = capsys.readouterr()
    assert re.search(r"\[\d+ bytes of output dropped", captured.err)
    assert len(captured.out) < 10_000_000  # what was forwarded is bounded, not 100 MB
    assert after - before < 50_000_000


def test_identical_lines_from_100_workers_are_merged_with_a_count() -> None:
    written: list[str] = []
    now = [0.0]
    writer = output.Writer(lambda line, prefix: written.append(f"{prefix} {line.text}"), lambda: now[0])
    for i in range(100):
        writer.write(p.Output(1, (p.OutputLine(p.Stream.STDOUT, "disk almost full", f"{i:04x} pid={i} host=h"),)))
    writer.write(p.Output(1, (p.OutputLine(p.Stream.STDOUT, "another line", "0001 pid=1 host=h"),)))
    assert written == ["(worker 0000 pid=0 host=h) disk almost full", "(worker 0001 pid=1 host=h) another line"]
    now[0] = 1.5
    writer.expire(now[0])
    assert written[2:] == ["(workers) disk almost full [repeated 99x across workers]"]


def test_forwarded_text_cannot_drive_the_terminal(capsys) -> None:
    output.emit(p.OutputLine(p.Stream.STDOUT, "red \x1b[31m\rforged\ttab", "3f2a pid=1 host=\x1b]0;x"), "(worker \x1b]0;x)")
    assert capsys.readouterr().out == "(worker \\x1b]0;x) red \\x1b[31m\\rforged\ttab\n"
