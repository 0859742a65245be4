"""Catalog sources (Glue from_catalog), the register stage and `etl query`, on the shared local Spark session,
real Delta, real SQLite, and a real moto server for the Glue backend and s3a."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from etl_framework.catalog.base import TableNotFound
from etl_framework.catalog.crawler import run_crawler
from etl_framework.catalog.local import LocalCatalog
from etl_framework.catalog.query import run_query
from etl_framework.catalog.source import read_catalog_source
from etl_framework.config.model import EnvConfig, JobConfig, Source
from etl_framework.stages.register import run_register


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def moto_server(monkeypatch):
    from moto.server import ThreadedMotoServer

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def zones_csv(root: Path) -> Path:
    base = root / "raw" / "zones"
    write(base / "region=eu" / "z.csv", "zone_id,zone_name,pop\n1,Paris,NA\n2,Berlin,3.5\n3,Rome,1\n")
    write(base / "region=us" / "z.csv", "zone_id,zone_name,pop\n4,Boston,2\n5,Austin,NA\n")
    return base


def make_state(tmp_path: Path, spark, cat, df, target_format="delta", partition_by=("region",)):
    env = EnvConfig.model_validate({"state": {"path": str(tmp_path / "state.db")},
                                    "catalog": {"path": str(tmp_path / "catalog.db")}})
    cfg = JobConfig.model_validate({
        "job": "zones_load", "description": "zones by region",
        "sources": {"zones": {"format": "catalog", "table": "raw.zones"}},
        "target": {"format": target_format, "path": str(tmp_path / "lake" / "zones"),
                   "partition_by": list(partition_by)},
        "register": {"database": "curated", "table": "zones"},
    })
    # the fields of engine.job.JobRunState the register stage reads
    return SimpleNamespace(config=cfg, env_config=env, spark=spark, df=df, catalog=cat, metrics={"register": {}},
                           extras={}, write_result=None, project_root=tmp_path)


def test_catalog_source_applies_options_and_push_down_predicate(tmp_path, spark):
    cat = LocalCatalog(tmp_path / "catalog.db")
    assert run_crawler(cat, tmp_path / "state.db", "zones", str(zones_csv(tmp_path)), "raw").ok
    src = Source.model_validate({"format": "catalog", "table": "raw.zones", "options": {"nullValue": "NA"},
                                 "push_down_predicate": "region = 'eu'"})
    df = read_catalog_source(spark, cat, src)
    assert [f.name for f in df.schema.fields] == ["zone_id", "zone_name", "pop", "region"]
    assert df.schema["zone_id"].dataType.simpleString() == "bigint"
    rows = sorted(df.collect(), key=lambda r: r.zone_id)
    # `pop` holds 'NA', so the crawler typed it string (as Glue does); the source's nullValue still applies
    assert [(r.zone_id, r.pop, r.region) for r in rows] == [(1, None, "eu"), (2, "3.5", "eu"), (3, "1", "eu")]
    # only the eu partition's folder was read: pruning happened before listing files
    assert all("region=eu" in f for f in df.inputFiles())
    whole = read_catalog_source(spark, cat, Source.model_validate({"format": "catalog", "table": "raw.zones"}))
    assert whole.count() == 5
    # given files (an incremental read's new files): only those, and only within the kept partitions
    base = tmp_path / "raw" / "zones"
    write(base / "region=eu" / "z2.csv", "zone_id,zone_name,pop\n6,Oslo,2\n")
    files = [str(base / "region=eu" / "z2.csv"), str(base / "region=us" / "z.csv")]
    some = read_catalog_source(spark, cat, src, paths=files)
    assert [(r.zone_id, r.region) for r in some.collect()] == [(6, "eu")]


def test_catalog_source_missing_table_is_a_clear_error(tmp_path, spark):
    cat = LocalCatalog(tmp_path / "catalog.db")
    with pytest.raises(TableNotFound) as e:
        read_catalog_source(spark, cat, Source.model_validate({"format": "catalog", "table": "raw.nope"}))
    assert "raw.nope is not in the catalog" in str(e.value) and e.value.exit_code == 2
    assert cat.list_tables() == []


def test_register_delta_target_then_query_counts(tmp_path, spark):
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    cat = LocalCatalog(tmp_path / "catalog.db")
    run_crawler(cat, tmp_path / "state.db", "zones", str(zones_csv(tmp_path)), "raw")
    df = read_catalog_source(spark, cat, Source.model_validate(
        {"format": "catalog", "table": "raw.zones", "options": {"nullValue": "NA"}}))
    state = make_state(tmp_path, spark, cat, df)
    target = state.config.target.path
    df.write.format("delta").partitionBy("region").mode("append").save(target)
    res = run_register(state)
    assert res.action == "created"
    t = cat.get_table("curated", "zones")
    assert t.format == "delta" and t.parameters["table_type"] == "DELTA"
    assert [(c.name, c.type) for c in t.columns] == [("zone_id", "bigint"), ("zone_name", "string"), ("pop", "string")]
    assert [(k.name, k.type) for k in t.partition_keys] == [("region", "string")]
    assert t.location == target
    assert sorted(p.values for p in cat.get_partitions("curated", "zones")) == [["eu"], ["us"]]
    kept = state.metrics["register"]  # kept with the run by the engine
    assert "TBLPROPERTIES ('table_type'='DELTA')" in kept["ddl"] and kept["action"] == "created"
    # the independent reader agrees on the data
    n = DeltaTable(target).to_pyarrow_table(filesystem=pafs.SubTreeFileSystem(target, pafs.LocalFileSystem())).num_rows
    assert n == 5
    assert run_query(cat, "SELECT count(*) AS n FROM curated.zones").rows == [(5,)]
    assert run_query(cat, "SELECT count(*) FROM curated.zones WHERE region = 'eu' AND pop IS NULL").rows == [(1,)]
    # a second run that appends: the table is unchanged, the count follows the Delta log
    df.filter("region = 'us'").write.format("delta").mode("append").save(target)
    assert run_register(state).action == "unchanged"
    assert run_query(cat, "SELECT count(*) FROM curated.zones").rows == [(7,)]
    # `etl query` itself, as a user runs it, with --json alone on stdout
    proj = tmp_path
    write(proj / "conf" / "local.yaml", f"catalog: {{backend: local, path: {tmp_path / 'catalog.db'}}}\n")
    out = subprocess.run([str(Path(sys.executable).parent / "etl"), "--project-dir", str(proj), "query", "--json",
                          "SELECT region, count(*) AS n FROM curated.zones GROUP BY region ORDER BY region"],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"region": "eu", "n": 3}, {"region": "us", "n": 4}]


def test_register_parquet_target_adds_written_partitions_and_ddl(tmp_path, spark):
    cat = LocalCatalog(tmp_path / "catalog.db")
    df = spark.createDataFrame(
        [(1, 2.5, dt.date(2024, 1, 1)), (2, 1.0, dt.date(2024, 1, 2)), (3, 4.0, dt.date(2024, 1, 2))],
        "id long, amount double, day date")
    state = make_state(tmp_path, spark, cat, df, target_format="parquet", partition_by=("day",))
    target = state.config.target.path
    df.write.partitionBy("day").parquet(target)
    # the write stage reports the partitions it touched: only those are added
    state.write_result = {"partitions": ["day=2024-01-02"], "partitions_touched": 1}
    assert run_register(state).partitions_added == [["2024-01-02"]]
    state.write_result = None  # no report: the distinct partition values of the written data
    assert run_register(state).partitions_added == [["2024-01-01"]]
    t = cat.get_table("curated", "zones")
    assert t.partition_keys[0].type == "date" and t.format == "parquet"
    ddl = state.metrics["register"]["ddl"]
    assert "PARTITIONED BY (`day` date)" in ddl and "STORED AS PARQUET" in ddl
    assert f"LOCATION '{target}/day=2024-01-01/'" in ddl
    assert run_query(cat, "SELECT sum(amount), count(DISTINCT day) FROM curated.zones").rows == [(7.5, 2)]


def test_register_against_glue_on_moto_reads_back_with_boto3(tmp_path, spark, moto_server):
    import boto3

    from etl_framework.catalog.glue import GlueCatalog

    cat = GlueCatalog(region="us-east-1", endpoint_url=moto_server)
    df = spark.createDataFrame([(1, "a", "eu"), (2, "b", "us")], "id long, name string, region string")
    state = make_state(tmp_path, spark, cat, df)
    target = state.config.target.path
    df.write.format("delta").partitionBy("region").save(target)
    res = run_register(state)
    assert res.action == "created"
    glue = boto3.client("glue", region_name="us-east-1", endpoint_url=moto_server)
    t = glue.get_table(DatabaseName="curated", Name="zones")["Table"]
    assert [(c["Name"], c["Type"]) for c in t["StorageDescriptor"]["Columns"]] == [("id", "bigint"), ("name", "string")]
    assert [(c["Name"], c["Type"]) for c in t["PartitionKeys"]] == [("region", "string")]
    assert t["StorageDescriptor"]["Location"] == target
    assert t["Parameters"]["table_type"] == "DELTA"
    parts = glue.get_partitions(DatabaseName="curated", TableName="zones")["Partitions"]
    assert sorted(p["Values"] for p in parts) == [["eu"], ["us"]]
    # the local catalog given the same register reads the same table
    local = LocalCatalog(tmp_path / "catalog.db")
    state.catalog = local
    run_register(state)
    lt = local.get_table("curated", "zones")
    gt = cat.get_table("curated", "zones")
    for attr in ("columns", "partition_keys", "location", "classification", "parameters", "serde",
                 "input_format", "output_format"):
        assert getattr(lt, attr) == getattr(gt, attr), attr
    assert run_register(state).action == "unchanged"


@pytest.mark.slow
def test_s3a_catalog_source_on_moto(tmp_path, spark, moto_server):
    """Crawl an s3:// folder on the moto server into the Glue catalog (on moto), then read it as a catalog source:
    Spark reads the partitions through s3a:// (path-style, endpoint, no SSL)."""
    import boto3

    from etl_framework.catalog.glue import GlueCatalog
    from etl_framework.catalog.source import configure_s3a

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    s3.create_bucket(Bucket="lake")
    s3.put_object(Bucket="lake", Key="raw/trips/dt=2024-01-01/a.csv", Body=b"id,fare\n1,2.5\n2,3.0\n")
    s3.put_object(Bucket="lake", Key="raw/trips/dt=2024-01-02/a.csv", Body=b"id,fare\n3,1.5\n")
    aws = EnvConfig.model_validate({"aws": {"region": "us-east-1", "endpoint_url": moto_server}}).aws
    cat = GlueCatalog(region="us-east-1", endpoint_url=moto_server)
    res = run_crawler(cat, tmp_path / "state.db", "s3_trips", "s3://lake/raw/trips/", "raw", aws=aws)
    assert res.ok, res.message
    t = cat.get_table("raw", "trips")
    assert t.location == "s3://lake/raw/trips" and [k.name for k in t.partition_keys] == ["dt"]
    # `etl query` reads the same S3 table (pyarrow's S3 filesystem against the endpoint)
    assert run_query(cat, "SELECT count(*), sum(fare) FROM raw.trips", aws=aws).rows == [(3, 7.0)]
    configure_s3a(spark, moto_server, "us-east-1")
    df = read_catalog_source(spark, cat, Source.model_validate(
        {"format": "catalog", "table": "raw.trips", "push_down_predicate": "dt >= '2024-01-02'"}))
    rows = df.collect()
    assert [(r.id, r.fare, r.dt) for r in rows] == [(3, 1.5, dt.date(2024, 1, 2))]
    assert all(f.startswith("s3a://lake/raw/trips/dt=2024-01-02/") for f in df.inputFiles())
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
