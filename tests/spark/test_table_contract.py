"""The table-format contract (SPEC §11), run against every format on local files and on `s3a://` (moto server):
for each write mode, a reader that is not Spark (delta-rs, pyarrow through the Parquet manifest, pyiceberg) sees
exactly the committed rows; the run id and the bookmark delta are found in the commit; "has run R committed" is
false before R's write and true after. A new format gets its line in FORMATS and nothing else here."""

from __future__ import annotations

import json
import posixpath
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etl_framework.incremental import app_id
from etl_framework.tables import FORMATS, CommitRequest, Storage, table_format
from tests.spark.test_glue_cloud_job import moto_url  # noqa: F401 - a moto server in its own process
from tests.spark.test_runtime_s3 import point_s3a_bucket

BUCKET = "contract-lake"

MODES = ["append", "overwrite", "overwrite_partitions", "merge"]
FIRST = [(1, "d1", 1.0), (2, "d1", 2.0), (3, "d2", 3.0), (4, "d2", 4.0)]
SECOND = {
    "append": ([(5, "d2", 5.0), (6, "d3", 6.0)], FIRST + [(5, "d2", 5.0), (6, "d3", 6.0)]),
    "overwrite": ([(10, "d9", 10.0)], [(10, "d9", 10.0)]),
    "overwrite_partitions": ([(7, "d2", 7.0)], [(1, "d1", 1.0), (2, "d1", 2.0), (7, "d2", 7.0)]),
    "merge": ([(3, "d2", 33.0), (8, "d3", 8.0)],
              [(1, "d1", 1.0), (2, "d1", 2.0), (3, "d2", 33.0), (4, "d2", 4.0), (8, "d3", 8.0)]),
}


def independent_rows(fmt: str, path: str, storage: Storage) -> list[tuple[Any, ...]]:
    """The table's rows as a reader other than Spark sees them."""
    if fmt == "delta":
        from deltalake import DeltaTable

        uri = path.replace("s3a://", "s3://")
        table = DeltaTable(uri, storage_options=storage.delta_options()).to_pyarrow_dataset().to_table(
            use_threads=False)
    elif fmt == "parquet":
        import pyarrow.dataset as ds

        manifest = json.loads(storage.read_text(posixpath.join(path, "_etl_manifest.json")) or "{}")
        fs, root = storage.arrow_fs(path)
        files = [posixpath.join(root, f["path"]) for f in manifest["files"]]
        table = ds.dataset(files, filesystem=fs, format="parquet", partitioning=ds.partitioning(flavor="hive"),
                           partition_base_dir=root).to_table()
    elif fmt == "iceberg":
        from pyiceberg.table import StaticTable

        from etl_framework.tables.iceberg import CATALOG, NAMESPACE, table_name

        con = sqlite3.connect(storage.iceberg_catalog or "")
        (loc,) = con.execute("SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND "
                             "table_namespace = ? AND table_name = ?", (CATALOG, NAMESPACE, table_name(path))
                             ).fetchone()
        con.close()
        table = StaticTable.from_metadata(loc.removeprefix("file:"), properties=storage.pyiceberg_properties()
                                          ).scan().to_arrow()
    else:
        raise AssertionError(f"no independent reader for {fmt}: add one")
    return sorted((int(r["id"]), str(r["day"]), float(r["v"])) for r in table.to_pylist())


def write(spark: Any, fmt: str, path: str, rows: list[tuple[Any, ...]], mode: str, run_id: str, version: int,
          storage: Storage) -> Any:
    df = spark.createDataFrame(rows, "id long, day string, v double")
    bookmark = {"job": "contract", "version": version, "run_id": run_id, "files": {"src": {f"/in/{run_id}": [1, 1]}},
                "watermarks": {}}
    return table_format(fmt).write(
        spark, df, path, mode=mode, partition_by=["day"], merge_keys=["id"] if mode == "merge" else None,
        options={}, commit=CommitRequest(run_id, {"etl_bookmark": bookmark}, txn=(app_id("contract"), version)),
        job="contract", storage=storage)


def check_contract(spark: Any, fmt: str, mode: str, path: str, storage: Storage) -> None:
    tf = table_format(fmt)
    assert not tf.has_run(path, "r1", storage) and tf.commits(path, storage) == []
    first = write(spark, fmt, path, FIRST, "append", "r1", 1, storage)
    assert first.version is not None and first.files_written >= 2
    assert independent_rows(fmt, path, storage) == sorted(FIRST)
    assert tf.has_run(path, "r1", storage) and not tf.has_run(path, "r2", storage)
    assert [b["run_id"] for b in tf.bookmark_deltas(path, "contract", 0, storage)] == ["r1"]

    rows, expected = SECOND[mode]
    second = write(spark, fmt, path, rows, mode, "r2", 2, storage)
    assert second.version is not None and second.version > first.version
    assert independent_rows(fmt, path, storage) == sorted(expected)
    assert tf.has_run(path, "r2", storage) and tf.has_run(path, "r1", storage)
    deltas = tf.bookmark_deltas(path, "contract", 1, storage)
    assert [(b["run_id"], b["version"]) for b in deltas] == [("r2", 2)]
    assert tf.bookmark_deltas(path, "contract", 2, storage) == []
    assert tf.detect(path, storage)
    assert sorted(tuple(r) for r in tf.spark_read(spark, path, storage=storage).select("id", "day", "v").collect()
                  ) == sorted(expected)


@pytest.fixture(scope="module")
def s3(spark: Any, moto_url: str) -> Iterator[str]:  # noqa: F811
    """A bucket on the moto server; s3a:// reaches it through per-bucket settings (nothing else is pointed at moto).
    delta-rs and pyiceberg reach it with the credentials from the environment."""
    import os

    import boto3

    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    point_s3a_bucket(spark, BUCKET, moto_url)
    try:
        yield moto_url
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cases() -> list[Any]:
    return [pytest.param(fmt, mode, id=f"{fmt}-{mode}") for fmt in FORMATS for mode in MODES
            if mode != "merge" or fmt != "parquet"]


@pytest.mark.parametrize(("fmt", "mode"), cases())
def test_contract_local(spark: Any, tmp_path: Path, fmt: str, mode: str) -> None:
    storage = Storage(iceberg_catalog=str(tmp_path / "iceberg_catalog.db"))
    check_contract(spark.newSession(), fmt, mode, str(tmp_path / "t"), storage)


@pytest.mark.parametrize(("fmt", "mode"), cases())
def test_contract_s3(spark: Any, s3: str, tmp_path: Path, fmt: str, mode: str) -> None:
    storage = Storage(endpoint_url=s3, iceberg_catalog=str(tmp_path / "iceberg_catalog.db"))
    check_contract(spark.newSession(), fmt, mode, f"s3a://{BUCKET}/contract/{fmt}_{mode}", storage)


def test_merge_needs_keys_and_a_merging_format() -> None:
    from pydantic import ValidationError

    from etl_framework.config.model import Target

    with pytest.raises(ValidationError, match="needs 'merge_keys'"):
        Target(format="iceberg", path="/x", mode="merge")
    with pytest.raises(ValidationError, match="needs format 'delta' or 'iceberg'"):
        Target(format="parquet", path="/x", mode="merge", merge_keys=["id"])


def folder_bytes(root: Path) -> dict[str, str] | None:
    """Every file under `root` (hidden ones too) with its content hash: 'byte-identical' made checkable."""
    import hashlib

    if not root.exists():
        return None
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_stopped_write_leaves_the_target_byte_identical(spark: Any, tmp_path: Path, fmt: str,
                                                          existing: bool) -> None:
    """A quality gate inside the write stops it (a row breaks an on_fail: fail rule, in the last of several
    tasks, after the others wrote their files): the target folder is exactly as before — no data file of the
    stopped write is left for a crawler or a plain Parquet reader to see."""
    from etl_framework.config.model import EnvConfig
    from tests.spark.test_quality_stage import GOOD, job, run, write_csv

    env = EnvConfig.model_validate({"catalog": {"path": str(tmp_path / ".etl" / "catalog.db")}})
    src, out = tmp_path / "in", tmp_path / "out"
    rules = [{"expect": "expect_column_values_to_be_between", "column": "fare", "max_value": 2500,
              "on_fail": "fail", "name": "fare_max"}]
    cfg = job(src, out, rules)
    cfg.target.format = fmt
    if existing:
        write_csv(src, GOOD, name="part-0.csv")
        first = run(spark, cfg, tmp_path, env_config=env, project_root=tmp_path)
        assert first.ok, first.error
    before = folder_bytes(out)
    for i in range(4):  # four files, four tasks: the bad row is in the last one
        write_csv(src, GOOD, name=f"part-{i}.csv")
    write_csv(src, GOOD + ["9,3000.0,b,Z1"], name="part-9.csv")
    res = run(spark, cfg, tmp_path, env_config=env, project_root=tmp_path)
    assert res.exit_code == 3 and res.error_stage == "quality", res.error
    assert folder_bytes(out) == before


def test_an_iceberg_job_registers_like_glue_and_answers_etl_query(spark: Any, tmp_path: Path) -> None:
    """A job writing Iceberg: registered as Glue registers Iceberg tables (table_type, the current
    metadata_location), Athena's Iceberg DDL, `etl query` over the current snapshot, resume sees the commit."""
    from etl_framework.catalog.ddl import table_ddl
    from etl_framework.catalog.local import LocalCatalog
    from etl_framework.catalog.query import run_query
    from etl_framework.config.model import EnvConfig, Register
    from etl_framework.engine.resume import target_has_run
    from etl_framework.tables import storage_for
    from tests.spark.test_quality_stage import GOOD, job, run, write_csv

    env = EnvConfig.model_validate({"catalog": {"path": str(tmp_path / ".etl" / "catalog.db")}})
    src, out = tmp_path / "in", tmp_path / "out"
    write_csv(src, GOOD, name="part-0.csv")
    cfg = job(src, out, [])
    cfg.quality = []
    cfg.target.format, cfg.target.mode, cfg.target.merge_keys = "iceberg", "merge", ["trip_id"]
    cfg.target.partition_by = ["zone"]
    cfg.register = Register(database="curated", table="trips")
    first = run(spark, cfg, tmp_path, env_config=env, project_root=tmp_path)
    assert first.ok, first.error
    second = run(spark, cfg, tmp_path, env_config=env, project_root=tmp_path)  # the same rows merged: no dupes
    assert second.ok, second.error

    storage = storage_for(env, tmp_path)
    catalog = LocalCatalog(tmp_path / ".etl" / "catalog.db")
    t = catalog.get_table("curated", "trips")
    assert t is not None and t.format == "iceberg"
    assert t.parameters["table_type"] == "ICEBERG"
    assert t.parameters["metadata_location"] == table_format("iceberg").metadata_location(str(out), storage)
    ddl = table_ddl(t)
    assert ddl.startswith("CREATE TABLE `curated`.`trips`") and "'table_type'='ICEBERG'" in ddl
    assert "PARTITIONED BY (`zone`)" in ddl
    n = len(GOOD)
    assert run_query(catalog, "SELECT count(*), count(DISTINCT trip_id) FROM curated.trips").rows == [(n, n)]
    assert target_has_run(cfg, second.run_id, storage) and not target_has_run(cfg, "jr_never", storage)


def test_two_writers_on_one_iceberg_table_lose_no_commit(spark: Any, tmp_path: Path) -> None:
    """Two sessions append to the same Iceberg table at once, bypassing the run lock (another tool writing): the
    catalog's pointer swap lets one commit; the other retries on top of it or fails cleanly, saying so. Either
    way no commit is lost and a refused write leaves none of its rows."""
    import threading

    from etl_framework.errors import JobFailed

    storage = Storage(iceberg_catalog=str(tmp_path / "iceberg_catalog.db"))
    path = str(tmp_path / "t")
    write(spark.newSession(), "iceberg", path, FIRST, "append", "r0", 1, storage)
    outcome: dict[str, str] = {}

    def writer(run_id: str, base: int) -> None:
        rows = [(base + i, f"d{i % 3}", float(i)) for i in range(50)]
        try:
            write(spark.newSession(), "iceberg", path, rows, "append", run_id, 2, storage)
            outcome[run_id] = "committed"
        except JobFailed as e:
            outcome[run_id] = "refused: " + e.message

    threads = [threading.Thread(target=writer, args=(f"r{n}", n * 1000)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(outcome) == 2 and "committed" in outcome.values(), outcome
    for what in outcome.values():
        assert what == "committed" or "another writer committed to the Iceberg table" in what, what
    committed = [r for r, what in outcome.items() if what == "committed"]
    expected = [r[0] for r in FIRST] + [int(r[1:]) * 1000 + i for r in committed for i in range(50)]
    assert sorted(r[0] for r in independent_rows("iceberg", path, storage)) == sorted(expected)
    tf = table_format("iceberg")
    assert {r: tf.has_run(path, r, storage) for r in outcome} == {r: r in committed for r in outcome}


def test_a_deleted_iceberg_metadata_file_is_named(spark: Any, tmp_path: Path) -> None:
    """The current metadata file deleted by hand: readers and the next write name the table and what is missing,
    and nothing is written."""
    from etl_framework.errors import JobFailed

    storage = Storage(iceberg_catalog=str(tmp_path / "iceberg_catalog.db"))
    path = str(tmp_path / "t")
    session = spark.newSession()
    write(session, "iceberg", path, FIRST, "append", "r1", 1, storage)
    current = table_format("iceberg").metadata_location(path, storage)
    Path(current.removeprefix("file:")).unlink()
    with pytest.raises(FileNotFoundError, match=f"the Iceberg table at {path} is damaged"):
        table_format("iceberg").has_run(path, "r1", storage)
    with pytest.raises(JobFailed, match="is damaged: its metadata file .* is missing"):
        write(spark.newSession(), "iceberg", path, FIRST, "append", "r2", 2, storage)
