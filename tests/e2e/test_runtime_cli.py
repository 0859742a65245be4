"""`etl run`, `etl runs`, `etl show`, `etl doctor` and `scripts/etl_job.py` as a user runs them: subprocesses on
a throwaway copy of the example project, with generated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent
ETL = str(BIN / "etl")

JOB = """\
job: rt_e2e
description: trips with a fare above min_fare, partitioned by day
params: {min_fare: 0}
sources:
  trips:
    format: csv
    path: ${env.raw_root}/trips/
    options: {header: true}
    schema: {trip_id: long, pickup_ts: timestamp, dropoff_ts: timestamp, pickup_zone_id: int,
             trip_distance: double, fare_amount: double, tip_amount: double, passenger_count: int}
    bad_records: quarantine
transform:
  - filter: fare_amount > ${params.min_fare}
  - with_columns: {day: to_date(pickup_ts), total: 'fare_amount + coalesce(tip_amount, 0)'}
  - select: [trip_id, day, pickup_zone_id, fare_amount, total]
target:
  format: delta
  path: ${env.lake_root}/rt_e2e
  partition_by: [day]
  mode: overwrite
"""


def etl(project: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 300) -> Any:
    return subprocess.run([ETL, *args], cwd=project, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


@pytest.fixture
def rt_project(project: Path) -> Path:
    subprocess.run([sys.executable, str(REPO / "scripts" / "generate_data.py"), "--rows", "3000", "--files", "3",
                    "--days", "3", "--out", str(project / "data" / "raw"), "--bad-rows", "3", "--quiet"],
                   check=True)
    (project / "jobs" / "rt_e2e.yaml").write_text(JOB)
    return project


def delta_table(path: Path) -> list[dict[str, Any]]:
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    t = DeltaTable(str(path)).to_pyarrow_table(filesystem=pafs.SubTreeFileSystem(str(path), pafs.LocalFileSystem()))
    return sorted(t.to_pylist(), key=lambda r: r["trip_id"])


def test_run_json_runs_and_show(rt_project: Path) -> None:
    p = etl(rt_project, "run", "jobs/rt_e2e.yaml", "--param", "min_fare=5", "--json", "--no-report")
    assert p.returncode == 0, p.stderr
    record = json.loads(p.stdout)  # stdout is the JSON and nothing else
    assert record["status"] == "SUCCEEDED" and record["job"] == "rt_e2e" and record["params"] == {"min_fare": 5}
    stages = {s["stage"]: s for s in record["stages"]}
    assert stages["write"]["metrics"]["partitions_touched"] == 3
    assert stages["extract"]["metrics"]["sources"]["trips"]["rows"] == 3000
    written = stages["write"]["metrics"]["rows_written"]
    assert stages["write"]["metrics"]["bad_records"] == 3
    rows = delta_table(rt_project / "data" / "lake" / "rt_e2e")
    assert len(rows) == written and all(r["fare_amount"] > 5 for r in rows)
    assert "extract" in p.stderr and "write" in p.stderr and record["run_id"] in p.stderr

    p = etl(rt_project, "runs", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)[0]["run_id"] == record["run_id"]
    p = etl(rt_project, "runs", "--job", "rt_e2e")
    assert record["run_id"] in p.stdout and "SUCCEEDED" in p.stdout
    p = etl(rt_project, "show", record["run_id"], "--json")
    assert json.loads(p.stdout)["stages"] == record["stages"]
    p = etl(rt_project, "show", record["run_id"])
    assert p.returncode == 0
    for needle in ("extract", "transform", "write", "succeeded", f"rows out {written:,}", "partitions touched 3"):
        assert needle in p.stdout, (needle, p.stdout)


def test_failures_exit_codes_and_messages(rt_project: Path) -> None:
    (rt_project / "jobs" / "rt_missing.yaml").write_text(
        JOB.replace("job: rt_e2e", "job: rt_missing").replace("${env.raw_root}/trips/", "${env.raw_root}/nope/"))
    p = etl(rt_project, "run", "jobs/rt_missing.yaml", "--json", "--no-report")
    assert p.returncode == 1
    assert json.loads(p.stdout)["status"] == "FAILED"
    assert "error: job rt_missing, stage extract: source 'trips': input path" in p.stderr
    assert "what to do:" in p.stderr and "Traceback" not in p.stderr

    p = etl(rt_project, "run", "jobs/rt_e2e.yaml", "--param", "nope=1")
    assert p.returncode == 2 and "unknown param nope" in p.stderr
    p = etl(rt_project, "run", "jobs/does_not_exist.yaml")
    assert p.returncode == 2 and "does not exist" in p.stderr
    p = etl(rt_project, "show", "jr_20200101T000000_000000")
    assert p.returncode == 2 and "no job run jr_20200101T000000_000000" in p.stderr and "etl runs" in p.stderr
    p = etl(rt_project, "runs", "--json")
    assert [r["status"] for r in json.loads(p.stdout)] == ["FAILED"]


def test_doctor(rt_project: Path) -> None:
    p = etl(rt_project, "doctor")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "java" in p.stdout and "spark jars" in p.stdout and "ready to run jobs" in p.stdout
    p = etl(rt_project, "doctor", env={"ETL_JARS_DIR": str(rt_project / "no_jars")})
    assert p.returncode == 1 and "make install" in p.stdout and "1 problem(s)" in p.stderr


def submit_env() -> dict[str, str]:
    """What `source .venv/bin/activate` gives spark-submit: the venv's python for the driver."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


@pytest.mark.slow
def test_spark_submit_and_etl_run_give_the_same_table(rt_project: Path) -> None:
    (rt_project / ".jars").symlink_to(REPO / ".jars")  # spark-defaults.conf names .jars/ relative to the project
    sub = subprocess.run(
        [str(BIN / "spark-submit"), "--properties-file", "spark-conf/spark-defaults.conf",
         str(REPO / "scripts" / "etl_job.py"), "--JOB_NAME", "rt_e2e", "--job_config", "jobs/rt_e2e.yaml",
         "--env", "local", "--min_fare", "5"],
        cwd=rt_project, capture_output=True, text=True, timeout=600, check=False, env=submit_env())
    assert sub.returncode == 0, sub.stderr[-3000:]
    via_submit = delta_table(rt_project / "data" / "lake" / "rt_e2e")
    p = etl(rt_project, "run", "jobs/rt_e2e.yaml", "--param", "min_fare=5", "--no-report")
    assert p.returncode == 0, p.stderr
    via_cli = delta_table(rt_project / "data" / "lake" / "rt_e2e")
    assert via_submit == via_cli and len(via_cli) > 2000
    runs = json.loads(etl(rt_project, "runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["SUCCEEDED", "SUCCEEDED"]
    assert runs[0]["params"] == runs[1]["params"] == {"min_fare": 5}

    bad = subprocess.run(
        [str(BIN / "spark-submit"), "--properties-file", "spark-conf/spark-defaults.conf",
         str(REPO / "scripts" / "etl_job.py"), "--JOB_NAME", "rt_e2e", "--job_config", "jobs/rt_e2e.yaml",
         "--min_fare", "not-a-number"],
        cwd=rt_project, capture_output=True, text=True, timeout=600, check=False, env=submit_env())
    assert bad.returncode != 0
