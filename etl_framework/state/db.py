"""One SQLite file holds all local state; each concern (runs, workflows, bookmarks, scheduler) owns its tables."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from etl_framework import redaction
from etl_framework.errors import EtlError


class NotADatabase(EtlError):
    """The state or catalog file exists but is not an SQLite database (exit 2: the env config points at it)."""

    exit_code = 2

    def __init__(self, path: Path, role: str, why: str) -> None:
        self.path = path
        key = "catalog.path" if role == "catalog" else "state.path"
        super().__init__(
            f"the {role} file {path} is not an SQLite database ({why})\n  what to do: move it away (e.g. `mv {path} "
            f"{path}.broken`) and run again: a new, empty {role} file is created; or point {key} in the env config "
            "at the right file. `etl doctor` checks it")


def _bound(params: Any) -> Any:
    """Bound parameters with every resolved secret hidden (SPEC §4.2: state never holds a secret value)."""
    if not redaction.known() or params is None:
        return params
    if isinstance(params, dict):
        return {k: redaction.redact_text(v) if isinstance(v, str) else v for k, v in params.items()}
    return [redaction.redact_text(v) if isinstance(v, str) else v for v in params]


class RedactingConnection(sqlite3.Connection):
    """Every string bound into a statement passes through `redaction.redact_text`: a run record, a workflow
    record, a bookmark or a scheduler row can never hold a secret value, whoever wrote it."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        return super().execute(sql, _bound(parameters))

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:  # type: ignore[override]
        return super().executemany(sql, [_bound(p) for p in parameters])


def connect(path: str | Path, role: str = "state") -> sqlite3.Connection:
    """A connection that tolerates other processes: WAL journal, 30 s busy timeout, autocommit off.

    Use `with conn:` for a transaction, or `BEGIN IMMEDIATE` when a read-then-write must exclude other writers
    (e.g. the max_concurrent_runs check). A file that is not a database raises `NotADatabase` naming it (`role`:
    "state" or "catalog") instead of sqlite3's bare "file is not a database".
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False,
                           factory=RedactingConnection)
    conn.row_factory = sqlite3.Row
    try:
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
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: NOTADB shows here
    except sqlite3.DatabaseError as e:
        conn.close()
        if isinstance(e, sqlite3.OperationalError):  # locked, unable to open (permissions): not about the content
            raise
        raise NotADatabase(path, role, str(e)) from None
    return conn


def check_file(path: str | Path, role: str = "state") -> str | None:
    """What is wrong with an existing state/catalog file (None: fine or absent), without changing it: for
    `etl doctor`."""
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        return f"{path} is a folder, not an SQLite file"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as e:
        return f"{path} cannot be opened: {e}"
    try:
        row = conn.execute("PRAGMA quick_check").fetchone()
        if row and row[0] != "ok":
            return f"the {role} file {path} is damaged: {row[0]}"
    except sqlite3.DatabaseError as e:
        return f"the {role} file {path} is not an SQLite database ({e})"
    finally:
        conn.close()
    return None


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
