"""Shared by the kill tests: start a job, SIGKILL it once it has made a given amount of progress,
and read a journal's complete rows (pytest puts ``tests/`` on ``sys.path`` for its conftest)."""

import json
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest


def complete_rows(path: Path) -> list[dict]:
    """The JSON rows of ``path``'s complete lines: a torn tail (no newline yet) is not a row."""
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text("utf-8").split("\n")[:-1] if x.strip()]


def kill_when(
    cmd: Sequence[str], ready: Callable[[], bool], *, timeout: float = 180.0, poll: float = 0.005
) -> None:
    """Run ``cmd`` and SIGKILL it as soon as ``ready()`` holds or it exits by itself.

    Progress, not a timer, decides when: a timer tuned on one run lands after the end on a faster
    one (a warm import cache) and before the start on a slower one (a loaded CI machine)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not ready() and proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"the job made too little progress in {timeout:.0f} s to be killed")
            time.sleep(poll)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
