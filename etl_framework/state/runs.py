"""Job runs, stage records and target write locks in the local SQLite state file (the `RunStore` protocol)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl_framework.state.base import TargetLocked
from etl_framework.state.db import connect
from etl_framework.state.locks import (
    LEASE_SECONDS,
    as_keys,
    dead_reason,
    overlaps,
    takeover_error,
    unlock_error,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS job_runs (
    run_id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    env TEXT,
    job_path TEXT,
    params TEXT,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    duration_s REAL,
    error TEXT,
    error_stage TEXT,
    exit_code INTEGER,
    workflow_run_id TEXT,
    host TEXT,
    pid INTEGER,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS job_runs_job ON job_runs (job, started_at);
CREATE INDEX IF NOT EXISTS job_runs_wf ON job_runs (workflow_run_id);
CREATE TABLE IF NOT EXISTS job_run_stages (
    run_id TEXT NOT NULL REFERENCES job_runs (run_id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL DEFAULT 1,
    stage TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    duration_s REAL,
    metrics TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    PRIMARY KEY (run_id, attempt, stage)
);
CREATE TABLE IF NOT EXISTS target_locks (
    target TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    job TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    acquired_at TEXT NOT NULL,
    lease_until REAL,
    heartbeat_at REAL
);
"""

RUN_FIELDS = (
    "run_id", "job", "env", "job_path", "params", "status", "attempt", "started_at", "ended_at", "duration_s",
    "error", "error_stage", "exit_code", "workflow_run_id", "host", "pid", "details",
)
JSON_FIELDS = ("params", "details", "metrics")


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for k in JSON_FIELDS:
        if k in out and isinstance(out[k], str):
            try:
                out[k] = json.loads(out[k])
            except ValueError:
                pass
    return out


class SqliteRunStore:
    """The local `RunStore`: one SQLite file (WAL) shared by every process of the project."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = connect(self.path)
        self._migrate()
        self.conn.executescript(SCHEMA)

    def _migrate(self) -> None:
        """A state file of an older version gets the columns this one reads (its rows stay as they are)."""
        added = {"job_runs": {"details": "TEXT NOT NULL DEFAULT '{}'", "attempt": "INTEGER NOT NULL DEFAULT 1",
                              **{c: "TEXT" for c in RUN_FIELDS}},
                 "target_locks": {"lease_until": "REAL", "heartbeat_at": "REAL"}}
        for table, columns in added.items():
            have = {r["name"] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            for col, decl in columns.items():
                if have and col not in have:
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} {decl}")

    def close(self) -> None:
        self.conn.close()

    # ---------------------------------------------------------------------------------------------- runs
    def create_run(self, run: dict[str, Any]) -> None:
        rec = {"status": "RUNNING", "attempt": 1, "host": socket.gethostname(), "pid": os.getpid(),
               "details": {}, **run}
        old = self.conn.execute("SELECT details FROM job_runs WHERE run_id = ?", (rec["run_id"],)).fetchone()
        if old is not None and old["details"]:  # a resumed attempt keeps what earlier attempts recorded
            rec["details"] = {**json.loads(old["details"]), **rec["details"]}
        cols = [k for k in RUN_FIELDS if k in rec]
        vals = [json.dumps(rec[k], default=str) if k in ("params", "details") else rec[k] for k in cols]
        with self.conn:
            self.conn.execute(
                f"INSERT OR REPLACE INTO job_runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", vals
            )

    def update_run(self, run_id: str, **fields: Any) -> None:
        bad = set(fields) - set(RUN_FIELDS)
        if bad:
            raise ValueError(f"unknown run fields {sorted(bad)}")
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        vals = [json.dumps(v, default=str) if k in ("params", "details") else v for k, v in fields.items()]
        with self.conn:
            self.conn.execute(f"UPDATE job_runs SET {sets} WHERE run_id = ?", [*vals, run_id])

    def set_detail(self, run_id: str, key: str, value: Any) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            row = self.conn.execute("SELECT details FROM job_runs WHERE run_id = ?", (run_id,)).fetchone()
            details = json.loads(row["details"]) if row and row["details"] else {}
            details[key] = value
            self.conn.execute("UPDATE job_runs SET details = ? WHERE run_id = ?",
                              (json.dumps(details, default=str), run_id))

    # -------------------------------------------------------------------------------------------- stages
    def start_stage(self, run_id: str, stage: str, seq: int, started_at: str, attempt: int = 1) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO job_run_stages (run_id, attempt, stage, seq, status, started_at) "
                "VALUES (?, ?, ?, ?, 'RUNNING', ?)", (run_id, attempt, stage, seq, started_at))

    def finish_stage(self, run_id: str, stage: str, *, status: str, ended_at: str | None = None,
                     duration_s: float | None = None, metrics: dict[str, Any] | None = None,
                     error: str | None = None, attempt: int = 1, seq: int | None = None) -> None:
        ended_at = ended_at or utcnow()
        metrics_json = json.dumps(metrics or {}, default=str)
        with self.conn:
            cur = self.conn.execute(
                "UPDATE job_run_stages SET status = ?, ended_at = ?, duration_s = ?, metrics = ?, error = ? "
                "WHERE run_id = ? AND attempt = ? AND stage = ?",
                (status, ended_at, duration_s, metrics_json, error, run_id, attempt, stage))
            if cur.rowcount == 0:
                self.conn.execute(
                    "INSERT INTO job_run_stages (run_id, attempt, stage, seq, status, started_at, ended_at, "
                    "duration_s, metrics, error) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
                    (run_id, attempt, stage, seq or 0, status, ended_at, duration_s, metrics_json, error))

    def update_stage_metrics(self, run_id: str, stage: str, metrics: dict[str, Any], attempt: int = 1) -> None:
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            row = self.conn.execute(
                "SELECT metrics FROM job_run_stages WHERE run_id = ? AND attempt = ? AND stage = ?",
                (run_id, attempt, stage)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row["metrics"] or "{}"), **metrics}
            self.conn.execute(
                "UPDATE job_run_stages SET metrics = ? WHERE run_id = ? AND attempt = ? AND stage = ?",
                (json.dumps(merged, default=str), run_id, attempt, stage))

    # ------------------------------------------------------------------------------------------- queries
    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM job_runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        run = _row(row)
        stages = self.conn.execute(
            "SELECT stage, seq, attempt, status, started_at, ended_at, duration_s, metrics, error "
            "FROM job_run_stages WHERE run_id = ? ORDER BY attempt, seq", (run_id,)).fetchall()
        run["stages"] = [_row(s) for s in stages]
        return run

    def list_runs(self, job: str | None = None, limit: int = 50,
                  workflow_run_id: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if job:
            where.append("job = ?")
            args.append(job)
        if workflow_run_id:
            where.append("workflow_run_id = ?")
            args.append(workflow_run_id)
        sql = "SELECT * FROM job_runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY started_at DESC, run_id DESC LIMIT ?"
        rows = self.conn.execute(sql, [*args, limit]).fetchall()
        return [_row(r) for r in rows]

    # ------------------------------------------------------------------------------------------- locks
    def acquire_target_lock(self, targets: str | list[str], run_id: str, job: str) -> None:
        """Take the write locks of `targets` (all or none) or raise TargetLocked naming a live holder of any lock
        on the same or an enclosing/enclosed path; a dead holder's lock is taken over and its run marked."""
        keys = as_keys(targets)
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for row in self.conn.execute("SELECT * FROM target_locks").fetchall():
                holder = dict(row)
                hit = next((k for k in keys if overlaps(holder["target"], k)), None)
                if hit is None or holder["run_id"] == run_id:
                    continue
                run = self.conn.execute("SELECT status FROM job_runs WHERE run_id = ?",
                                        (holder["run_id"],)).fetchone()
                reason = dead_reason(holder, run["status"] if run else None, now)
                if reason is None:
                    raise TargetLocked(holder["target"], holder)
                # the holder is gone: its run record says RUNNING forever unless we say so
                self.conn.execute("UPDATE job_runs SET status = 'FAILED', ended_at = ?, error = ? "
                                  "WHERE run_id = ? AND status = 'RUNNING'",
                                  (utcnow(), takeover_error(holder, reason, run_id, hit), holder["run_id"]))
                self.conn.execute("DELETE FROM target_locks WHERE target = ?", (holder["target"],))
            for key in keys:
                self.conn.execute(
                    "INSERT OR REPLACE INTO target_locks (target, run_id, job, host, pid, acquired_at, lease_until, "
                    "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, run_id, job, socket.gethostname(), os.getpid(), utcnow(), now + LEASE_SECONDS, now))

    def renew_target_lock(self, targets: list[str], run_id: str) -> bool:
        """Extend the lease; False when a lock is no longer this run's. Own connection: called from a thread."""
        now = time.time()
        conn = connect(self.path)
        try:
            with conn:
                cur = conn.execute(
                    f"UPDATE target_locks SET lease_until = ?, heartbeat_at = ? WHERE run_id = ? AND target IN "
                    f"({', '.join('?' * len(targets))})", (now + LEASE_SECONDS, now, run_id, *targets))
            return cur.rowcount == len(targets)
        finally:
            conn.close()

    def release_target_lock(self, targets: str | list[str], run_id: str) -> None:
        keys = as_keys(targets)
        with self.conn:
            self.conn.execute(f"DELETE FROM target_locks WHERE run_id = ? AND target IN ({', '.join('?' * len(keys))})",
                              (run_id, *keys))

    def target_lock(self, target: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM target_locks WHERE target = ?", (target,)).fetchone()
        return dict(row) if row else None

    def list_locks(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM target_locks ORDER BY target")]

    def force_unlock(self, target: str, by: str) -> list[dict[str, Any]]:
        """Release every lock on `target` or inside it by hand; the holders' RUNNING runs are marked FAILED."""
        out = []
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for row in self.conn.execute("SELECT * FROM target_locks").fetchall():
                holder = dict(row)
                if holder["target"] == target or holder["target"].startswith(target.rstrip("/") + "/"):
                    self.conn.execute("DELETE FROM target_locks WHERE target = ?", (holder["target"],))
                    self.conn.execute("UPDATE job_runs SET status = 'FAILED', ended_at = ?, error = ? "
                                      "WHERE run_id = ? AND status = 'RUNNING'",
                                      (utcnow(), unlock_error(holder, by), holder["run_id"]))
                    out.append(holder)
        return out


def open_run_store(env_config: Any) -> Any:
    """The run store of an env config's state backend (SQLite file, or DynamoDB)."""
    from etl_framework.state import open_state

    return open_state(env_config).runs
