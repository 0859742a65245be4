"""See the data you just made (issue 22 part 5): the quarantine and bad-records tables are registered beside
their target, and `etl query` reads them by name with nothing downloaded (DuckDB gets Arrow data from delta-rs
and the Parquet manifest, never an extension); `etl preview` shows the transform's rows on a sample and the
quality verdict, and writes nothing."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from etl_framework.catalog.local import LocalCatalog
from etl_framework.cli import cli
from etl_framework.cli.common import run_cli

JOB = """
job: orders_load
sources:
  orders:
    format: csv
    path: ../data/raw/orders
    options: {header: true}
    schema: {order_id: long, amount: double, ts: timestamp}
    bad_records: quarantine
transform:
  - with_columns: {doubled: amount * 2}
quality:
  - {expect: expect_column_values_to_be_between, column: amount, min_value: 0, on_fail: quarantine}
target:
  format: delta
  path: ../data/lake/orders
register: {database: shop, table: orders}
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Path:
    """A project whose job has run once: target, quarantine and bad-records tables written and registered."""
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job

    root = tmp_path_factory.mktemp("see") / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    (root / "jobs" / "orders.yaml").write_text(JOB)
    raw = root / "data" / "raw" / "orders"
    raw.mkdir(parents=True)
    (raw / "a.csv").write_text("order_id,amount,ts\n1,10.5,2024-01-01 10:00:00\n2,-3,2024-01-01 11:00:00\n"
                               "3,oops,2024-01-01 12:00:00\n4,7,2024-01-01 13:00:00\n")
    res = run_job(root / "jobs" / "orders.yaml", project=Project(root), spark=spark, quiet=True)
    assert res.status == "SUCCEEDED", (res.error, res.hint)
    return root


def test_quarantine_and_bad_records_are_queried_by_name_without_downloads(made: Path, tmp_path: Path) -> None:
    root = made
    cat = LocalCatalog(root / ".etl" / "catalog.db")
    names = {t.full_name: t for t in cat.list_tables()}
    assert set(names) == {"shop.orders", "shop.orders_quarantine", "shop.orders_bad_records"}
    assert names["shop.orders_quarantine"].format == "delta"
    assert names["shop.orders_bad_records"].format == "parquet"
    cat.close()

    home = tmp_path / "home"
    home.mkdir()
    # no network (a download would go through a proxy that is not there) and an empty home for DuckDB's extensions
    env = {**os.environ, "HOME": str(home), "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    etl = str(Path(sys.executable).parent / "etl")

    def query(sql: str) -> list[dict[str, Any]]:
        q = subprocess.run([etl, "--project-dir", str(root), "query", "--json", sql], capture_output=True, text=True,
                           timeout=120, check=False, env=env)
        assert q.returncode == 0, q.stderr
        return json.loads(q.stdout)

    assert query("SELECT order_id FROM shop.orders ORDER BY 1") == [{"order_id": 1}, {"order_id": 4}]
    assert [r["order_id"] for r in query("SELECT order_id FROM shop.orders_quarantine")] == [2]
    bad = query("SELECT raw_record, unparsed_columns FROM shop.orders_bad_records")
    assert bad == [{"raw_record": "3,oops,2024-01-01 12:00:00", "unparsed_columns": "amount"}]
    assert not list(home.rglob("*.duckdb_extension*")) and not (home / ".duckdb").exists()


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under the project (data, state, catalog) by content hash and mtime."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + f"@{p.stat().st_mtime_ns}"
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_preview_prints_transform_rows_and_verdict_and_writes_nothing(made: Path, spark: Any) -> None:
    root = made
    (root / "data" / "raw" / "orders" / "b.csv").write_text("order_id,amount,ts\n9,1.5,2024-01-02 10:00:00\n")
    for db in (root / ".etl" / "catalog.db", root / ".etl" / "state.db"):
        # what earlier writers left in the WAL goes into the file now: a reader closing the last connection
        # would checkpoint it, changing the file's bytes though preview wrote nothing
        with contextlib.closing(sqlite3.connect(db)) as con:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = _snapshot(root)
    out, err = io.StringIO(), io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_cli(cli, ["--project-dir", str(root), "preview", str(root / "jobs" / "orders.yaml"), "--limit", "10"])
    took = time.monotonic() - t0
    assert rc == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["order_id", "amount", "ts", "doubled"]
    assert sorted(line.split()[0] for line in lines[2:]) == ["1", "2", "4", "9"]  # the new file is in the sample
    assert "nothing was written" in err.getvalue()
    assert "1 malformed row(s) in the sample" in err.getvalue()
    assert "quality verdict on the sample: PASS" in err.getvalue() and "1 rows quarantined" in err.getvalue()
    assert _snapshot(root) == before  # target, quarantine, bad records, state, catalog: byte-identical
    from etl_framework.state.runs import SqliteRunStore

    store = SqliteRunStore(root / ".etl" / "state.db")
    assert store.list_locks() == [] and len(store.list_runs()) == 1  # no lock kept, no run recorded
    store.close()
    print(f"etl preview took {took:.1f} s")
