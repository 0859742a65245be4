"""The report built from the real stores (SQLite run, workflow and bookmark stores) and the example workflow
file:
what `etl report` shows for a workflow run, a single job run, a run still going, an unknown id, and a state
file
written by an older version."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from etl_framework.catalog.crawler import CrawlerRunResult
from etl_framework.config.project import Project
from etl_framework.errors import UsageError
from etl_framework.incremental import Bookmark, SourceCursor
from etl_framework.report import write_report
from etl_framework.report.load import build_report
from etl_framework.report.render import render
from etl_framework.state.bookmarks import SqliteBookmarkStore
from etl_framework.state.crawlers import SqliteCrawlerStore
from etl_framework.state.runs import SqliteRunStore
from etl_framework.state.workflows import WorkflowStore, statistics_of

T0 = datetime(2026, 11, 25, 2, 0, 0, tzinfo=UTC)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _job_run(
    runs: SqliteRunStore,
    run_id: str,
    job: str,
    wr: str | None,
    start: float,
    status: str,
    stages: list[tuple[str, str, float, float, dict[str, Any], str | None]],
    attempt: int = 1,
    error: tuple[str, str] | None = None,
    end: float | None = None,
) -> None:
    runs.create_run(
        {
            "run_id": run_id,
            "job": job,
            "env": "local",
            "params": {"min_distance": 0.1},
            "started_at": ts(start),
            "workflow_run_id": wr,
            "attempt": attempt,
        }
    )
    for seq, (stage, st, a, b, metrics, err) in enumerate(stages):
        runs.start_stage(run_id, stage, seq, ts(a), attempt=attempt)
        if st != "RUNNING":
            runs.finish_stage(
                run_id,
                stage,
                status=st,
                ended_at=ts(b),
                duration_s=b - a,
                metrics=metrics,
                error=err,
                attempt=attempt,
            )
    if status != "RUNNING":
        last = end if end is not None else max(s[3] for s in stages)
        runs.update_run(
            run_id,
            status=status,
            ended_at=ts(last),
            duration_s=last - start,
            error=error[1] if error else None,
            error_stage=error[0] if error else None,
        )


def make_workflow_run(project_root: Path, running: bool = False) -> dict[str, Any]:
    """A realistic run of the example workflow `nightly_trips`, written through the real stores: the crawler
    succeeded, zones_load succeeded, trips_clean failed once then succeeded on its retry (with quality
    results,
    quarantined rows and a bookmark that advanced), trip_stats succeeded — or, with `running`, is still
    running."""
    project = Project.discover(project_root)
    state = Path(project.env_config("local").state.path)
    wf_path = project.jobs_dir / "nightly_trips.yaml"
    runs, wfs, bms = SqliteRunStore(state), WorkflowStore(state), SqliteBookmarkStore(state)
    nodes = {"raw_trips": "crawler", "zones_load": "job", "trips_clean": "job", "trip_stats": "job"}
    wr = wfs.begin_run(
        "nightly_trips",
        max_concurrent_runs=1,
        nodes=nodes,
        properties={"region": "eu"},
        workflow_path=str(wf_path),
        env="local",
        executor="inline",
        started_by="start",
    )
    with wfs.tx() as c:  # deterministic times for the assertions
        c.execute("UPDATE workflow_runs SET started_at = ? WHERE run_id = ?", (ts(0), wr))
    wfs.set_trigger(wr, "start", "FIRED", "started by on_demand trigger")
    wfs.update_node(
        wr,
        "raw_trips",
        state="SUCCEEDED",
        trigger="start",
        started_at=ts(0),
        ended_at=ts(4),
        duration=4.0,
        attempts=1,
    )
    wfs.set_trigger(wr, "after_crawl", "FIRED", "raw_trips SUCCEEDED")
    crawls = SqliteCrawlerStore(state)  # the crawler's own record, as the catalog's crawler writes it
    cid = crawls.start("raw_trips", "raw", "trips", "/d/raw/trips/", "log")
    crawls.finish(
        cid,
        CrawlerRunResult(
            crawler="raw_trips",
            state="SUCCEEDED",
            message="2 file(s) read, 2 partition(s) added",
            database="raw",
            table="trips",
            stats={"files_read": 2, "partitions_added": 2},
            changes=[
                {"change": "table_created", "table": "raw.trips", "format": "csv", "columns": 8},
                {"change": "partitions_added", "count": 2, "values": [["2024-01-01"], ["2024-01-02"]]},
            ],
        ),
    )
    with crawls.conn:
        crawls.conn.execute(
            "UPDATE crawler_runs SET started = ?, ended = ? WHERE id = ?", (ts(1), ts(3), cid)
        )
    crawls.close()

    _job_run(
        runs,
        "jr_zones_1",
        "zones_load",
        wr,
        5,
        "SUCCEEDED",
        [
            ("extract", "SUCCEEDED", 6, 8, {"rows_in": 265, "bytes": 12_288, "files": 1}, None),
            ("transform", "SUCCEEDED", 8, 9, {}, None),
            (
                "write",
                "SUCCEEDED",
                9,
                14,
                {"rows_out": 265, "bytes": 9_000, "files": 1, "partitions": 0},
                None,
            ),
            ("register", "SUCCEEDED", 14, 15, {}, None),
        ],
    )
    wfs.update_node(
        wr,
        "zones_load",
        state="SUCCEEDED",
        trigger="after_crawl",
        started_at=ts(5),
        ended_at=ts(15),
        duration=10.0,
        attempts=1,
        job_run_id="jr_zones_1",
        job_run_ids=["jr_zones_1"],
    )

    _job_run(
        runs,
        "jr_trips_1",
        "trips_clean",
        wr,
        5,
        "FAILED",
        [
            ("extract", "SUCCEEDED", 6, 9, {"rows_in": 1000, "bytes": 64_000, "files": 2}, None),
            ("transform", "FAILED", 9, 11, {}, "[UNRESOLVED_COLUMN] `fare_amout` cannot be resolved"),
        ],
        error=("transform", "[UNRESOLVED_COLUMN] `fare_amout` cannot be resolved"),
    )
    before = Bookmark(
        job="trips_clean",
        version=1,
        run_id="jr_old",
        sources={"trips": SourceCursor(mode="files", files={"/d/raw/trips/day=1/a.csv": [10, 1.0]})},
    )
    bms.put(before)
    _job_run(
        runs,
        "jr_trips_2",
        "trips_clean",
        wr,
        14,
        "SUCCEEDED",
        [
            ("extract", "SUCCEEDED", 14, 17, {"rows_in": 1000, "bytes": 64_000, "files": 2}, None),
            ("transform", "SUCCEEDED", 17, 18, {}, None),
            ("quality", "SUCCEEDED", 18, 25, {"rows_in": 990}, None),
            (
                "write",
                "SUCCEEDED",
                25,
                31,
                {"rows_out": 978, "bytes": 51_200, "files": 2, "partitions": 2},
                None,
            ),
            ("register", "SUCCEEDED", 31, 32, {}, None),
        ],
        attempt=2,
    )
    runs.set_detail(
        "jr_trips_2",
        "quality",
        {
            "row_count": 990,
            "quarantined_rows": 12,
            "results": [
                {
                    "rule": "trip_id_not_null",
                    "expectation": "expect_column_values_to_not_be_null",
                    "kwargs": {"column": "trip_id"},
                    "on_fail": "fail",
                    "success": True,
                    "observed_value": None,
                    "unexpected_count": 0,
                    "unexpected_percent": 0.0,
                    "action": "none",
                },
                {
                    "rule": "fare_in_range",
                    "expectation": "expect_column_values_to_be_between",
                    "kwargs": {"column": "fare_amount", "min_value": 0, "max_value": 1000},
                    "on_fail": "quarantine",
                    "success": False,
                    "observed_value": [-3.5, 1200.0],
                    "unexpected_count": 12,
                    "unexpected_percent": 1.2121,
                    "action": "quarantined",
                },
            ],
        },
    )
    after = Bookmark(
        job="trips_clean",
        version=2,
        run_id="jr_trips_2",
        sources={
            "trips": SourceCursor(
                mode="files",
                files={"/d/raw/trips/day=1/a.csv": [10, 1.0], "/d/raw/trips/day=2/b.csv": [12, 2.0]},
            )
        },
    )
    bms.put(after)
    wfs.update_node(
        wr,
        "trips_clean",
        state="SUCCEEDED",
        trigger="after_crawl",
        started_at=ts(5),
        ended_at=ts(32),
        duration=27.0,
        attempts=2,
        job_run_id="jr_trips_2",
        job_run_ids=["jr_trips_1", "jr_trips_2"],
    )
    wfs.set_trigger(wr, "after_curated", "FIRED", "zones_load SUCCEEDED and trips_clean SUCCEEDED")
    if running:
        _job_run(
            runs,
            "jr_stats_1",
            "trip_stats",
            wr,
            33,
            "RUNNING",
            [
                ("extract", "SUCCEEDED", 33, 35, {"rows_in": 978}, None),
                ("transform", "RUNNING", 35, 0, {}, None),
            ],
        )
        wfs.update_node(
            wr,
            "trip_stats",
            state="RUNNING",
            trigger="after_curated",
            started_at=ts(33),
            attempts=1,
            job_run_id="jr_stats_1",
            job_run_ids=["jr_stats_1"],
        )
    else:
        _job_run(
            runs,
            "jr_stats_1",
            "trip_stats",
            wr,
            33,
            "SUCCEEDED",
            [
                ("extract", "SUCCEEDED", 33, 35, {"rows_in": 978}, None),
                ("transform", "SUCCEEDED", 35, 38, {}, None),
                ("write", "SUCCEEDED", 38, 41, {"rows_out": 2, "partitions": 2}, None),
            ],
        )
        wfs.update_node(
            wr,
            "trip_stats",
            state="SUCCEEDED",
            trigger="after_curated",
            started_at=ts(33),
            ended_at=ts(41),
            duration=8.0,
            attempts=1,
            job_run_id="jr_stats_1",
            job_run_ids=["jr_stats_1"],
        )
        nodes_now = wfs.get_run(wr)["nodes"]
        wfs.finish_run(wr, "COMPLETED", statistics_of(nodes_now))
        with wfs.tx() as c:
            c.execute("UPDATE workflow_runs SET ended_at = ? WHERE run_id = ?", (ts(41), wr))
    runs.close()
    wfs.close()
    return {"project": project, "workflow_run_id": wr, "state": state}


def test_workflow_report_from_the_stores(project: Path) -> None:
    made = make_workflow_run(project)
    report = build_report(made["project"], "local", workflow_run_id=made["workflow_run_id"])
    wf = report.workflow
    assert wf is not None and wf.status == "COMPLETED" and wf.workflow == "nightly_trips"
    states = {n.name: (n.kind, n.state) for n in wf.nodes}
    assert states == {
        "start": ("trigger", "FIRED"),
        "nightly": ("trigger", "NOT_FIRED"),
        "after_crawl": ("trigger", "FIRED"),
        "after_curated": ("trigger", "FIRED"),
        "on_new_files": ("trigger", "NOT_FIRED"),
        "raw_trips": ("crawler", "SUCCEEDED"),
        "zones_load": ("job", "SUCCEEDED"),
        "trips_clean": ("job", "SUCCEEDED"),
        "trip_stats": ("job", "SUCCEEDED"),
    }
    edges = {(e.src, e.dst, e.label) for e in wf.edges}
    assert ("raw_trips", "trigger:after_crawl", "SUCCEEDED") in edges
    assert ("trigger:after_curated", "trip_stats", "") in edges
    trips = next(n for n in wf.nodes if n.name == "trips_clean")
    assert [(a.number, a.state, a.job_run_id) for a in trips.attempts] == [
        (1, "FAILED", "jr_trips_1"),
        (2, "SUCCEEDED", "jr_trips_2"),
    ]
    assert wf.statistics["SucceededActions"] == 4
    runs = {r.run_id: r for r in report.job_runs}
    assert set(runs) == {"jr_zones_1", "jr_trips_1", "jr_trips_2", "jr_stats_1"}
    failed = runs["jr_trips_1"]
    assert (failed.status, failed.error_stage) == ("FAILED", "transform") and "fare_amout" in failed.error
    ok = runs["jr_trips_2"]
    assert [q.name for q in ok.quality] == ["trip_id_not_null", "fare_in_range"]
    fare = ok.quality[1]
    assert (fare.success, fare.unexpected_count, fare.action, fare.column) == (
        False,
        12,
        "quarantined",
        "fare_amount",
    )
    assert ok.quarantine == {"rows": 12, "fare_in_range": 12}
    write = next(s for s in ok.stages if s.name == "write")
    assert write.metrics == {"rows_out": 978, "bytes": 51_200, "files": 2, "partitions": 2}
    # bookmarks from the bookmark store's history: before = the entry before this run's commit
    (bm,) = ok.bookmarks
    assert len(bm.before["files"]) == 1 and len(bm.after["files"]) == 2
    (crawl,) = wf.crawler_runs
    assert (crawl.crawler, crawl.state, crawl.table) == ("raw_trips", "SUCCEEDED", "trips")
    page = render(report)
    for name in states:
        assert f'data-node="{name}"' in page
    assert (
        "<h2>crawler runs</h2>" in page and "<b>table_created</b>" in page and "2 partition(s) added" in page
    )


def test_write_report_default_path_and_latest_run(project: Path) -> None:
    made = make_workflow_run(project)
    path = write_report(made["project"], workflow_run_id=made["workflow_run_id"])
    assert path == project.resolve() / "reports" / f"{made['workflow_run_id']}.html"
    assert "trips_clean" in path.read_text()
    # no id: the most recently started run that is not part of a workflow run: here the workflow run
    latest = write_report(made["project"], out=project / "latest.html")
    assert latest == (project / "latest.html").resolve()
    assert "<title>workflow run nightly_trips</title>" in latest.read_text()
    # a job run of its own started later is the latest
    runs = SqliteRunStore(made["state"])
    _job_run(
        runs, "jr_alone", "zones_load", None, 100, "SUCCEEDED", [("extract", "SUCCEEDED", 100, 101, {}, None)]
    )
    assert (
        "<title>job run zones_load</title>"
        in write_report(made["project"], out=project / "l2.html").read_text()
    )


def test_single_job_run_report(project: Path) -> None:
    made = make_workflow_run(project)
    report = build_report(made["project"], "local", run_id="jr_trips_1")
    assert report.workflow is None and [r.run_id for r in report.job_runs] == ["jr_trips_1"]
    page = render(report)
    assert 'class="graph"' not in page and "stage <b>transform</b>" in page


def test_a_workflow_run_id_given_as_run_id_is_found(project: Path) -> None:
    made = make_workflow_run(project)
    report = build_report(made["project"], "local", run_id=made["workflow_run_id"])
    assert report.workflow is not None


def test_unknown_run_id_is_a_usage_error_naming_recent_runs(project: Path) -> None:
    made = make_workflow_run(project)
    with pytest.raises(UsageError) as e:
        build_report(made["project"], "local", run_id="jr_nope")
    assert e.value.exit_code == 2
    text = str(e.value)
    assert "no job run with id jr_nope" in text and made["workflow_run_id"] in text and "jr_stats_1" in text
    with pytest.raises(UsageError, match="no workflow run with id wr_nope"):
        build_report(made["project"], "local", workflow_run_id="wr_nope")


def test_no_run_at_all(project: Path) -> None:
    with pytest.raises(UsageError, match="no run recorded yet"):
        build_report(Project.discover(project), "local")


def test_running_workflow_run_says_so(project: Path) -> None:
    made = make_workflow_run(project, running=True)
    report = build_report(made["project"], "local", workflow_run_id=made["workflow_run_id"])
    assert report.running
    page = render(report)
    assert "This run is still running" in page
    assert 'data-node="trip_stats" data-kind="job" data-state="RUNNING"' in page
    assert 'fill="url(#running)"' in page


def test_state_file_of_an_older_version_renders(project: Path) -> None:
    """An old state file: a slimmer job_runs table (no details, no stage table), odd values."""
    state = Path(Project.discover(project).env_config("local").state.path)
    state.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(state)
    conn.executescript(
        "CREATE TABLE job_runs (run_id TEXT PRIMARY KEY, job TEXT, status TEXT, started_at TEXT,"
        " ended_at TEXT, error TEXT);"
        "INSERT INTO job_runs VALUES ('r-0001', 'legacy_job', 'FAILED', '2025-01-02 03:04:05',"
        " NULL, 'disk full');"
    )
    conn.commit()
    conn.close()
    report = build_report(Project.discover(project), "local", run_id="r-0001")
    (run,) = report.job_runs
    assert (run.job, run.status, run.error) == ("legacy_job", "FAILED", "disk full")
    page = render(report)
    assert "legacy_job" in page and "disk full" in page and "no stage records" in page


def test_resumed_run_shows_the_run_it_resumes_and_copied_nodes(project: Path) -> None:
    made = make_workflow_run(project)
    wfs = WorkflowStore(made["state"])
    nodes = {"raw_trips": "crawler", "zones_load": "job", "trips_clean": "job", "trip_stats": "job"}
    wr2 = wfs.begin_run(
        "nightly_trips",
        max_concurrent_runs=None,
        nodes=nodes,
        properties={},
        workflow_path=str(project / "jobs" / "nightly_trips.yaml"),
        env="local",
        previous_run_id=made["workflow_run_id"],
    )
    wfs.update_node(wr2, "raw_trips", state="SUCCEEDED", copied_from=made["workflow_run_id"], attempts=1)
    wfs.update_node(
        wr2,
        "trip_stats",
        state="FAILED",
        started_at=ts(50),
        ended_at=ts(55),
        attempts=1,
        error="job trip_stats, stage write: disk full",
    )
    wfs.finish_run(wr2, "COMPLETED", statistics_of(wfs.get_run(wr2)["nodes"]))
    wfs.close()
    report = build_report(made["project"], "local", workflow_run_id=wr2)
    assert report.workflow.resumed_from == made["workflow_run_id"]
    raw = next(n for n in report.workflow.nodes if n.name == "raw_trips")
    assert raw.detail == f"copied from {made['workflow_run_id']}"
    page = render(report)
    assert f"resumes run <code>{made['workflow_run_id']}</code>" in page
    assert f"copied from {made['workflow_run_id']}" in page
    assert "job trip_stats, stage write: disk full" in page
    assert 'data-node="trip_stats" data-kind="job" data-state="FAILED"' in page
