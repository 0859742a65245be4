"""A whole job run locally as it runs on Glue: `state: dynamodb`, `catalog: glue` and s3a:// source and target, all
against a real moto server on 127.0.0.1. The job reads its CSV from S3, writes its Delta table to S3, registers it in
the Glue Data Catalog and keeps its run record in DynamoDB."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REGION = "us-east-1"
CSV = "zone_id,zone_name,region\n1,Alpha,eu\n2,Beta,eu\n3,Gamma,us\n4,Delta,us\n5,Eps,ap\n"


SERVER = (
    "import sys\n"
    "from moto.server import ThreadedMotoServer\n"
    "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\n"
    "s.start()\n"
    "print('http://%s:%d' % s.get_host_and_port(), flush=True)\n"
    "sys.stdin.read()\n"  # until the test closes stdin
    "s.stop()\n"
)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """The moto server in its own process: delta-rs (the bookmark reconciliation reads the Delta log with it) holds
    the GIL during some S3 calls, which would starve a server thread in this process until its 180 s timeout."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    url = proc.stdout.readline().strip()
    yield url
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.fixture
def cloud_project(tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import boto3

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    tag = uuid.uuid4().hex[:8]
    raw, lake = f"raw-{tag}", f"lake-{tag}"
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name=REGION)
    for b in (raw, lake):
        s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=raw, Key="raw/zones/zones.csv", Body=CSV.encode())
    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "cloud.yaml").write_text(textwrap.dedent(f"""
        vars: {{raw_root: "s3a://{raw}/raw", lake_root: "s3a://{lake}/lake"}}
        state: {{backend: dynamodb, table_prefix: "t{tag}_"}}
        catalog: {{backend: glue}}
        aws: {{region: {REGION}, endpoint_url: "{moto_url}"}}
    """))
    (root / "jobs" / "zones_cloud.yaml").write_text(textwrap.dedent("""
        job: zones_cloud
        sources:
          zones:
            format: csv
            path: ${env.raw_root}/zones/
            options: {header: true}
            schema: {zone_id: int, zone_name: string, region: string}
            incremental: {mode: files}
        transform:
          - with_columns: {zone_label: "concat(zone_name, '-', region)"}
        target:
          format: delta
          path: ${env.lake_root}/curated/zones
          partition_by: [region]
          mode: append
        register: {database: curated, table: zones_cloud}
    """))
    return {"root": root, "url": moto_url, "raw": raw, "lake": lake, "s3": s3,
            "glue": boto3.client("glue", endpoint_url=moto_url, region_name=REGION)}


def test_a_job_reads_and_writes_s3_registers_in_glue_and_records_in_dynamodb(spark: Any,
                                                                             cloud_project: dict[str, Any]) -> None:
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job
    from etl_framework.state.dynamodb import DynamoRunStore

    cp = cloud_project
    project = Project(cp["root"])
    env = project.env_config("cloud")
    # no s3a setup here: the job run points s3a at the env's aws.endpoint_url (the moto server) itself
    result = run_job(cp["root"] / "jobs" / "zones_cloud.yaml", project=project, env="cloud", spark=spark,
                     quiet=True)
    assert result.status == "SUCCEEDED", result.error

    # the Delta table is on S3, with one folder per region, and reads back (Spark and delta-rs)
    keys = [o["Key"] for o in cp["s3"].list_objects_v2(Bucket=cp["lake"])["Contents"]]
    assert any(k.startswith("lake/curated/zones/_delta_log/") for k in keys)
    assert {k.split("/")[3] for k in keys if "region=" in k} == {"region=eu", "region=us", "region=ap"}
    df = spark.read.format("delta").load(f"s3a://{cp['lake']}/lake/curated/zones")
    assert df.count() == 5
    assert sorted(r.zone_label for r in df.collect()) == ["Alpha-eu", "Beta-eu", "Delta-us", "Eps-ap", "Gamma-us"]
    from deltalake import DeltaTable

    dt = DeltaTable(f"s3://{cp['lake']}/lake/curated/zones", storage_options={
        "AWS_ENDPOINT_URL": cp["url"], "AWS_ALLOW_HTTP": "true", "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    assert dt.to_pyarrow_dataset().count_rows() == 5 and dt.metadata().partition_columns == ["region"]

    # registered in the Glue Data Catalog, with its S3 location and partition key
    table = cp["glue"].get_table(DatabaseName="curated", Name="zones_cloud")["Table"]
    assert table["StorageDescriptor"]["Location"].rstrip("/") == f"s3://{cp['lake']}/lake/curated/zones"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["region"]

    # the run record and its stages are in DynamoDB, not in a local file
    run = DynamoRunStore(env).get_run(result.run_id)
    assert run is not None and run["status"] == "SUCCEEDED" and run["job"] == "zones_cloud"
    assert [s["stage"] for s in run["stages"] if s["status"] == "SUCCEEDED"][:1] == ["extract"]
    assert not (cp["root"] / ".etl").exists()


def test_the_bookmark_lives_in_dynamodb_and_a_rerun_reads_only_new_s3_files(spark: Any,
                                                                           cloud_project: dict[str, Any]) -> None:
    from etl_framework.catalog.source import configure_s3a
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job
    from etl_framework.state.dynamodb import DynamoBookmarkStore

    cp = cloud_project
    project = Project(cp["root"])
    env = project.env_config("cloud")
    configure_s3a(spark, cp["url"], REGION)
    job = cp["root"] / "jobs" / "zones_cloud.yaml"
    table = f"s3a://{cp['lake']}/lake/curated/zones"

    assert run_job(job, project=project, env="cloud", spark=spark, quiet=True).status == "SUCCEEDED"
    bookmark = DynamoBookmarkStore(env).get("zones_cloud")
    assert list(bookmark.sources["zones"].files) == [f"s3a://{cp['raw']}/raw/zones/zones.csv"]

    again = run_job(job, project=project, env="cloud", spark=spark, quiet=True)  # nothing new on S3
    assert again.status == "SUCCEEDED"
    assert spark.read.format("delta").load(table).count() == 5

    cp["s3"].put_object(Bucket=cp["raw"], Key="raw/zones/more.csv",
                        Body=b"zone_id,zone_name,region\n6,Zeta,eu\n7,Eta,us\n")
    third = run_job(job, project=project, env="cloud", spark=spark, quiet=True)
    assert third.status == "SUCCEEDED", third.error
    assert spark.read.format("delta").load(table).count() == 7  # each input row exactly once
    files = DynamoBookmarkStore(env).get("zones_cloud").sources["zones"].files
    assert len(files) == 2
    assert [h["action"] for h in DynamoBookmarkStore(env).history("zones_cloud")].count("commit") == 2
