"""The embedded catalog: one SQLite file (env config `catalog.path`) holding the Glue Data Catalog's model.

Each table row keeps the whole Glue-shaped table as JSON, so nothing of the model is lost between backends;
partitions are rows keyed by their values so that adding the same partition twice is a no-op, as in Glue.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from etl_framework.catalog.base import CatalogError, Database, Partition, Table
from etl_framework.state.db import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_databases (
  name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '', location TEXT, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalog_tables (
  database TEXT NOT NULL REFERENCES catalog_databases(name) ON DELETE CASCADE, name TEXT NOT NULL,
  doc TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL, PRIMARY KEY (database, name));
CREATE TABLE IF NOT EXISTS catalog_partitions (
  database TEXT NOT NULL, table_name TEXT NOT NULL, vals TEXT NOT NULL, location TEXT NOT NULL,
  parameters TEXT NOT NULL DEFAULT '{}', created TEXT NOT NULL, PRIMARY KEY (database, table_name, vals),
  FOREIGN KEY (database, table_name) REFERENCES catalog_tables(database, name) ON DELETE CASCADE);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LocalCatalog:
    """SQLite-backed catalog; safe across processes (WAL, busy timeout)."""

    backend = "local"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = connect(self.path, role="catalog")
                self._conn.executescript(SCHEMA)
            except sqlite3.Error as e:
                raise CatalogError(
                    f"cannot open the catalog file {self.path}: {e}\n"
                    "  what to do: check catalog.path in the env config and that the folder is writable"
                ) from e
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # databases
    def list_databases(self) -> list[Database]:
        rows = self.conn.execute("SELECT name, description, location FROM catalog_databases ORDER BY name")
        return [Database(r["name"], r["description"], r["location"]) for r in rows]

    def get_database(self, name: str) -> Database | None:
        r = self.conn.execute(
            "SELECT name, description, location FROM catalog_databases WHERE name = ?", (name,)
        ).fetchone()
        return Database(r["name"], r["description"], r["location"]) if r else None

    def ensure_database(self, name: str, description: str = "") -> bool:
        with self.conn:
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO catalog_databases (name, description, created) VALUES (?, ?, ?)",
                (name, description, _now()),
            )
        return cur.rowcount > 0

    # tables
    def list_tables(self, database: str | None = None) -> list[Table]:
        if database is None:
            rows = self.conn.execute("SELECT doc FROM catalog_tables ORDER BY database, name")
        else:
            rows = self.conn.execute("SELECT doc FROM catalog_tables WHERE database = ? ORDER BY name", (database,))
        return [Table.from_dict(json.loads(r["doc"])) for r in rows]

    def get_table(self, database: str, name: str) -> Table | None:
        r = self.conn.execute(
            "SELECT doc FROM catalog_tables WHERE database = ? AND name = ?", (database, name)
        ).fetchone()
        return Table.from_dict(json.loads(r["doc"])) if r else None

    def create_table(self, table: Table) -> None:
        now = _now()
        table.create_time = table.create_time or now
        table.update_time = now
        try:
            with self.conn:
                self.conn.execute(
                    "INSERT INTO catalog_tables (database, name, doc, created, updated) VALUES (?, ?, ?, ?, ?)",
                    (table.database, table.name, json.dumps(table.to_dict()), now, now),
                )
        except sqlite3.IntegrityError as e:
            raise CatalogError(f"cannot create table {table.full_name}: {e} (does its database exist?)") from e

    def update_table(self, table: Table) -> None:
        old = self.get_table(table.database, table.name)
        if old is None:
            raise CatalogError(f"cannot update table {table.full_name}: it does not exist")
        now = _now()
        table.create_time = old.create_time
        table.update_time = now
        with self.conn:
            self.conn.execute(
                "UPDATE catalog_tables SET doc = ?, updated = ? WHERE database = ? AND name = ?",
                (json.dumps(table.to_dict()), now, table.database, table.name),
            )

    def delete_table(self, database: str, name: str) -> None:
        with self.conn:
            self.conn.execute("DELETE FROM catalog_tables WHERE database = ? AND name = ?", (database, name))

    # partitions
    def get_partitions(self, database: str, table: str) -> list[Partition]:
        rows = self.conn.execute(
            "SELECT vals, location, parameters FROM catalog_partitions WHERE database = ? AND table_name = ? "
            "ORDER BY vals",
            (database, table),
        )
        return [Partition(json.loads(r["vals"]), r["location"], json.loads(r["parameters"])) for r in rows]

    def add_partitions(self, database: str, table: str, partitions: list[Partition]) -> int:
        now = _now()
        added = 0
        with self.conn:
            for p in partitions:
                cur = self.conn.execute(
                    "INSERT OR IGNORE INTO catalog_partitions (database, table_name, vals, location, parameters, "
                    "created) VALUES (?, ?, ?, ?, ?, ?)",
                    (database, table, json.dumps(p.values), p.location, json.dumps(p.parameters), now),
                )
                added += cur.rowcount
        return added
