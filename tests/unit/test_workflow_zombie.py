"""A run owner that exited but was not reaped yet (a zombie) no longer holds a max_concurrent_runs slot."""

from __future__ import annotations

import os
import subprocess
import time

from etl_framework.state.workflows import pid_alive


def test_zombie_owner_counts_as_dead() -> None:
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(child.pid):
            time.sleep(0.05)
        assert not pid_alive(child.pid)  # exited, not reaped yet: a zombie
    finally:
        child.wait()
    assert pid_alive(os.getpid())
