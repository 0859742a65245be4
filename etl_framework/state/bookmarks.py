"""The state store's cache of job bookmarks, and the log of explicit resets (SQLite).

The target table is the truth (see `etl_framework.incremental`); this cache makes `etl bookmarks show` and the
"no new input" decision instant, and is reconciled from the table at the start of every run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl_framework.incremental import Bookmark
from etl_framework.state.base import BookmarkStore
from etl_framework.state.db import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS bookmarks (
  job TEXT PRIMARY KEY, version INTEGER NOT NULL, run_id TEXT, data TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bookmark_history (
  id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, version INTEGER NOT NULL, run_id TEXT,
  action TEXT NOT NULL, data TEXT NOT NULL, at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS bookmark_history_job ON bookmark_history(job, id);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SqliteBookmarkStore:
    def __init__(self, path: str | Path) -> None:
        self.conn = connect(path)
        self.conn.executescript(SCHEMA)

    def get(self, job: str) -> Bookmark:
        row = self.conn.execute("SELECT data FROM bookmarks WHERE job=?", (job,)).fetchone()
        return Bookmark.from_json(json.loads(row["data"])) if row else Bookmark(job=job)

    def put(self, bookmark: Bookmark, action: str = "commit") -> None:
        """Store the bookmark; `action` (commit | reconcile | reset) is kept in the history."""
        data = json.dumps(bookmark.to_json(), default=str)
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT INTO bookmarks(job, version, run_id, data, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(job) DO UPDATE SET version=excluded.version, run_id=excluded.run_id, "
                "data=excluded.data, updated_at=excluded.updated_at",
                (bookmark.job, bookmark.version, bookmark.run_id, data, _now()),
            )
            self.conn.execute(
                "INSERT INTO bookmark_history(job, version, run_id, action, data, at) VALUES (?,?,?,?,?,?)",
                (bookmark.job, bookmark.version, bookmark.run_id, action, data, _now()),
            )

    def history(self, job: str) -> list[dict]:
        rows = self.conn.execute(
            "SELECT version, run_id, action, at FROM bookmark_history WHERE job=? ORDER BY id", (job,)
        ).fetchall()
        return [dict(r) for r in rows]

    def entries(self, job: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT version, run_id, action, data, at FROM bookmark_history WHERE job=? "
                                 "ORDER BY id", (job,)).fetchall()
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def close(self) -> None:
        self.conn.close()

    def at_run(self, job: str, run_id: str) -> Bookmark | None:
        """The bookmark as it was right after `run_id` committed (for `etl bookmarks reset --to RUN_ID`)."""
        row = self.conn.execute(
            "SELECT data FROM bookmark_history WHERE job=? AND run_id=? AND action IN ('commit','reconcile') "
            "ORDER BY id DESC LIMIT 1", (job, run_id),
        ).fetchone()
        return Bookmark.from_json(json.loads(row["data"])) if row else None


def open_bookmark_store(env_config: object) -> BookmarkStore:
    """The bookmark cache of the env's state backend (SQLite file, or DynamoDB)."""
    from etl_framework.state import open_state

    return open_state(env_config).bookmarks
