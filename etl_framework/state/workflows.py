"""Workflow run records (Glue's WorkflowRun) in the shared SQLite state file, and the cross-process
`max_concurrent_runs` guard.

The guard is a `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock, counts the workflow's RUNNING runs whose
owner is still alive, and inserts the new run only below the limit. Liveness is the owner's pid *and* its process
start time (Linux `/proc/<pid>/stat`), so a pid reused after a crash is not mistaken for the owner; elsewhere, or on
another host, a heartbeat lease renewed by the running engine decides. Nothing is left behind by a crash that could
block a later run: a dead owner's RUNNING run is simply not counted (and `mark_orphaned_runs` marks it STOPPED).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl_framework.errors import EtlError
from etl_framework.state.db import connect, pid_alive

# Run states (Glue WorkflowRunStatus): RUNNING, COMPLETED, STOPPED, ERROR.
RUNNING, COMPLETED, STOPPED, ERROR = "RUNNING", "COMPLETED", "STOPPED", "ERROR"
LEASE_SECONDS = 60.0  # a heartbeat older than this means the owner is gone (only used when the pid can't be checked)

JOB_TERMINAL = ("SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "ERROR")
CRAWLER_TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
NODE_ACTIVE = ("WAITING", "STARTING", "RUNNING")

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflow_runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    workflow_path TEXT,
    env TEXT,
    executor TEXT,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    started_by TEXT,
    previous_run_id TEXT,
    properties TEXT NOT NULL DEFAULT '{}',
    statistics TEXT,
    error TEXT,
    owner_host TEXT,
    owner_pid INTEGER,
    owner_start TEXT,
    heartbeat_at REAL
);
CREATE INDEX IF NOT EXISTS workflow_runs_by_workflow ON workflow_runs (workflow, state);
CREATE TABLE IF NOT EXISTS workflow_nodes (
    run_id TEXT NOT NULL REFERENCES workflow_runs (run_id),
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT,
    trigger TEXT,
    arguments TEXT,
    started_at TEXT,
    ended_at TEXT,
    duration REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    job_run_id TEXT,
    job_run_ids TEXT NOT NULL DEFAULT '[]',
    copied_from TEXT,
    result TEXT,
    PRIMARY KEY (run_id, node)
);
CREATE TABLE IF NOT EXISTS workflow_triggers (
    run_id TEXT NOT NULL REFERENCES workflow_runs (run_id),
    trigger TEXT NOT NULL,
    state TEXT NOT NULL,
    at TEXT,
    reason TEXT,
    PRIMARY KEY (run_id, trigger)
);
"""


class ConcurrentRunsExceeded(EtlError):
    """`max_concurrent_runs` is reached (Glue's ConcurrentRunsExceededException); exit 1."""

    def __init__(self, workflow: str, limit: int, running: list[str]) -> None:
        self.workflow, self.limit, self.running = workflow, limit, running
        super().__init__(
            f"workflow {workflow}: max_concurrent_runs is {limit} and {len(running)} run(s) are running: "
            + ", ".join(running)
            + f"\n  what to do: wait for it to finish (`etl workflow status {running[0]}`), or raise"
            " max_concurrent_runs in the workflow file"
        )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    """Sortable by start time, unique across processes: wr_<UTC timestamp>_<random>."""
    return "wr_" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "_" + secrets.token_hex(4)


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), which tells a live owner from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_alive(row: sqlite3.Row | dict[str, Any], now: float | None = None) -> bool:
    """Is the process that owns this RUNNING run still there?"""
    pid = row["owner_pid"]
    if row["owner_host"] == socket.gethostname() and pid:
        if not pid_alive(pid):
            return False
        start = process_start(pid)
        if start is not None and row["owner_start"]:
            return start == row["owner_start"]
    beat = row["heartbeat_at"] or 0.0
    return ((now or time.time()) - beat) < LEASE_SECONDS


def _loads(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


class SqliteWorkflowStore:
    """Workflow run records in the state file; safe to share between the engine's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.conn = connect(self.path)
        # WAL + NORMAL: a commit survives a crash of this process (what matters for run records); only a power
        # loss may drop the last ones. It spares an fsync per node update.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.lock = threading.RLock()
        with self.lock:
            self.conn.executescript(SCHEMA)
            have = {r["name"] for r in self.conn.execute("PRAGMA table_info(workflow_nodes)")}
            if "result" not in have:  # a state file of an older version: maintain nodes' results (JSON)
                self.conn.execute("ALTER TABLE workflow_nodes ADD COLUMN result TEXT")

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    @contextmanager
    def tx(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; `immediate` takes the write lock first (read-then-write decisions)."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # ------------------------------------------------------------------------------------------------ runs

    def begin_run(
        self,
        workflow: str,
        *,
        max_concurrent_runs: int | None,
        nodes: dict[str, str],
        properties: dict[str, Any],
        workflow_path: str | None = None,
        env: str | None = None,
        executor: str | None = None,
        started_by: str | None = None,
        previous_run_id: str | None = None,
        run_id: str | None = None,
    ) -> str:
        """Insert a RUNNING run owned by this process, unless the workflow's live RUNNING runs already reach
        `max_concurrent_runs` (then ConcurrentRunsExceeded names them). Atomic across processes."""
        run_id = run_id or new_run_id()
        with self.tx(immediate=True) as c:
            if max_concurrent_runs is not None:
                rows = c.execute(
                    "SELECT * FROM workflow_runs WHERE workflow = ? AND state = ? ORDER BY started_at",
                    (workflow, RUNNING),
                ).fetchall()
                live = [r["run_id"] for r in rows if owner_alive(r)]
                if len(live) >= max_concurrent_runs:
                    raise ConcurrentRunsExceeded(workflow, max_concurrent_runs, live)
            c.execute(
                "INSERT INTO workflow_runs (run_id, workflow, workflow_path, env, executor, state, started_at,"
                " started_by, previous_run_id, properties, owner_host, owner_pid, owner_start, heartbeat_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id, workflow, workflow_path, env, executor, RUNNING, now_iso(), started_by,
                    previous_run_id, json.dumps(properties, default=str), socket.gethostname(), os.getpid(),
                    process_start(os.getpid()), time.time(),
                ),
            )
            c.executemany(
                "INSERT INTO workflow_nodes (run_id, node, kind) VALUES (?,?,?)",
                [(run_id, n, k) for n, k in nodes.items()],
            )
        return run_id

    def heartbeat(self, run_id: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE workflow_runs SET heartbeat_at = ? WHERE run_id = ?", (time.time(), run_id))

    def finish_run(
        self, run_id: str, state: str, statistics: dict[str, int], error: str | None = None
    ) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE workflow_runs SET state = ?, ended_at = ?, statistics = ?, error = ? WHERE run_id = ?",
                (state, now_iso(), json.dumps(statistics), error, run_id),
            )

    def update_node(self, run_id: str, node: str, **fields: Any) -> None:
        """Set columns of one node record (`arguments`/`job_run_ids`/`result` are stored as JSON)."""
        if not fields:
            return
        for key in ("arguments", "job_run_ids", "result"):
            if key in fields and fields[key] is not None and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key], default=str)
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as c:
            c.execute(f"UPDATE workflow_nodes SET {cols} WHERE run_id = ? AND node = ?", (*fields.values(), run_id, node))

    def set_trigger(self, run_id: str, trigger: str, state: str, reason: str | None = None) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO workflow_triggers (run_id, trigger, state, at, reason) VALUES (?,?,?,?,?)"
                " ON CONFLICT (run_id, trigger) DO UPDATE SET state = excluded.state, at = excluded.at,"
                " reason = excluded.reason",
                (run_id, trigger, state, now_iso(), reason),
            )

    # --------------------------------------------------------------------------------------------- reading

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run with its nodes and triggers, as plain data (what `workflow status --json` prints)."""
        with self.lock:
            row = self.conn.execute("SELECT * FROM workflow_runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            nodes = self.conn.execute(
                "SELECT * FROM workflow_nodes WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
            triggers = self.conn.execute(
                "SELECT * FROM workflow_triggers WHERE run_id = ? ORDER BY rowid", (run_id,)
            ).fetchall()
        run = dict(row)
        run["properties"] = _loads(run["properties"], {})
        run["statistics"] = _loads(run["statistics"], None)
        run["owner_alive"] = owner_alive(row) if run["state"] == RUNNING else None
        run["nodes"] = []
        for n in nodes:
            d = dict(n)
            d["arguments"] = _loads(d["arguments"], {})
            d["job_run_ids"] = _loads(d["job_run_ids"], [])
            d["result"] = _loads(d.get("result"), None)
            run["nodes"].append(d)
        run["triggers"] = [dict(t) for t in triggers]
        return run

    def latest_run_id(self, workflow: str | None = None) -> str | None:
        with self.lock:
            if workflow:
                row = self.conn.execute(
                    "SELECT run_id FROM workflow_runs WHERE workflow = ? ORDER BY started_at DESC, rowid DESC"
                    " LIMIT 1", (workflow,)
                ).fetchone()
            else:
                row = self.conn.execute(
                    "SELECT run_id FROM workflow_runs ORDER BY started_at DESC, rowid DESC LIMIT 1"
                ).fetchone()
        return row["run_id"] if row else None

    def list_runs(self, workflow: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        sql = ("SELECT run_id, workflow, state, started_at, ended_at, previous_run_id, statistics, owner_host,"
               " owner_pid, owner_start, heartbeat_at FROM workflow_runs")
        args: tuple[Any, ...] = ()
        if workflow:
            sql += " WHERE workflow = ?"
            args = (workflow,)
        sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        with self.lock:
            rows = self.conn.execute(sql, (*args, limit)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["statistics"] = _loads(d["statistics"], None)
            d["owner_alive"] = owner_alive(r) if d["state"] == RUNNING else None
            for k in ("owner_host", "owner_pid", "owner_start", "heartbeat_at"):
                del d[k]
            out.append(d)
        return out

    # ------------------------------------------------------------------------------------- run properties

    def get_properties(self, run_id: str) -> dict[str, Any]:
        with self.lock:
            row = self.conn.execute("SELECT properties FROM workflow_runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise EtlError(f"workflow run {run_id} not found in {self.path}")
        return _loads(row["properties"], {})

    def put_properties(self, run_id: str, values: dict[str, Any]) -> dict[str, Any]:
        """Merge `values` into the run's properties in one write transaction (concurrent jobs don't lose puts)."""
        with self.tx(immediate=True) as c:
            row = c.execute("SELECT properties FROM workflow_runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise EtlError(f"workflow run {run_id} not found in {self.path}")
            props = _loads(row["properties"], {})
            props.update(values)
            c.execute(
                "UPDATE workflow_runs SET properties = ? WHERE run_id = ?", (json.dumps(props, default=str), run_id)
            )
        return props

    def mark_orphaned_runs(self, workflow: str | None = None) -> list[str]:
        """Mark RUNNING runs whose owning process is gone as STOPPED (with the reason), their unfinished nodes as STOPPED
        (crawlers CANCELLED), and return their ids. Such runs can then be resumed with `etl workflow resume`."""
        marked: list[str] = []
        with self.tx(immediate=True) as c:
            sql, args = "SELECT * FROM workflow_runs WHERE state = ?", [RUNNING]
            if workflow:
                sql += " AND workflow = ?"
                args.append(workflow)
            for row in c.execute(sql, args).fetchall():
                if owner_alive(row):
                    continue
                reason = (
                    f"the process that ran it (pid {row['owner_pid']} on {row['owner_host']}) ended without finishing"
                    " the run; resume it with `etl workflow resume " + row["run_id"] + "`"
                )
                ts = now_iso()
                c.execute(
                    "UPDATE workflow_nodes SET state = CASE kind WHEN 'crawler' THEN 'CANCELLED' ELSE 'STOPPED' END,"
                    " ended_at = ?, error = ? WHERE run_id = ? AND state IN ('WAITING','STARTING','RUNNING')",
                    (ts, "stopped: the workflow run's process died", row["run_id"]),
                )
                nodes = c.execute("SELECT * FROM workflow_nodes WHERE run_id = ?", (row["run_id"],)).fetchall()
                stats = statistics_of([dict(n) for n in nodes])
                c.execute(
                    "UPDATE workflow_runs SET state = ?, ended_at = ?, error = ?, statistics = ? WHERE run_id = ?",
                    (STOPPED, ts, reason, json.dumps(stats), row["run_id"]),
                )
                marked.append(row["run_id"])
        return marked


WorkflowStore = SqliteWorkflowStore  # the SQLite implementation under its former name


class RunProperties:
    """A workflow run's properties as jobs see them (`ctx.run_properties`): Glue's get_/put_workflow_run_properties.
    Reads and writes go to the state store, so jobs in other processes (subprocess executor) share them."""

    def __init__(self, store: WorkflowStore | str | Path, run_id: str) -> None:
        self.store: Any = store if hasattr(store, "get_properties") else SqliteWorkflowStore(store)
        self.run_id = run_id

    def get(self, key: str, default: Any = None) -> Any:
        return self.store.get_properties(self.run_id).get(key, default)

    def get_all(self) -> dict[str, Any]:
        return self.store.get_properties(self.run_id)

    as_dict = get_all  # the name `engine.context.properties_dict` looks for

    def put(self, key: str | dict[str, Any], value: Any = None) -> None:
        values = dict(key) if isinstance(key, dict) else {key: value}
        self.store.put_properties(self.run_id, values)

    def update(self, values: dict[str, Any]) -> None:
        """Several properties in one transaction (as GlueRunProperties.update)."""
        self.store.put_properties(self.run_id, dict(values))

    def run_vars(self) -> dict[str, Any]:
        """What `${run.X}` sees: the properties plus `id` and `date` (the run's start day, UTC)."""
        run = self.store.get_run(self.run_id) or {}
        started = str(run.get("started_at") or now_iso())
        return {**self.get_all(), "id": self.run_id, "date": started[:10]}

    def __getitem__(self, key: str) -> Any:
        props = self.get_all()
        if key not in props:
            raise KeyError(key)
        return props[key]

    def __contains__(self, key: object) -> bool:
        return key in self.get_all()

    def __repr__(self) -> str:
        return f"RunProperties({self.run_id})"


def run_properties_for(state_path: str | Path, workflow_run_id: str | None) -> RunProperties | None:
    """The run properties of a workflow run for a job started in another process (the subprocess executor passes
    `--WORKFLOW_RUN_ID`); None outside a workflow or when the run is not in this state file."""
    if not workflow_run_id:
        return None
    store = WorkflowStore(state_path)
    if store.get_run(workflow_run_id) is None:
        store.close()
        return None
    return RunProperties(store, workflow_run_id)


def run_states(state_path: str | Path, run_id: str, workflow: str | None = None) -> dict[str, str]:
    """node -> state of a workflow run (for `etl plan --run`); nodes that did not run are left out."""
    store = WorkflowStore(state_path)
    try:
        run = store.get_run(run_id)
    finally:
        store.close()
    if run is None:
        from etl_framework.errors import UsageError

        raise UsageError(f"no workflow run {run_id} in {state_path}\n  what to do: `etl workflow status --list`")
    if workflow and run["workflow"] != workflow:
        from etl_framework.errors import UsageError

        raise UsageError(f"run {run_id} is a run of workflow {run['workflow']}, not {workflow}")
    return {n["node"]: n["state"] for n in run["nodes"] if n["state"]}


def mark_orphaned_runs(store: Any, workflow: str | None = None) -> list[str]:
    """Mark RUNNING runs whose owning process is gone as STOPPED (with the reason), their unfinished nodes as STOPPED
    (crawlers CANCELLED), and return their ids. Such runs can then be resumed with `etl workflow resume`."""
    return list(store.mark_orphaned_runs(workflow))


def statistics_of(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """Glue's WorkflowRunStatistics over the nodes that ran in this run (copied nodes of a resume are not actions
    of this run)."""
    stats = {
        "TotalActions": 0, "RunningActions": 0, "SucceededActions": 0, "FailedActions": 0, "TimeoutActions": 0,
        "StoppedActions": 0, "ErroredActions": 0, "WaitingActions": 0,
    }
    key = {
        "SUCCEEDED": "SucceededActions", "FAILED": "FailedActions", "TIMEOUT": "TimeoutActions",
        "STOPPED": "StoppedActions", "CANCELLED": "StoppedActions", "ERROR": "ErroredActions",
        "WAITING": "WaitingActions", "STARTING": "RunningActions", "RUNNING": "RunningActions",
    }
    for n in nodes:
        if n.get("copied_from") or not n.get("state"):
            continue
        stats["TotalActions"] += 1
        stats[key[n["state"]]] += 1
    return stats


def open_workflow_store(env_config: Any) -> Any:
    """The workflow store of an env config's state backend (SQLite file, or DynamoDB)."""
    from etl_framework.state import open_state

    return open_state(env_config).workflows
