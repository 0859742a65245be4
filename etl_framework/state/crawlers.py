"""Crawler runs and the files each crawler has read (the `CrawlerStore` protocol) in the SQLite state file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl_framework.state.db import connect

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS crawler_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, crawler TEXT NOT NULL, database TEXT NOT NULL, table_name TEXT,
  path TEXT NOT NULL, schema_change TEXT NOT NULL, state TEXT NOT NULL, started TEXT NOT NULL, ended TEXT,
  message TEXT NOT NULL DEFAULT '', changes TEXT NOT NULL DEFAULT '[]', stats TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS crawler_files (
  crawler TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
  PRIMARY KEY (crawler, path));
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SqliteCrawlerStore:
    """Crawler runs and the files each crawler has read, in the state database (the `CrawlerStore` protocol)."""

    def __init__(self, path: str | Path) -> None:
        self.conn = connect(path)
        self.conn.executescript(STATE_SCHEMA)

    def start(self, crawler: str, database: str, table: str | None, path: str, policy: str) -> int:
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO crawler_runs (crawler, database, table_name, path, schema_change, state, started) "
                "VALUES (?, ?, ?, ?, ?, 'RUNNING', ?)",
                (crawler, database, table, path, policy, _now()),
            )
        return int(cur.lastrowid or 0)

    def finish(self, run_id: int, result: Any) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE crawler_runs SET state = ?, ended = ?, message = ?, changes = ?, stats = ?, table_name = ? "
                "WHERE id = ?",
                (result.state, result.ended, result.message, json.dumps(result.changes, default=str),
                 json.dumps(result.stats, default=str), result.table, run_id),
            )

    def seen(self, crawler: str) -> dict[str, tuple[int, float]]:
        rows = self.conn.execute("SELECT path, size, mtime FROM crawler_files WHERE crawler = ?", (crawler,))
        return {r["path"]: (r["size"], r["mtime"]) for r in rows}

    def last_path(self, crawler: str) -> str | None:
        r = self.conn.execute("SELECT path FROM crawler_runs WHERE crawler = ? AND state = 'SUCCEEDED' "
                              "ORDER BY id DESC LIMIT 1", (crawler,)).fetchone()
        return r["path"] if r else None

    def forget(self, crawler: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM crawler_files WHERE crawler = ?", (crawler,))

    def remember(self, crawler: str, files: list[Any]) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO crawler_files (crawler, path, size, mtime) VALUES (?, ?, ?, ?)",
                [(crawler, f.rel, f.size, f.mtime) for f in files],
            )

    def runs(self, crawler: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT * FROM crawler_runs"
        args: tuple[Any, ...] = ()
        if crawler:
            sql += " WHERE crawler = ?"
            args = (crawler,)
        rows = self.conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["changes"] = json.loads(d["changes"])
            d["stats"] = json.loads(d["stats"])
            out.append(d)
        return out

    def close(self) -> None:
        self.conn.close()
