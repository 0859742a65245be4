"""The example workflow `jobs/nightly_trips.yaml` end to end on generated sample data (what `make demo` runs):
crawl raw trips, then zones_load and trips_clean in parallel, then trip_stats once both succeeded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def run(proj: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ETL_QUIET": "1"}
    env.pop("ETL_PROJECT_DIR", None)
    return subprocess.run(list(args), cwd=proj, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)


def etl(proj: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(proj, sys.executable, "-c", "from etl_framework.cli import main; main()", *args)


def test_nightly_trips_end_to_end(project: Path) -> None:
    gen = run(project, sys.executable, str(REPO / "scripts" / "generate_data.py"), "--rows", "400", "--files", "2",
              "--days", "2", "--out", "data/raw")
    assert gen.returncode == 0, gen.stderr

    r = etl(project, "workflow", "run", "jobs/nightly_trips.yaml", "--property", "note=e2e", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(r.stdout)
    assert rec["state"] == "COMPLETED" and rec["workflow"] == "nightly_trips"
    nodes = {n["node"]: n for n in rec["nodes"]}
    assert {k: v["state"] for k, v in nodes.items()} == {
        "zones_load": "SUCCEEDED", "trips_clean": "SUCCEEDED", "trip_stats": "SUCCEEDED", "raw_trips": "SUCCEEDED"}
    assert nodes["raw_trips"]["kind"] == "crawler" and nodes["raw_trips"]["trigger"] == "start"
    assert nodes["trips_clean"]["trigger"] == "after_crawl"
    assert nodes["trips_clean"]["arguments"] == {"min_distance": 0.1}
    assert nodes["trip_stats"]["trigger"] == "after_curated"
    assert all(nodes[j]["job_run_id"] for j in ("zones_load", "trips_clean", "trip_stats"))
    # zones_load and trips_clean ran in parallel (the graph allows it, concurrency 2)
    z, t = nodes["zones_load"], nodes["trips_clean"]
    assert z["started_at"] < t["ended_at"] and t["started_at"] < z["ended_at"]
    # both finished before trip_stats started (the `and` trigger)
    assert nodes["trip_stats"]["started_at"] >= max(z["ended_at"], t["ended_at"])
    assert rec["statistics"] == {
        "TotalActions": 4, "RunningActions": 0, "SucceededActions": 4, "FailedActions": 0, "TimeoutActions": 0,
        "StoppedActions": 0, "ErroredActions": 0, "WaitingActions": 0,
    }
    assert rec["properties"]["region"] == "eu" and rec["properties"]["note"] == "e2e"
    fired = {x["trigger"]: x["state"] for x in rec["triggers"]}
    assert fired == {"start": "FIRED", "after_crawl": "FIRED", "after_curated": "FIRED"}

    # what the user checks afterwards: the curated table, read by an independent Delta reader
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    path = str(project / "data" / "lake" / "curated" / "trips")
    table = DeltaTable(path).to_pyarrow_table(filesystem=pafs.SubTreeFileSystem(path, pafs.LocalFileSystem()))
    assert table.num_rows > 0
    assert min(table.column("trip_distance").to_pylist()) > 0.1  # the action's argument overrode the param

    # the daily stats: an Iceberg table, registered as Glue registers Iceberg, its counts add up to the curated rows
    show = etl(project, "catalog", "show", "marts.trip_stats", "--json")
    assert show.returncode == 0, show.stderr[-2000:]
    shown = json.loads(show.stdout)
    assert shown["format"] == "iceberg" and shown["parameters"]["table_type"] == "ICEBERG"
    assert Path(shown["parameters"]["metadata_location"].removeprefix("file:")).is_file()
    q = etl(project, "query", "SELECT sum(trips) AS n FROM marts.trip_stats", "--json")
    assert q.returncode == 0, q.stderr[-2000:]
    assert json.loads(q.stdout)[0]["n"] == table.num_rows

    status = etl(project, "workflow", "status")
    assert status.returncode == 0 and rec["run_id"] in status.stdout and "COMPLETED" in status.stdout
    plan = etl(project, "plan", "jobs/nightly_trips.yaml", "--run", rec["run_id"], "--format", "mermaid")
    assert plan.returncode == 0 and "SUCCEEDED" in plan.stdout
