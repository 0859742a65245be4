"""`etl resume`: a run that failed in the write stage, fixed, resumes under the same run id; a write that
committed but whose record was lost is recognised from the target and never redone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_framework.cli import cli
from etl_framework.cli.common import run_cli
from etl_framework.state.runs import SqliteRunStore
from tests.spark.test_runtime_helpers import delta_rows, trips, write_csv


def make_project(root: Path, partition_by: str, schema: Any = None) -> Path:
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    write_csv(root / "in", trips(range(6)), "a.csv")
    job = {
        "job": "resumable", "sources": {"trips": {
            "format": "csv", "path": "../in", "options": {"header": True}, "incremental": {"mode": "files"},
            "schema": schema or {"trip_id": "long", "pickup_ts": "timestamp", "zone_id": "int", "distance": "double",
                                 "fare": "double"}}},
        "transform": [{"with_columns": {"day": "to_date(pickup_ts)"}}],
        "target": {"format": "delta", "path": "../out", "partition_by": [partition_by]},
        "register": {"database": "curated", "table": "resumable"},
    }
    path = root / "jobs" / "resumable.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def etl(root: Path, *args: str) -> int:
    return run_cli(cli, ["--project-dir", str(root), *args])


def last_run(root: Path) -> dict[str, Any]:
    store = SqliteRunStore(root / ".etl" / "state.db")
    run = store.get_run(store.list_runs(limit=1)[0]["run_id"])
    assert run is not None
    return run


def test_failed_write_fixed_then_resumed(spark: Any, tmp_path: Path) -> None:
    root = tmp_path / "p"
    # an inferred schema: `etl validate` cannot know the columns (a declared one would stop this before the run)
    job = make_project(root, partition_by="no_such_column", schema="infer")
    assert etl(root, "run", "--no-report", str(job)) == 1
    failed = last_run(root)
    assert failed["status"] == "FAILED" and failed["error_stage"] == "write"
    job.write_text(job.read_text().replace("no_such_column", "day"))  # the fix
    assert etl(root, "resume", failed["run_id"]) == 0
    done = last_run(root)
    assert done["run_id"] == failed["run_id"] and done["status"] == "SUCCEEDED"
    attempts = {(s["stage"], s["attempt"]) for s in done["stages"] if s["status"] == "SUCCEEDED"}
    assert ("write", 2) in attempts and ("register", 2) in attempts
    assert [r["trip_id"] for r in delta_rows(root / "out")] == list(range(6))
    # the bookmark advanced with the resumed write: a new run finds nothing new
    assert etl(root, "run", "--no-report", str(job)) == 0
    assert [r["trip_id"] for r in delta_rows(root / "out")] == list(range(6))


def test_committed_write_with_lost_record_is_not_redone(spark: Any, tmp_path: Path) -> None:
    root = tmp_path / "p"
    job = make_project(root, partition_by="day")
    assert etl(root, "run", "--no-report", str(job)) == 0
    run = last_run(root)
    # As if the process was killed right after the Delta commit: the write and register records are gone.
    store = SqliteRunStore(root / ".etl" / "state.db")
    store.conn.execute("DELETE FROM job_run_stages WHERE run_id=? AND stage IN ('write','register')",
                       (run["run_id"],))
    store.update_run(run["run_id"], status="FAILED")
    assert etl(root, "resume", run["run_id"]) == 0
    resumed = last_run(root)
    by_attempt = {(s["stage"], s["attempt"]): s["status"] for s in resumed["stages"]}
    assert by_attempt[("write", 2)] == "SKIPPED" and by_attempt[("register", 2)] == "SUCCEEDED"
    assert [r["trip_id"] for r in delta_rows(root / "out")] == list(range(6)), "no row written twice"


@pytest.mark.parametrize("case", ["succeeded", "missing"])
def test_resume_refuses_what_cannot_be_resumed(spark: Any, tmp_path: Path, case: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "p"
    job = make_project(root, partition_by="day")
    assert etl(root, "run", "--no-report", str(job)) == 0
    run_id = last_run(root)["run_id"] if case == "succeeded" else "jr_20200101T000000_abcdef"
    capsys.readouterr()
    assert etl(root, "resume", run_id) == 2
    out = capsys.readouterr().err
    assert ("nothing to resume" in out) if case == "succeeded" else ("no job run" in out and "recent runs" in out)
    assert "Traceback" not in out
