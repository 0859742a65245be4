"""Writing to S3 (`s3a://`, as on Glue) against a moto server on loopback: the Parquet commit through Hadoop's
file system API, and native Delta; read back with Spark and checked with boto3."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.spark.test_runtime_helpers import job, run, trips, write_csv

BUCKET = "rt-lake"


def point_s3a_bucket(spark: Any, bucket: str, endpoint: str) -> None:
    """s3a:// settings for one bucket only: nothing else in the test session is pointed at moto."""
    conf = spark._jsc.hadoopConfiguration()
    for key, value in {"endpoint": endpoint, "path.style.access": "true", "connection.ssl.enabled": "false",
                       "access.key": "testing", "secret.key": "testing", "endpoint.region": "us-east-1",
                       "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"}.items():
        conf.set(f"fs.s3a.bucket.{bucket}.{key}", value)


@pytest.fixture(scope="module")
def s3(spark: Any) -> Iterator[Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET)
    point_s3a_bucket(spark, BUCKET, endpoint)
    try:
        yield client
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def keys(client: Any, prefix: str) -> list[str]:
    out = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in out)


def test_parquet_commit_on_s3(spark: Any, s3: Any, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_csv(src, trips(range(1, 5), "2024-01-01") + trips(range(5, 7), "2024-01-02"))
    target = f"s3a://{BUCKET}/lake/parquet_t"
    cfg = job(src, Path("/unused"), fmt="parquet", mode="append")
    cfg.target.path = target
    db = tmp_path / "state.db"
    r = run(spark, cfg, db)
    assert r.ok, r.error
    write_csv(src, trips(range(10, 12), "2024-01-02"))
    cfg.target.mode = "overwrite_partitions"
    r = run(spark, cfg, db)
    assert r.ok, r.error
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key="lake/parquet_t/_etl_manifest.json")["Body"].read())
    listed = sorted(f"lake/parquet_t/{f['path']}" for f in manifest["files"])
    data_keys = [k for k in keys(s3, "lake/parquet_t/") if k.endswith(".parquet")]
    assert listed == data_keys  # replaced files deleted, no staging left
    assert not keys(s3, "lake/parquet_t/_staging")
    from etl_framework.tables.parquet import read_committed_parquet

    rows = read_committed_parquet(spark, target).orderBy("trip_id").collect()
    assert [(x["trip_id"], str(x["day"])) for x in rows] == [
        (1, "2024-01-01"), (2, "2024-01-01"), (3, "2024-01-01"), (4, "2024-01-01"), (10, "2024-01-02"),
        (11, "2024-01-02")]
    assert r.metrics["write"]["files_removed"] == 1 and r.metrics["write"]["partitions"] == ["day=2024-01-02"]


def test_delta_on_s3(spark: Any, s3: Any, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_csv(src, trips(range(1, 4)))
    cfg = job(src, Path("/unused"), fmt="delta", mode="merge", merge_keys=["trip_id"], partition_by=[])
    cfg.target.path = f"s3a://{BUCKET}/lake/delta_t"
    db = tmp_path / "state.db"
    assert run(spark, cfg, db).ok
    write_csv(src, trips(range(2, 6), fare=100.0))
    r = run(spark, cfg, db)
    assert r.ok, r.error
    assert r.metrics["write"]["table_version"] == 1 and r.metrics["write"]["operation"] == "MERGE"
    df = spark.read.format("delta").load(cfg.target.path).orderBy("trip_id")
    assert [(x["trip_id"], x["fare"]) for x in df.collect()] == [
        (1, 11.0), (2, 102.0), (3, 103.0), (4, 104.0), (5, 105.0)]
    assert any(k.endswith("00000000000000000001.json") for k in keys(s3, "lake/delta_t/_delta_log/"))
