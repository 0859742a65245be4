"""`etl report` as a user runs it: the path of the written report on stdout, exit 2 with the recent runs named
for an id that does not exist, and never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.test_report_load import make_workflow_run

ETL = str(Path(sys.executable).parent / "etl")


def etl(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETL, "--project-dir", str(project), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_report_of_a_job_run_to_the_default_path(project: Path) -> None:
    make_workflow_run(project)
    res = etl(project, "report", "jr_trips_1")
    assert res.returncode == 0, res.stderr
    path = Path(res.stdout.strip())
    assert path == project.resolve() / "reports" / "jr_trips_1.html"
    page = path.read_text()
    assert "job run trips_clean" in page and "fare_amout" in page and "Traceback" not in res.stderr


def test_unknown_run_id_exits_2_and_names_recent_runs(project: Path) -> None:
    made = make_workflow_run(project)
    res = etl(project, "report", "jr_does_not_exist")
    assert res.returncode == 2
    assert "no job run with id jr_does_not_exist" in res.stderr
    assert made["workflow_run_id"] in res.stderr and "jr_stats_1" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    res = etl(project, "report", "--workflow-run", "wr_nope")
    assert res.returncode == 2 and "no workflow run with id wr_nope" in res.stderr


def test_both_ids_is_a_usage_error(project: Path) -> None:
    res = etl(project, "report", "a", "--workflow-run", "b")
    assert res.returncode == 2 and "either RUN_ID or --workflow-run" in res.stderr
