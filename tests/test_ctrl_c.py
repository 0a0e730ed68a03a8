"""Ctrl-C (a real SIGINT to a real script's process group, as a terminal sends it) while a
routine blocks its worker's event loop: the first stops within the grace period and says what
it waits for, the second stops now, a third changes nothing; every time the script exits with
the plain `KeyboardInterrupt` traceback of its own code, and leaves no process, socket or
registry file behind."""

from __future__ import annotations

import signal
from pathlib import Path

import interrupt_scripts
import pytest
from interrupt_scripts import Script, listing, wait_gone

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]


def _assert_plain_keyboard_interrupt(stderr: str, script: Path) -> None:
    lines = stderr.rstrip("\n").splitlines()
    assert lines[-1] == "KeyboardInterrupt", stderr
    assert f'File "{script}", line 18, in main' in stderr, stderr
    assert "await block()" in stderr
    for noise in ("Task was destroyed", "was never awaited", "Exception ignored", "RuntimeError", "did not confirm"):
        assert noise not in stderr, stderr
    wool_frames = [line for line in lines if line.strip().startswith("File ") and "/wool/" in line]
    assert all("_routine.py" in line and "in wrapper" in line for line in wool_frames), stderr
    assert len(wool_frames) <= 1, stderr


@pytest.mark.parametrize("presses", [1, 2, 3])
async def test_ctrl_c_with_a_routine_blocking_its_worker(presses: int, runtime_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "blocked.py"
    path.write_text(interrupt_scripts.blocking(size=1))
    script = Script(path)
    try:
        pids = await script.start()
        assert listing(runtime_dir)  # its registry entry and socket
        script.ctrl_c()
        notice = await script.line()  # the worker answers nothing: the pool says so after a second
        assert notice.startswith("wool: waiting up to 5 s for 1 running call on worker "), notice
        assert notice.rstrip().endswith("; Ctrl-C again to stop now"), notice
        assert f"(pid {pids[-1]})" in notice
        for _ in range(presses - 1):
            script.ctrl_c()
        code, stderr = await script.finish()
    finally:
        script.close()
    assert code == -signal.SIGINT  # as Python exits on an uncaught KeyboardInterrupt
    _assert_plain_keyboard_interrupt(stderr, path)
    assert stderr.count("wool: waiting") == 1
    for pid in pids:
        await wait_gone(pid)
    assert listing(runtime_dir) == []


async def test_ctrl_c_with_a_plain_routine_blocking_its_thread(runtime_dir: Path, tmp_path: Path) -> None:
    """The worker's loop is free: it confirms the cancel at once, stops, and the thread still
    sleeping goes with its process."""
    path = tmp_path / "blocked.py"
    path.write_text(interrupt_scripts.blocking(size=1, plain=True))
    script = Script(path)
    try:
        pids = await script.start()
        script.ctrl_c()
        code, stderr = await script.finish()
    finally:
        script.close()
    assert code == -signal.SIGINT
    _assert_plain_keyboard_interrupt(stderr, path)
    for pid in pids:
        await wait_gone(pid)
    assert listing(runtime_dir) == []
