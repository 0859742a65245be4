"""A whole job through the catalog: its `crawl:` block discovers raw CSV partitions, a `format: catalog` source
reads them (options and push_down_predicate applied), the Delta target is registered, and `etl query` counts it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from etl_framework.catalog.local import LocalCatalog

JOB = """
job: zones_curated
description: EU zones from the raw catalog table
crawl:
  - {path: ../data/raw/zones, database: raw, table: zones, schema_change: update}
sources:
  zones:
    format: catalog
    table: raw.zones
    options: {nullValue: NA}
    push_down_predicate: "region = 'eu'"
transform:
  - filter: zone_id > 1
target:
  format: delta
  path: ../data/lake/zones
  partition_by: [region]
  mode: overwrite
register: {database: curated, table: zones}
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write(root / "conf" / "local.yaml", "state: {path: ../.etl/state.db}\ncatalog: {backend: local, path: "
          "../.etl/catalog.db}\n")
    write(root / "jobs" / "zones.yaml", JOB)
    raw = root / "data" / "raw" / "zones"
    write(raw / "region=eu" / "z.csv", "zone_id,zone_name,pop\n1,Paris,NA\n2,Berlin,NA\n3,Rome,1\n")
    write(raw / "region=us" / "z.csv", "zone_id,zone_name,pop\n4,Boston,2\n5,Austin,NA\n")
    return root


def test_job_crawls_reads_catalog_registers_delta_then_query(proj, spark):
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job

    res = run_job(proj / "jobs" / "zones.yaml", project=Project(proj), spark=spark, quiet=True)
    assert res.status == "SUCCEEDED", (res.error, res.hint)
    cat = LocalCatalog(proj / ".etl" / "catalog.db")
    raw = cat.get_table("raw", "zones")
    assert [k.name for k in raw.partition_keys] == ["region"]
    cur = cat.get_table("curated", "zones")
    assert cur.format == "delta" and cur.location == str(proj / "data" / "lake" / "zones")
    assert [c.name for c in cur.columns] == ["zone_id", "zone_name", "pop"]
    assert [p.values for p in cat.get_partitions("curated", "zones")] == [["eu"]]
    etl = str(Path(sys.executable).parent / "etl")
    q = subprocess.run([etl, "--project-dir", str(proj), "query", "--json",
                        "SELECT count(*) AS n, count(pop) AS with_pop FROM curated.zones"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout) == [{"n": 2, "with_pop": 1}]  # Berlin (NA -> null) and Rome
    # the run record keeps the Athena DDL
    from etl_framework.state.runs import SqliteRunStore

    store = SqliteRunStore(proj / ".etl" / "state.db")
    record = json.dumps(store.get_run(res.run_id), default=str)
    assert "TBLPROPERTIES ('table_type'='DELTA')" in record


def test_job_with_unknown_catalog_table_fails_clearly(proj, spark):
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job

    write(proj / "jobs" / "nope.yaml", JOB.replace("job: zones_curated", "job: nope").replace(
        "table: raw.zones", "table: raw.nope").replace("crawl:\n  - {path: ../data/raw/zones, database: raw, "
                                                       "table: zones, schema_change: update}\n", ""))
    res = run_job(proj / "jobs" / "nope.yaml", project=Project(proj), spark=spark, quiet=True)
    assert res.status == "FAILED" and res.exit_code in (1, 2)
    assert res.error_stage == "extract"
    assert "raw.nope is not in the catalog" in res.error
    assert LocalCatalog(proj / ".etl" / "catalog.db").list_tables() == []


def test_job_crawl_failure_stops_the_job_in_stage_crawl(proj, spark):
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job

    write(proj / "data" / "raw" / "zones" / "region=eu" / "extra.csv", "1,Paris,3\n")  # a CSV with no header
    res = run_job(proj / "jobs" / "zones.yaml", project=Project(proj), spark=spark, quiet=True)
    assert res.status == "FAILED" and res.exit_code == 1 and res.error_stage == "crawl"
    assert "no header row" in res.error and "extra.csv" in res.error
    assert "add a header row" in (res.hint or res.error)
    assert LocalCatalog(proj / ".etl" / "catalog.db").list_tables() == []
    assert not (proj / "data" / "lake" / "zones").exists()  # nothing after the crawl ran
