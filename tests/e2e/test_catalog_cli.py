"""`etl crawl`, `etl catalog list|show|ddl|crawls` and `etl query` as a user runs them (subprocesses, no Spark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ETL = str(Path(sys.executable).parent / "etl")


def etl(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ETL, "--project-dir", str(project), *args], capture_output=True, text=True, timeout=120,
                          check=False)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    write(root / "conf" / "local.yaml", "vars: {raw_root: ../data/raw}\n"
          "state: {path: ../.etl/state.db}\ncatalog: {backend: local, path: ../.etl/catalog.db}\n")
    base = root / "data" / "raw" / "trips"
    write(base / "dt=2024-01-01" / "a.csv", "trip_id,fare\n1,2.5\n2,3\n")
    write(base / "dt=2024-01-02" / "a.csv", "trip_id,fare\n3,4\n")
    write(root / "jobs" / "wf.yaml", """
workflow: wf
crawlers:
  raw_trips: {path: "${env.raw_root}/trips/", database: raw, table: trips, schema_change: fail}
triggers:
  - {name: start, type: on_demand, actions: [{crawler: raw_trips}]}
""")
    return root


def catalog_state(proj: Path) -> str:
    r = etl(proj, "catalog", "list", "--json")
    assert r.returncode == 0, r.stderr
    tables = json.loads(r.stdout)
    shows = [json.loads(etl(proj, "catalog", "show", t["table"], "--json").stdout) for t in tables]
    for s in shows:
        s.pop("update_time")
    return json.dumps(shows, sort_keys=True)


def test_crawl_workflow_then_show_ddl_query(proj):
    r = etl(proj, "crawl", str(proj / "jobs" / "wf.yaml"), "--json")
    assert r.returncode == 0, r.stderr
    [res] = json.loads(r.stdout)
    assert res["crawler"] == "raw_trips" and res["state"] == "SUCCEEDED"
    show = json.loads(etl(proj, "catalog", "show", "raw.trips", "--json").stdout)
    assert show["format"] == "csv"
    assert show["columns"] == [{"name": "trip_id", "type": "bigint"}, {"name": "fare", "type": "double"}]
    assert show["partition_keys"] == [{"name": "dt", "type": "date"}]
    assert [p["values"] for p in show["partitions"]] == [{"dt": "2024-01-01"}, {"dt": "2024-01-02"}]
    assert show["location"] == str(proj / "data" / "raw" / "trips")
    ddl = etl(proj, "catalog", "ddl", "raw.trips").stdout
    assert ddl.startswith("CREATE EXTERNAL TABLE `raw`.`trips` (") and "PARTITIONED BY (`dt` date)" in ddl
    q = etl(proj, "query", "--json", "SELECT count(*) AS n, sum(fare) AS total FROM raw.trips")
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout) == [{"n": 3, "total": 9.5}]
    text = etl(proj, "query", "SELECT dt, count(*) AS n FROM raw.trips GROUP BY dt ORDER BY dt")
    assert text.stdout.splitlines()[0].split() == ["dt", "n"] and "2024-01-02  1" in text.stdout
    # by name, found among the project's workflow files; nothing new -> nothing changed
    again = etl(proj, "crawl", "--name", "raw_trips", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["stats"]["files_read"] == 0
    runs = json.loads(etl(proj, "catalog", "crawls", "raw_trips", "--json").stdout)
    assert [r["state"] for r in runs] == ["SUCCEEDED", "SUCCEEDED"]


def test_schema_change_fail_exits_1_and_keeps_catalog(proj):
    assert etl(proj, "crawl", str(proj / "jobs" / "wf.yaml")).returncode == 0
    before = catalog_state(proj)
    write(proj / "data" / "raw" / "trips" / "dt=2024-01-03" / "a.csv", "trip_id,fare,tip\n4,1,0.5\n")
    r = etl(proj, "crawl", str(proj / "jobs" / "wf.yaml"))
    assert r.returncode == 1
    assert "crawler raw_trips FAILED" in r.stderr and "new column tip" in r.stderr
    assert "Traceback" not in r.stderr
    assert catalog_state(proj) == before


@pytest.mark.parametrize(
    "layout, expected",
    [
        ({}, "does not exist"),
        ({"keep/.hidden": ""}, "holds no data files"),
        ({"a.csv": "x,y\nfoo,1\n", "b.json": '{"x": 1}\n'}, "mixed formats"),
        ({"a.csv": "1,2.5\n2,3.5\n"}, "no header row"),
        ({"2024-01-01/a.csv": "x,y\nfoo,1\n"}, "not a Hive partition folder"),
        ({"dt=2024-01-01/a.csv": "x\n1\n", "dt=abc/a.csv": "x\n2\n"}, "conflicting types"),
    ],
    ids=["missing", "empty", "mixed", "no-header", "not-key-value", "partition-types"],
)
def test_bad_crawl_input_exit_1_catalog_unchanged(proj, layout, expected):
    assert etl(proj, "crawl", str(proj / "jobs" / "wf.yaml")).returncode == 0
    before = catalog_state(proj)
    base = proj / "data" / "bad"
    for rel, text in layout.items():
        write(base / rel, text)
    if layout == {"keep/.hidden": ""}:
        base = base / "keep"
    r = etl(proj, "crawl", "--path", str(base), "--database", "raw")
    assert r.returncode == 1, r.stderr
    assert expected in r.stderr and "Traceback" not in r.stderr
    assert catalog_state(proj) == before


def test_query_and_catalog_errors_exit_2(proj):
    assert etl(proj, "crawl", str(proj / "jobs" / "wf.yaml")).returncode == 0
    before = catalog_state(proj)
    cases = [
        (["query", "SELEC count(*) FRM raw.trips"], "does not parse"),
        (["query", "SELECT count(*) FROM raw.nope"], "raw.nope is not in the catalog"),
        (["query", "SELECT nope FROM raw.trips"], "nope"),
        (["query", "SELECT * FROM trips"], "needs its database"),
        (["catalog", "show", "raw.nope"], "raw.nope is not in the catalog"),
        (["catalog", "ddl", "nodot"], "DATABASE.TABLE"),
        (["crawl", "--name", "nobody"], "no crawler named"),
    ]
    for args, expected in cases:
        r = etl(proj, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert expected in r.stderr, (args, r.stderr)
        assert r.stdout == "" and "Traceback" not in r.stderr
    assert catalog_state(proj) == before


def test_crawl_job_file_runs_its_crawl_entries(proj):
    write(proj / "jobs" / "job.yaml", """
job: trips_job
sources:
  trips: {format: csv, path: "${env.raw_root}/trips/", options: {header: true}}
crawl:
  - {source: trips, database: raw, table: trips_from_job, schema_change: update}
target: {format: delta, path: ../data/lake/t}
""")
    r = etl(proj, "crawl", str(proj / "jobs" / "job.yaml"), "--json")
    assert r.returncode == 0, r.stderr
    [res] = json.loads(r.stdout)
    assert res["crawler"] == "trips_job.raw.trips_from_job" and res["state"] == "SUCCEEDED"
    show = json.loads(etl(proj, "catalog", "show", "raw.trips_from_job", "--json").stdout)
    assert len(show["partitions"]) == 2
    wrong = etl(proj, "crawl", str(proj / "jobs" / "job.yaml"), "--name", "other")
    assert wrong.returncode == 2 and "no crawler named 'other'" in wrong.stderr
