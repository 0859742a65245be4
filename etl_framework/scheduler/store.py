"""The scheduler's durable state: its own tables in the project's state store (SQLite through `state.db.connect`).

Exactly-once rests on three rules:
- an event is a row keyed by (workflow, trigger, path): a file is recorded once, whatever the restarts;
- a batch, its events' `batch_id` and the firing that will start its run are written in ONE transaction;
- a scheduled tick advances `last_tick` in the same transaction that records its firing.
A firing then moves waiting -> starting (run id chosen and stored first) -> started (process spawned) -> done (its
run ended, or is on record after a restart). On restart a firing left in `starting` or `started` is checked against
the workflow runs: a run on record is done, a run that never registered is queued again — never started twice, nor
forgotten.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from etl_framework.errors import EtlError
from etl_framework.state.db import connect

BASELINE = 0  # the batch_id of files that were there when an event trigger was first served (never an event)

SCHEMA = """
CREATE TABLE IF NOT EXISTS scheduler_schedules (
  workflow   TEXT NOT NULL,
  trigger    TEXT NOT NULL,
  expr       TEXT NOT NULL,
  last_tick  TEXT NOT NULL,        -- the latest tick already handled (fired, or the baseline when first seen)
  updated_at TEXT NOT NULL,
  PRIMARY KEY (workflow, trigger)
);
CREATE TABLE IF NOT EXISTS scheduler_events (
  workflow  TEXT NOT NULL,
  trigger   TEXT NOT NULL,
  path      TEXT NOT NULL,
  size      INTEGER NOT NULL,
  mtime_ns  INTEGER NOT NULL,
  seen_at   TEXT NOT NULL,         -- when the file was taken (stable); the batch window starts here
  batch_id  INTEGER,               -- NULL: pending
  PRIMARY KEY (workflow, trigger, path)
);
CREATE INDEX IF NOT EXISTS scheduler_events_pending ON scheduler_events (workflow, trigger, batch_id, seen_at);
CREATE TABLE IF NOT EXISTS scheduler_batches (
  batch_id   INTEGER PRIMARY KEY AUTOINCREMENT,
  workflow   TEXT NOT NULL,
  trigger    TEXT NOT NULL,
  reason     TEXT NOT NULL,        -- size | window
  n_events   INTEGER NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scheduler_firings (
  firing_id  INTEGER PRIMARY KEY AUTOINCREMENT,
  workflow   TEXT NOT NULL,
  trigger    TEXT NOT NULL,
  kind       TEXT NOT NULL,        -- schedule | event
  due_at     TEXT NOT NULL,        -- the tick, or the moment the batch closed
  batch_id   INTEGER,
  properties TEXT NOT NULL,        -- JSON run properties given to the run
  state      TEXT NOT NULL,        -- waiting | starting | started | done | failed (could not start)
  run_id     TEXT,
  created_at TEXT NOT NULL,
  started_at TEXT,
  note       TEXT
);
CREATE INDEX IF NOT EXISTS scheduler_firings_state ON scheduler_firings (state, firing_id);
CREATE TABLE IF NOT EXISTS scheduler_baselines (
  workflow   TEXT NOT NULL,        -- an event trigger's first start: the files already there are not events
  trigger    TEXT NOT NULL,        -- (their scheduler_events rows carry batch_id 0 = BASELINE)
  taken_at   TEXT NOT NULL,
  n_files    INTEGER NOT NULL,
  PRIMARY KEY (workflow, trigger)
);
"""

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(dt: datetime) -> str:
    """Fixed-width UTC text, so that SQL string order is time order."""
    return dt.astimezone(UTC).strftime(TS_FORMAT)


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, TS_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    workflow: str
    trigger: str
    path: str
    size: int
    mtime_ns: int
    seen_at: datetime
    batch_id: int | None = None


@dataclass(frozen=True)
class Firing:
    firing_id: int
    workflow: str
    trigger: str
    kind: str
    due_at: datetime
    batch_id: int | None
    properties: dict[str, Any]
    state: str
    run_id: str | None
    created_at: datetime
    note: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Firing:
        return cls(
            firing_id=row["firing_id"], workflow=row["workflow"], trigger=row["trigger"], kind=row["kind"],
            due_at=parse_ts(row["due_at"]), batch_id=row["batch_id"], properties=json.loads(row["properties"]),
            state=row["state"], run_id=row["run_id"], created_at=parse_ts(row["created_at"]), note=row["note"],
        )


class SchedulerStore:
    """All scheduler tables of one state file. A new object on the same file sees exactly what the last one
    committed (that is how a restart is simulated in tests)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = connect(self.path)
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------------------------------- schedules

    def get_schedule(self, workflow: str, trigger: str) -> tuple[str, datetime] | None:
        row = self.conn.execute(
            "SELECT expr, last_tick FROM scheduler_schedules WHERE workflow=? AND trigger=?", (workflow, trigger)
        ).fetchone()
        return (row["expr"], parse_ts(row["last_tick"])) if row else None

    def set_schedule_baseline(self, workflow: str, trigger: str, expr: str, tick: datetime, now: datetime) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO scheduler_schedules (workflow, trigger, expr, last_tick, updated_at) VALUES (?,?,?,?,?)"
                " ON CONFLICT (workflow, trigger) DO UPDATE SET expr=excluded.expr, last_tick=excluded.last_tick,"
                " updated_at=excluded.updated_at",
                (workflow, trigger, expr, ts(tick), ts(now)),
            )

    def fire_schedule(
        self, workflow: str, trigger: str, expr: str, prev_tick: datetime, tick: datetime, now: datetime,
        properties: dict[str, Any], note: str | None,
    ) -> int | None:
        """Advance the schedule from `prev_tick` to `tick` and record its firing, atomically. Returns the firing
        id, or None when another writer already advanced it (nothing fires twice)."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            cur = self.conn.execute(
                "UPDATE scheduler_schedules SET last_tick=?, updated_at=? WHERE workflow=? AND trigger=? AND"
                " expr=? AND last_tick=?",
                (ts(tick), ts(now), workflow, trigger, expr, ts(prev_tick)),
            )
            if cur.rowcount != 1:
                return None
            return self._insert_firing(workflow, trigger, "schedule", tick, None, properties, now, note)

    # ---------------------------------------------------------------------------------------------- events

    def known_paths(self, workflow: str, trigger: str) -> set[str]:
        rows = self.conn.execute(
            "SELECT path FROM scheduler_events WHERE workflow=? AND trigger=?", (workflow, trigger)
        )
        return {r["path"] for r in rows}

    def has_baseline(self, workflow: str, trigger: str) -> bool:
        return self.conn.execute("SELECT 1 FROM scheduler_baselines WHERE workflow=? AND trigger=?",
                                 (workflow, trigger)).fetchone() is not None

    def take_baseline(self, workflow: str, trigger: str, files: list[tuple[str, int, int]], now: datetime) -> int:
        """The first start of an event trigger: `files` (already there) are known but never fire, as an
        EventBridge rule sees only objects created after it exists. A trigger that has events from before
        baselines existed keeps them and takes an empty baseline. Returns how many files went into it."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            if self.conn.execute("SELECT 1 FROM scheduler_baselines WHERE workflow=? AND trigger=?",
                                 (workflow, trigger)).fetchone() is not None:
                return 0
            if self.conn.execute("SELECT 1 FROM scheduler_events WHERE workflow=? AND trigger=? LIMIT 1",
                                 (workflow, trigger)).fetchone() is not None:
                files = []
            for path, size, mtime_ns in files:
                self.conn.execute(
                    "INSERT OR IGNORE INTO scheduler_events (workflow, trigger, path, size, mtime_ns, seen_at, batch_id)"
                    " VALUES (?,?,?,?,?,?,?)", (workflow, trigger, path, size, mtime_ns, ts(now), BASELINE))
            self.conn.execute("INSERT INTO scheduler_baselines (workflow, trigger, taken_at, n_files) VALUES (?,?,?,?)",
                              (workflow, trigger, ts(now), len(files)))
        return len(files)

    def release_baseline(self, workflow: str, trigger: str) -> int:
        """`etl scheduler --backfill`: the baseline's files become pending events (they fire in batches)."""
        with self.conn:
            cur = self.conn.execute("UPDATE scheduler_events SET batch_id=NULL WHERE workflow=? AND trigger=? AND "
                                    "batch_id=?", (workflow, trigger, BASELINE))
        return cur.rowcount

    def record_events(self, workflow: str, trigger: str, files: list[tuple[str, int, int]], now: datetime
                      ) -> list[tuple[str, int, int]]:
        """Record many files as events in one transaction (one fsync, not one per file); returns those that were
        not events yet."""
        added = []
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for path, size, mtime_ns in files:
                cur = self.conn.execute(
                    "INSERT OR IGNORE INTO scheduler_events (workflow, trigger, path, size, mtime_ns, seen_at)"
                    " VALUES (?,?,?,?,?,?)",
                    (workflow, trigger, path, size, mtime_ns, ts(now)),
                )
                if cur.rowcount == 1:
                    added.append((path, size, mtime_ns))
        return added

    def pending_events(self, workflow: str, trigger: str) -> list[Event]:
        rows = self.conn.execute(
            "SELECT * FROM scheduler_events WHERE workflow=? AND trigger=? AND batch_id IS NULL"
            " ORDER BY seen_at, mtime_ns, path",
            (workflow, trigger),
        )
        return [self._event(r) for r in rows]

    def events(self, workflow: str | None = None, trigger: str | None = None) -> list[Event]:
        sql, args = "SELECT * FROM scheduler_events WHERE 1=1", []
        if workflow:
            sql, args = sql + " AND workflow=?", [*args, workflow]
        if trigger:
            sql, args = sql + " AND trigger=?", [*args, trigger]
        return [self._event(r) for r in self.conn.execute(sql + " ORDER BY seen_at, mtime_ns, path", args)]

    @staticmethod
    def _event(r: sqlite3.Row) -> Event:
        return Event(r["workflow"], r["trigger"], r["path"], r["size"], r["mtime_ns"], parse_ts(r["seen_at"]),
                     r["batch_id"])

    def close_batch(
        self, workflow: str, trigger: str, paths: list[str], reason: str, now: datetime,
        properties_for: Any,
    ) -> tuple[int, int] | None:
        """Turn pending events into a batch and its firing in one transaction. `properties_for(batch_id)` builds
        the run properties. Returns (batch_id, firing_id), or None if any event was already batched."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            marks = ",".join("?" * len(paths))
            n = self.conn.execute(
                f"SELECT COUNT(*) FROM scheduler_events WHERE workflow=? AND trigger=? AND batch_id IS NULL"
                f" AND path IN ({marks})",
                (workflow, trigger, *paths),
            ).fetchone()[0]
            if n != len(paths):
                self.conn.execute("ROLLBACK")
                return None
            batch_id = self.conn.execute(
                "INSERT INTO scheduler_batches (workflow, trigger, reason, n_events, created_at) VALUES (?,?,?,?,?)",
                (workflow, trigger, reason, len(paths), ts(now)),
            ).lastrowid
            self.conn.execute(
                f"UPDATE scheduler_events SET batch_id=? WHERE workflow=? AND trigger=? AND path IN ({marks})",
                (batch_id, workflow, trigger, *paths),
            )
            firing_id = self._insert_firing(
                workflow, trigger, "event", now, batch_id, properties_for(batch_id), now, f"batch by {reason}"
            )
        return int(batch_id), firing_id

    def batches(self, workflow: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM scheduler_batches" + (" WHERE workflow=?" if workflow else "") + " ORDER BY batch_id"
        rows = self.conn.execute(sql, (workflow,) if workflow else ())
        out = []
        for r in rows:
            files = [e["path"] for e in self.conn.execute(
                "SELECT path FROM scheduler_events WHERE batch_id=? ORDER BY seen_at, mtime_ns, path", (r["batch_id"],))]
            out.append({**dict(r), "files": files})
        return out

    # --------------------------------------------------------------------------------------------- firings

    def _insert_firing(
        self, workflow: str, trigger: str, kind: str, due_at: datetime, batch_id: int | None,
        properties: dict[str, Any], now: datetime, note: str | None,
    ) -> int:
        cur = self.conn.execute(
            "INSERT INTO scheduler_firings (workflow, trigger, kind, due_at, batch_id, properties, state,"
            " created_at, note) VALUES (?,?,?,?,?,?,'waiting',?,?)",
            (workflow, trigger, kind, ts(due_at), batch_id, json.dumps(properties, default=str), ts(now), note),
        )
        return int(cur.lastrowid or 0)

    def firings(self, states: tuple[str, ...] | None = None, workflow: str | None = None) -> list[Firing]:
        sql, args = "SELECT * FROM scheduler_firings WHERE 1=1", []
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += list(states)
        if workflow:
            sql, args = sql + " AND workflow=?", [*args, workflow]
        return [Firing.from_row(r) for r in self.conn.execute(sql + " ORDER BY firing_id", args)]

    def mark_starting(self, firing_id: int, run_id: str) -> bool:
        """Store the run id before the run is started, so that a crash in between is recoverable."""
        with self.conn:
            cur = self.conn.execute(
                "UPDATE scheduler_firings SET state='starting', run_id=? WHERE firing_id=? AND state='waiting'",
                (run_id, firing_id),
            )
        return cur.rowcount == 1

    def mark_started(self, firing_id: int, now: datetime, note: str | None = None) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE scheduler_firings SET state='started', started_at=?, note=COALESCE(?, note)"
                " WHERE firing_id=?",
                (ts(now), note, firing_id),
            )

    def mark_done(self, firing_id: int, note: str | None = None) -> None:
        with self.conn:
            self.conn.execute("UPDATE scheduler_firings SET state='done', note=COALESCE(?, note) WHERE firing_id=?",
                              (note, firing_id))

    def firing_of_run(self, run_id: str) -> Firing | None:
        row = self.conn.execute("SELECT * FROM scheduler_firings WHERE run_id=?", (run_id,)).fetchone()
        return Firing.from_row(row) if row else None

    def mark_failed(self, firing_id: int, note: str) -> None:
        """The run could not start for a reason that retrying will not fix (e.g. its config broke)."""
        with self.conn:
            self.conn.execute("UPDATE scheduler_firings SET state='failed', note=? WHERE firing_id=?",
                              (note, firing_id))

    def mark_waiting(self, firing_id: int, note: str | None = None) -> None:
        """Back to the queue (limit reached, or a start that never happened)."""
        with self.conn:
            self.conn.execute(
                "UPDATE scheduler_firings SET state='waiting', run_id=NULL, note=COALESCE(?, note)"
                " WHERE firing_id=?",
                (note, firing_id),
            )


class StoreLocked(EtlError):
    """Another scheduler holds the state store (exit 1)."""


class SchedulerLock:
    """One scheduler per state store: an OS lock (flock) on `<state>.scheduler.lock`. The OS drops it when the
    holder dies, even by SIGKILL, so a crashed scheduler never blocks its restart; the file names the holder."""

    def __init__(self, state_path: str | Path) -> None:
        self.state_path = Path(state_path)
        self.path = Path(str(state_path) + ".scheduler.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise StoreLocked(
                f"another scheduler holds the state store {self.state_path}: {holder}\n"
                "  what to do: stop that scheduler first (SIGTERM), or run this one with another --env/state path"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {ts(datetime.now(UTC))}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def holder(self) -> str | None:
        """Who holds the lock now (None: nobody — a crashed holder's leftover text does not count)."""
        if not self.path.is_file():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return os.read(fd, 4096).decode(errors="replace").strip() or "unknown process"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
