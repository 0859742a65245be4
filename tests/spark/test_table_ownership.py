"""A job only ever touches its own table (SPEC §13): a target folder holding anything its table's commits did not
make is refused before any data is read — a lake root, a parent folder, another table, a file that landed between
two writes — and every foreign file stays byte for byte; locally and on S3 (moto server)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from etl_framework.config.model import EnvConfig
from tests.spark.test_runtime_helpers import delta_rows, job, parquet_rows, run, snapshot, trips, write_csv
from tests.spark.test_runtime_s3 import point_s3a_bucket, s3  # noqa: F401 - the moto server fixture

BUCKET = "own-lake"  # a bucket of this module's own: Hadoop caches a file system per bucket and endpoint

REFUSED = "holds files not written by"


def lake(root: Path) -> Path:
    """A lake root as users have them: another team's Delta table and raw input files."""
    from deltalake import write_deltalake

    write_deltalake(str(root / "lake" / "orders"), pa.table({"id": [1, 2, 3], "amount": [9.5, 1.0, 4.25]}))
    write_csv(root / "lake" / "raw", trips(range(1, 4)), name="2024-01-01.csv")
    return root / "lake"


@pytest.mark.parametrize("where", ["lake_root", "parent", "delta_table", "symlink"])
@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_a_parquet_target_over_other_data_is_refused_and_nothing_changes(
        spark: Any, tmp_path: Path, where: str, mode: str) -> None:
    root = lake(tmp_path)
    src = tmp_path / "proj" / "in"
    write_csv(src, trips(range(10, 13)))
    (tmp_path / "proj" / "notes.md").write_text("project files")
    os.symlink(root, tmp_path / "lake_link")
    target = {"lake_root": str(root), "parent": str(src / ".." / ".."), "delta_table": str(root / "orders"),
              "symlink": str(tmp_path / "lake_link")}[where]
    before = snapshot(tmp_path)
    res = run(spark, job(src, Path(target), fmt="parquet", mode=mode), tmp_path / "state.db")
    assert res.status == "FAILED" and res.error_stage == "write"
    assert REFUSED in res.error or "holds an existing delta table" in res.error, res.error
    after = snapshot(tmp_path)
    own = ("state.db", "logs/")  # the run store and its run logs: the framework's own state
    assert {k: v for k, v in after.items() if not k.startswith(own)} == \
        {k: v for k, v in before.items() if not k.startswith(own)}
    assert delta_rows(root / "orders", order="id") == [{"id": 1, "amount": 9.5}, {"id": 2, "amount": 1.0},
                                                       {"id": 3, "amount": 4.25}]


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
def test_a_file_landing_between_two_appends_is_refused_and_kept(spark: Any, tmp_path: Path, fmt: str) -> None:
    src, out, db = tmp_path / "in", tmp_path / "lake" / "t", tmp_path / "state.db"
    write_csv(src, trips(range(1, 4)))
    first = run(spark, job(src, out, fmt=fmt, mode="append"), db)
    assert first.ok, first.error
    rows = parquet_rows(out) if fmt == "parquet" else delta_rows(out)
    part = out / "day=2024-01-01"
    (part / "landed.csv").write_text("someone,else\n")
    if fmt == "parquet":
        (out / "export.parquet").write_bytes(next(part.glob("*.parquet")).read_bytes())  # a copy: still not ours
    foreign = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*")
               if p.is_file() and p.name in ("landed.csv", "export.parquet")}
    for mode in ("append", "overwrite"):
        res = run(spark, job(src, out, fmt=fmt, mode=mode), db)
        if fmt == "delta":  # a Delta table's folder is its own: Delta ignores (and never deletes) unlisted files
            assert res.ok, res.error
            continue
        assert res.status == "FAILED" and REFUSED in res.error and "landed.csv" in res.error, res.error
    for p, digest in foreign.items():
        assert hashlib.sha256(p.read_bytes()).hexdigest() == digest
    if fmt == "parquet":
        assert parquet_rows(out) == rows  # the table as it was


def test_a_new_target_folder_is_claimed_and_a_killed_first_write_is_no_foreign_data(
        spark: Any, tmp_path: Path) -> None:
    """What a first write killed before its commit left (Spark's part files, no log yet) is the table's own."""
    src, out, db = tmp_path / "in", tmp_path / "t", tmp_path / "state.db"
    write_csv(src, trips(range(1, 4)))
    out.mkdir()
    (out / "_etl_table.json").write_text('{"format": "delta"}')
    (out / "part-00000-0a1b.c000.snappy.parquet").write_bytes(b"half a file")
    res = run(spark, job(src, out, mode="append"), db)
    assert res.ok, res.error
    assert [r["trip_id"] for r in delta_rows(out)] == [1, 2, 3]


def test_on_s3_a_parquet_target_over_other_data_is_refused(spark: Any, s3: Any, tmp_path: Path) -> None:  # noqa: F811
    from deltalake import write_deltalake

    from etl_framework.tables.fs import Storage

    endpoint = s3.meta.endpoint_url
    s3.create_bucket(Bucket=BUCKET)
    point_s3a_bucket(spark, BUCKET, endpoint)

    def keys(client: Any, prefix: str) -> list[str]:
        return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))
    env = EnvConfig.model_validate({"state": {"path": str(tmp_path / "state.db")},
                                    "aws": {"region": "us-east-1", "endpoint_url": endpoint}})
    storage = Storage(endpoint_url=endpoint)
    write_deltalake(f"s3://{BUCKET}/own/orders", pa.table({"id": [1, 2]}), storage_options=storage.delta_options())
    s3.put_object(Bucket=BUCKET, Key="own/raw/2024-01-01.csv", Body=b"a,b\n1,2\n")

    def objects(prefix: str) -> dict[str, str]:
        return {k: s3.get_object(Bucket=BUCKET, Key=k)["ETag"] for k in keys(s3, prefix)}

    src, db = tmp_path / "in", tmp_path / "state.db"
    write_csv(src, trips(range(1, 4)))
    before = objects("own/")
    for mode in ("overwrite", "append"):
        cfg = job(src, Path("/unused"), fmt="parquet", mode=mode)
        cfg.target.path = f"s3a://{BUCKET}/own"
        res = run(spark, cfg, db, env_config=env)
        assert res.status == "FAILED" and REFUSED in res.error and "orders/_delta_log" in res.error, res.error
    assert objects("own/") == before

    # a file landing between two appends of a table of its own
    cfg = job(src, Path("/unused"), fmt="parquet", mode="append")
    cfg.target.path = f"s3a://{BUCKET}/mine/t"
    assert run(spark, cfg, db, env_config=env).ok
    s3.put_object(Bucket=BUCKET, Key="mine/t/day=2024-01-01/landed.csv", Body=b"x\n")
    before = objects("mine/t/")
    for mode in ("append", "overwrite"):
        cfg.target.mode = mode
        res = run(spark, cfg, db, env_config=env)
        assert res.status == "FAILED" and "landed.csv" in res.error, res.error
    assert objects("mine/t/") == before
    from deltalake import DeltaTable

    assert DeltaTable(f"s3://{BUCKET}/own/orders", storage_options=storage.delta_options()).to_pyarrow_table(
        ).to_pylist() == [{"id": 1}, {"id": 2}]
