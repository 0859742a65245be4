"""Helpers shared by the runtime tests: tiny CSV inputs, one-call job runs with a real SQLite run store, and
independent readers of the results (delta-rs for Delta, pyarrow for committed Parquet)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from etl_framework.config.model import JobConfig
from etl_framework.engine.job import JobRunResult, run_loaded
from etl_framework.state.runs import SqliteRunStore

HEADER = "trip_id,pickup_ts,zone_id,distance,fare"
SCHEMA = {"trip_id": "long", "pickup_ts": "timestamp", "zone_id": "int", "distance": "double", "fare": "double"}


def write_csv(folder: Path, rows: list[str], name: str = "part-0.csv", header: str = HEADER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return p


def trips(ids: range | list[int], day: str = "2024-01-01", fare: float = 10.0) -> list[str]:
    return [f"{i},{day} 10:{i % 60:02d}:00,{i % 3},{1.0 + i},{fare + i}" for i in ids]


def job(src: Path, target: Path, *, fmt: str = "delta", mode: str = "append", partition_by: list[str] | None = None,
        merge_keys: list[str] | None = None, transform: list[dict[str, Any]] | None = None,
        source: dict[str, Any] | None = None, name: str = "rt_job", **extra: Any) -> JobConfig:
    src_cfg = {"format": "csv", "path": str(src), "options": {"header": True}, "schema": SCHEMA, **(source or {})}
    return JobConfig.model_validate({
        "job": name,
        "sources": {"trips": src_cfg},
        "transform": transform if transform is not None else [{"with_columns": {"day": "to_date(pickup_ts)"}}],
        "target": {"format": fmt, "path": str(target), "mode": mode,
                   "partition_by": partition_by if partition_by is not None else ["day"],
                   "merge_keys": merge_keys or []},
        **extra,
    })


def run(spark: Any, cfg: JobConfig, store_path: Path, **kw: Any) -> JobRunResult:
    store = SqliteRunStore(store_path)
    try:
        return run_loaded(cfg, spark=spark, store=store, quiet=True, **kw)
    finally:
        store.close()


def delta_rows(path: Path, order: str = "trip_id") -> list[dict[str, Any]]:
    """The table as delta-rs (an independent reader) sees it."""
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    dt = DeltaTable(str(path))
    table = dt.to_pyarrow_table(filesystem=pafs.SubTreeFileSystem(str(path), pafs.LocalFileSystem()))
    return sorted(table.to_pylist(), key=lambda r: r[order])


def parquet_rows(path: Path, order: str = "trip_id") -> list[dict[str, Any]]:
    """The committed Parquet table as pyarrow sees it, file by file from the manifest (partition values from
    the folder names)."""
    import pyarrow.parquet as pq

    manifest = json.loads((path / "_etl_manifest.json").read_text())
    out = []
    for f in manifest["files"]:
        parts = dict(p.split("=", 1) for p in Path(f["path"]).parent.parts if "=" in p)
        for row in pq.read_table(path / f["path"]).to_pylist():
            out.append({**row, **parts})
    return sorted(out, key=lambda r: r[order])


def iceberg_rows(path: Path | str, catalog_file: Path, order: str = "trip_id",
                 properties: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The Iceberg table's current snapshot as pyiceberg (an independent reader) sees it: the metadata file the
    catalog points at, read with no JVM."""
    import sqlite3

    from pyiceberg.table import StaticTable

    from etl_framework.tables.iceberg import CATALOG, NAMESPACE, table_name

    con = sqlite3.connect(catalog_file)
    try:
        row = con.execute("SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND "
                          "table_namespace = ? AND table_name = ?", (CATALOG, NAMESPACE, table_name(str(path)))
                          ).fetchone()
    finally:
        con.close()
    assert row is not None, f"no Iceberg table for {path} in {catalog_file}"
    table = StaticTable.from_metadata(str(row[0]).removeprefix("file:"), properties=properties or {}).scan().to_arrow()
    return sorted(table.to_pylist(), key=lambda r: r[order])


def snapshot(path: Path) -> dict[str, str]:
    """Every file under path with its content hash: 'unchanged' means byte for byte."""
    if not path.exists():
        return {}
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    out = {}
    for root, _dirs, files in os.walk(path):
        for f in files:
            full = Path(root) / f
            out[str(full.relative_to(path))] = hashlib.sha256(full.read_bytes()).hexdigest()
    return out


def test_helpers_read_what_they_write(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "in", trips(range(3)))
    assert p.read_text().count("\n") == 4
    assert snapshot(tmp_path / "in") == snapshot(tmp_path / "in")
