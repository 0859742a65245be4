"""`etl validate` refuses a job whose written tables could hold what is not theirs (SPEC §13), at file:line:col,
without a JVM: a target at the lake root, at `..`, over the project, over another job's table or input, inside
another job's table; reading another job's table and two jobs writing one table stay allowed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.test_config_cli import run


def set_target(job: Path, path: str, extra: str = "") -> int:
    """Point the job's target at `path`; returns the line of `path:` under target."""
    lines = job.read_text().splitlines()
    start = next(i for i, t in enumerate(lines) if t.startswith("target:"))
    at = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("path:"))
    lines[at] = lines[at].split("path:")[0] + f"path: {path}" + extra
    job.write_text("\n".join(lines) + "\n")
    return at + 1


@pytest.mark.parametrize(("path", "says"), [
    ("${env.lake_root}", "contains the table"),          # the lake root holds the other jobs' tables
    ("..", "contains the project directory"),            # relative to jobs/: the project itself
    ("../..", "contains the project directory"),
    ("${env.raw_root}/..", "more: the table"),
    ("${env.raw_root}", "contains this job's input"),
    ("../.etl", "contains the state folder"),
    ("${env.lake_root}/curated/trips/pickup_date=2024-01-01", "lies inside the table"),
])
def test_a_target_over_what_is_not_its_own_is_a_config_error(project: Path, path: str, says: str) -> None:
    job = project / "jobs" / "zones_load.yaml"
    line = set_target(job, path)
    rc, _out, err = run("--project-dir", str(project), "validate", str(job))
    assert rc == 2, err
    assert f"zones_load.yaml:{line}:" in err and says in err, err
    assert "Traceback" not in err


def test_a_symlink_to_the_lake_root_is_seen_through(project: Path, tmp_path: Path) -> None:
    (project / "data" / "lake").mkdir(parents=True)
    os.symlink(project / "data" / "lake", tmp_path / "lake_alias")
    job = project / "jobs" / "zones_load.yaml"
    set_target(job, str(tmp_path / "lake_alias"))
    rc, _out, err = run("--project-dir", str(project), "validate", str(job))
    assert rc == 2 and "contains the table" in err, err


def test_reading_another_jobs_table_and_sharing_a_table_are_allowed(project: Path) -> None:
    rc, _out, err = run("--project-dir", str(project), "validate")
    assert rc == 0, err  # trip_stats reads trips_clean's table
    other = (project / "jobs" / "trips_clean.yaml").read_text()
    target = other.split("target:")[1].split("path:")[1].splitlines()[0].strip()
    copy = project / "jobs" / "trips_clean_backfill.yaml"
    copy.write_text(other.replace("job: trips_clean", "job: trips_clean_backfill"))
    assert target in copy.read_text()
    rc, _out, err = run("--project-dir", str(project), "validate")
    assert rc == 0, err  # two jobs writing one table
