"""One SQLite file holds all local state; each concern (runs, workflows, bookmarks, scheduler) owns its tables."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection that tolerates other processes: WAL journal, 30 s busy timeout, autocommit off.

    Use `with conn:` for a transaction, or `BEGIN IMMEDIATE` when a read-then-write must exclude other writers
    (e.g. the max_concurrent_runs check).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=30000")
    # Switching a new file to WAL takes an exclusive lock that the busy timeout does not cover: when another
    # process is creating the same file at the same moment, retry instead of failing.
    deadline = time.monotonic() + 30
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def pid_alive(pid: int | None) -> bool:
    """Is this process (on this host) alive? A zombie (exited, not yet reaped by its parent) counts as dead, so a
    crashed run's lock or slot is free at once."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): the signal probe above is all we have
    return state not in ("Z", "X")
