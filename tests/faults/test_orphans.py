"""A SIGKILLed daemon leaves no parse worker behind: the worker exits once orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

OWNER = """
import asyncio, os, sys, time
from analyzer.sources.parsepool import ParsePool
pool = ParsePool()
worker = pool._pool().submit(os.getpid).result()
print(worker, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return fh.read().split(") ")[1][0] != "Z"  # a zombie has exited


def test_a_killed_owner_leaves_no_worker() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    worker = int(owner.stdout.readline())
    assert worker != owner.pid and _alive(worker)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    # Not a speed bound: the worker checks every second; this only waits for it to happen.
    deadline = time.monotonic() + 60
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "the parse worker outlived its daemon"
