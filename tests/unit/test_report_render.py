"""The HTML report renderer on hand-built runs: what a reader of the page must find, and that the page is
self-contained (nothing it could fetch from a network)."""

from __future__ import annotations

import functools
import operator
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from etl_framework.report.model import (
    Attempt,
    Edge,
    Node,
    Report,
    WorkflowRun,
    graph_from_config,
    job_run_from_dict,
    parse_time,
    workflow_run_from_dict,
)
from etl_framework.report.render import layers, render

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def job_record(**over: object) -> dict:
    rec = {
        "run_id": "jr_20261125_a1",
        "job": "trips_clean",
        "env": "local",
        "status": "SUCCEEDED",
        "attempt": 1,
        "started_at": at(10),
        "ended_at": at(70),
        "duration_s": 60.0,
        "params": {"min_distance": 0.1},
        "error": None,
        "error_stage": None,
        "workflow_run_id": "wr_1",
        "stages": [
            {
                "stage": "extract",
                "seq": 2,
                "attempt": 1,
                "status": "SUCCEEDED",
                "started_at": at(11),
                "ended_at": at(20),
                "duration_s": 9.0,
                "metrics": {"rows_in": 1200, "bytes": 52_000, "files": 2},
            },
            {
                "stage": "transform",
                "seq": 3,
                "attempt": 1,
                "status": "SUCCEEDED",
                "started_at": at(20),
                "ended_at": at(25),
                "duration_s": 5.0,
                "metrics": {},
            },
            {
                "stage": "quality",
                "seq": 4,
                "attempt": 1,
                "status": "SUCCEEDED",
                "started_at": at(25),
                "ended_at": at(40),
                "duration_s": 15.0,
                "metrics": {"rows_in": 1200},
            },
            {
                "stage": "write",
                "seq": 5,
                "attempt": 1,
                "status": "SUCCEEDED",
                "started_at": at(40),
                "ended_at": at(65),
                "duration_s": 25.0,
                "metrics": {"rows_out": 1187, "bytes": 40_960, "files": 3, "partitions": 3},
            },
        ],
        "details": {
            "quality": {
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
                        "rule": "expect_column_values_to_be_between(fare_amount)",
                        "expectation": "expect_column_values_to_be_between",
                        "kwargs": {"column": "fare_amount"},
                        "on_fail": "quarantine",
                        "success": False,
                        "observed_value": [-5.0, 2000.0],
                        "unexpected_count": 13,
                        "unexpected_percent": 1.0833,
                        "action": "quarantined",
                    },
                    {
                        "rule": "expect_table_row_count_to_be_between",
                        "expectation": "expect_table_row_count_to_be_between",
                        "kwargs": {},
                        "on_fail": "warn",
                        "success": True,
                        "observed_value": 1200,
                        "unexpected_count": None,
                        "unexpected_percent": None,
                        "action": "none",
                    },
                ],
                "quarantined_rows": 13,
            },
            "bookmarks": {
                "before": {
                    "job": "trips_clean",
                    "version": 1,
                    "sources": {"trips": {"mode": "files", "files": {"/data/raw/trips/a.csv": [10, 1.0]}}},
                },
                "after": {
                    "job": "trips_clean",
                    "version": 2,
                    "sources": {
                        "trips": {
                            "mode": "files",
                            "files": {"/data/raw/trips/a.csv": [10, 1.0], "/data/raw/trips/b.csv": [12, 2.0]},
                        }
                    },
                },
            },
        },
    }
    rec.update(over)
    return rec


class _Collector(HTMLParser):
    """Every tag with its attributes, and the text: to check the page like a browser reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Collector:
    c = _Collector()
    c.feed(page)
    return c


def assert_self_contained(page: str) -> None:
    c = parse(page)
    tags = {t for t, _ in c.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "audio", "video", "source"}
    for tag, attrs in c.tags:
        for key in ("src", "href", "srcset", "action", "xlink:href"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith("#"), f"<{tag} {key}={value}> points outside the page"
    assert "@import" not in page and "url(http" not in page
    # the only absolute URL is the SVG namespace, which is a name, not a request
    assert set(re.findall(r"https?://[^\s\"')]+", page)) <= {"http://www.w3.org/2000/svg"}


def workflow_report() -> Report:
    from etl_framework.config.model import WorkflowConfig

    cfg = WorkflowConfig.model_validate(
        {
            "workflow": "nightly",
            "jobs": {"zones_load": "z.yaml", "trips_clean": "t.yaml", "trip_stats": "s.yaml"},
            "crawlers": {"raw_trips": {"path": "/d", "database": "raw"}},
            "triggers": [
                {"name": "start", "type": "on_demand", "actions": [{"crawler": "raw_trips"}]},
                {
                    "name": "after_crawl",
                    "type": "conditional",
                    "conditions": [{"crawler": "raw_trips", "state": "SUCCEEDED"}],
                    "actions": [{"job": "zones_load"}, {"job": "trips_clean"}],
                },
                {
                    "name": "after_curated",
                    "type": "conditional",
                    "conditions": [
                        {"job": "zones_load", "state": "SUCCEEDED"},
                        {"job": "trips_clean", "state": "SUCCEEDED"},
                    ],
                    "actions": [{"job": "trip_stats"}],
                },
            ],
        }
    )
    nodes, edges = graph_from_config(cfg)
    state = {
        "raw_trips": ("SUCCEEDED", 0, 9),
        "zones_load": ("SUCCEEDED", 10, 30),
        "trips_clean": ("FAILED", 10, 70),
        "trip_stats": ("NOT_RUN", None, None),
    }
    for n in nodes:
        if n.kind == "trigger":
            n.state = "FIRED" if n.name != "after_curated" else "NOT_FIRED"
        else:
            s, a, b = state[n.name]
            n.state = s
            n.started_at = parse_time(at(a)) if a is not None else None
            n.ended_at = parse_time(at(b)) if b is not None else None
    failed = job_run_from_dict(
        job_record(
            run_id="jr_2",
            status="FAILED",
            attempt=2,
            started_at=at(40),
            ended_at=at(70),
            error="Column 'fare' does not exist",
            error_stage="transform",
            stages=[
                {
                    "stage": "extract",
                    "status": "SUCCEEDED",
                    "started_at": at(41),
                    "ended_at": at(50),
                    "metrics": {"rows_in": 5},
                },
                {
                    "stage": "transform",
                    "status": "FAILED",
                    "started_at": at(50),
                    "ended_at": at(70),
                    "error": "Column 'fare' does not exist",
                },
            ],
        )
    )
    first = job_run_from_dict(
        job_record(
            run_id="jr_1",
            status="FAILED",
            started_at=at(10),
            ended_at=at(35),
            error="boom <script>alert(1)</script>",
            error_stage="extract",
        )
    )
    for n in nodes:
        if n.name == "trips_clean":
            n.job_run_ids = ["jr_1", "jr_2"]
            n.attempts = [
                Attempt(1, "FAILED", first.started_at, first.ended_at, "jr_1"),
                Attempt(2, "FAILED", failed.started_at, failed.ended_at, "jr_2"),
            ]
    wf = WorkflowRun(
        run_id="wr_1",
        workflow="nightly",
        status="COMPLETED",
        started_at=T0,
        ended_at=parse_time(at(70)),
        nodes=nodes,
        edges=edges,
        statistics={"TotalActions": 3, "SucceededActions": 2, "FailedActions": 1},
    )
    return Report(title="workflow run nightly", workflow=wf, job_runs=[first, failed])


def graph_nodes(page: str) -> dict[str, tuple[str, str]]:
    """node name -> (kind, state) as the SVG graph shows them."""
    return {
        a["data-node"]: (a["data-kind"], a["data-state"])
        for t, a in parse(page).tags
        if t == "g" and "data-node" in a
    }


def test_workflow_page_shows_every_node_with_its_state_and_is_self_contained() -> None:
    page = render(workflow_report())
    assert_self_contained(page)
    nodes = graph_nodes(page)
    assert nodes == {
        "start": ("trigger", "FIRED"),
        "after_crawl": ("trigger", "FIRED"),
        "after_curated": ("trigger", "NOT_FIRED"),
        "raw_trips": ("crawler", "SUCCEEDED"),
        "zones_load": ("job", "SUCCEEDED"),
        "trips_clean": ("job", "FAILED"),
        "trip_stats": ("job", "NOT_RUN"),
    }
    # the state is written as text inside each node box, not only as a colour
    svg = page[page.index('<svg xmlns="http://www.w3.org/2000/svg" class="graph"') :]
    svg = svg[: svg.index("</svg>")]
    for state in ("SUCCEEDED", "FAILED ×2", "NOT_RUN", "FIRED", "NOT FIRED"):
        assert f">{state}</text>" in svg
    assert page.count('class="edge"') == 7  # start→crawler, crawler→trigger→2 jobs, 2 jobs→trigger→stats


def test_graph_layers_follow_the_trigger_chain() -> None:
    report = workflow_report()
    keys = layers([n.key for n in report.workflow.nodes], report.workflow.edges)
    assert keys == [
        ["trigger:start"],
        ["raw_trips"],
        ["trigger:after_crawl"],
        ["zones_load", "trips_clean"],
        ["trigger:after_curated"],
        ["trip_stats"],
    ]


def test_layers_survive_a_cycle_and_unknown_edge_ends() -> None:
    out = layers(["a", "b", "c"], [Edge("a", "b"), Edge("b", "c"), Edge("c", "b"), Edge("x", "a")])
    assert out[0] == ["a"] and sorted(functools.reduce(operator.iadd, out, [])) == ["a", "b", "c"]


def test_timeline_has_a_bar_per_attempt_and_per_stage() -> None:
    page = render(workflow_report())
    gantt = page[page.index('class="gantt"') :]
    gantt = gantt[: gantt.index("</svg>")]
    assert "trips_clean (2 attempts)" in gantt
    # raw_trips, zones_load, trips_clean ×2 (trip_stats never started), then the stages of jr_1 (4) and jr_2
    # (2)
    assert gantt.count('class="bar"') == 4 + 4 + 2
    assert "trips_clean attempt 2: FAILED" in gantt


def test_job_run_sections_show_stages_metrics_quality_quarantine_bookmarks_and_errors() -> None:
    page = render(workflow_report())
    text = " ".join(parse(page).text)
    # metrics with units and thousands separators
    assert "1,200" in text and "50.8 KiB" in text and "1,187" in text
    # quality per expectation: outcome, observed value, unexpected count and percent, action
    row = page[page.index("expect_column_values_to_be_between(fare_amount)") :]
    row = row[: row.index("</tr>")]
    assert "failed" in row and "[-5.0, 2000.0]" in row and ">13<" in row and "1.08 %" in row
    assert "quarantined" in row
    assert "13</b> row(s) quarantined" in page
    # bookmarks before/after
    assert "1 file(s)" in text and "2 file(s)" in text and "/data/raw/trips/b.csv" in text
    # errors with the stage; user text is escaped, never executed
    assert "stage <b>transform</b>: Column &#x27;fare&#x27; does not exist" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_single_job_run_page_has_no_graph_but_a_stage_timeline() -> None:
    run = job_run_from_dict(job_record())
    page = render(Report(title="job run trips_clean", job_runs=[run]))
    assert_self_contained(page)
    assert 'class="graph"' not in page
    assert page.count('class="bar"') == 4
    assert "SUCCEEDED" in page and "trip_id_not_null" in page


def test_running_run_says_so_and_shows_what_is_known() -> None:
    rec = job_record(status="RUNNING", ended_at=None, duration_s=None)
    rec["stages"] = rec["stages"][:2] + [{"stage": "quality", "status": "RUNNING", "started_at": at(25)}]
    run = job_run_from_dict(rec)
    page = render(Report(title="job run trips_clean", job_runs=[run], generated_at=parse_time(at(30))))
    assert "This run is still running" in page
    assert 'fill="url(#running)"' in page  # the running stage is drawn up to now, hatched
    assert page.count('class="bar"') == 3


def test_running_workflow_banner() -> None:
    wf = workflow_run_from_dict(
        {
            "run_id": "wr_9",
            "workflow": "w",
            "state": "RUNNING",
            "started_at": at(0),
            "nodes": [{"node": "a", "kind": "job", "state": "RUNNING", "started_at": at(1)}],
        }
    )
    page = render(Report(title="workflow run w", workflow=wf, generated_at=parse_time(at(5))))
    assert "This run is still running" in page
    assert graph_nodes(page) == {"a": ("job", "RUNNING")}


def test_old_shape_record_renders() -> None:
    """A record of an earlier version: other names, flat metrics, no stages/quality/bookmarks, odd values."""
    old = {
        "id": "run-0001",
        "job_name": "legacy",
        "state": "succeeded",
        "start_time": 1764064800,
        "end_time": "2026-11-25 10:05:00",
        "rows_out": 10,
        "quality_results": "not json",
        "error": {"message": "x", "stage": "write"},
        "stages": {"extract": {"status": "SUCCEEDED", "rows_in": 3}},
    }
    run = job_run_from_dict(old)
    assert (run.run_id, run.job, run.status, run.error_stage) == ("run-0001", "legacy", "SUCCEEDED", "write")
    assert run.stages[0].name == "extract" and run.stages[0].metrics == {"rows_in": 3}
    page = render(Report(title="job run legacy", job_runs=[run]))
    assert "legacy" in page and "no quality results recorded" in page
    # nothing at all: still a page
    empty = job_run_from_dict({})
    assert "no stage records" in render(Report(title="?", job_runs=[empty]))
    assert "older version" in " ".join(empty.notes)
    wf = workflow_run_from_dict({"run_id": "wr_old", "nodes": {"a": "SUCCEEDED", "b": {"status": "failed"}}})
    page = render(Report(title="w", workflow=wf))
    assert graph_nodes(page) == {"a": ("job", "SUCCEEDED"), "b": ("job", "FAILED")}


def test_attempt_count_only_record_shows_attempts() -> None:
    n = workflow_run_from_dict({"nodes": [{"node": "j", "state": "SUCCEEDED", "attempts": 3}]}).nodes[0]
    assert [a.state for a in n.attempts] == ["FAILED", "FAILED", "SUCCEEDED"]
    page = render(Report(title="w", workflow=WorkflowRun(run_id="w", nodes=[n, Node(name="k")])))
    assert "SUCCEEDED ×3" in page


def test_stage_headline_numbers_from_the_engine_metric_shapes() -> None:
    """The job engine names its numbers per stage (extract per source, write rows_written/bytes_written,
    register
    a partition list); the table shows them in the same columns and folds the rest away."""
    run = job_run_from_dict(
        job_record(
            stages=[
                {"stage": "crawl", "seq": 1, "status": "SKIPPED", "metrics": {"reason": "not configured"}},
                {
                    "stage": "extract",
                    "seq": 2,
                    "status": "SUCCEEDED",
                    "started_at": at(1),
                    "ended_at": at(5),
                    "metrics": {
                        "sources": {
                            "trips": {
                                "format": "csv",
                                "path": "/d/trips",
                                "files": 2,
                                "bytes": 19002,
                                "rows": 300,
                            },
                            "zones": {
                                "format": "csv",
                                "path": "/d/z.csv",
                                "files": 1,
                                "bytes": 244,
                                "rows": 16,
                            },
                        },
                        "rows_out": 316,
                        "duration_s": 4.0,
                    },
                },
                {
                    "stage": "write",
                    "seq": 5,
                    "status": "SUCCEEDED",
                    "started_at": at(6),
                    "ended_at": at(9),
                    "metrics": {
                        "format": "delta",
                        "mode": "append",
                        "files_written": 2,
                        "bytes_written": 20275,
                        "partitions_touched": 2,
                        "partitions": ["d=1", "d=2"],
                        "rows_written": 294,
                        "rows_in": 294,
                    },
                },
                {
                    "stage": "register",
                    "seq": 6,
                    "status": "SUCCEEDED",
                    "started_at": at(9),
                    "ended_at": at(10),
                    "metrics": {
                        "partitions": [["2024-01-01"], ["2024-01-02"], ["2024-01-03"]],
                        "action": "created",
                    },
                },
            ]
        )
    )
    ext, write, reg = run.stages[1], run.stages[2], run.stages[3]
    assert (ext.rows_out, ext.bytes, ext.files) == (316, 19246, 3)
    assert (write.rows_in, write.rows_out, write.bytes, write.files, write.partitions) == (
        294,
        294,
        20275,
        2,
        2,
    )
    assert reg.partitions == 3
    assert set(write.other_metrics) == {"format", "mode", "partitions"}
    page = render(Report(title="job run", job_runs=[run]))
    table = page[page.index('class="stages"') :]
    table = table[: table.index("</table>")]
    assert [m for m in re.findall(r"<b>(\w+)</b>", table)] == ["crawl", "extract", "write", "register"]
    assert "reason=not configured" in table and "format=delta" in table and "18.8 KiB" in table
    assert "<summary>sources</summary>" in table  # per-source detail folded away
    # a skipped stage that never started has no bar on the timeline
    assert page.count('class="bar"') == 3


def test_quality_results_kept_only_in_the_quality_stage_metrics() -> None:
    """The quality stage records its results and counts in its own metrics (no `details`): still shown."""
    results = job_record()["details"]["quality"]["results"]
    rec = job_record(details={})
    rec["stages"].insert(
        3,
        {
            "stage": "quality",
            "seq": 4,
            "status": "SUCCEEDED",
            "started_at": at(25),
            "ended_at": at(40),
            "metrics": {
                "rows_in": 1200,
                "rows_out": 1187,
                "rows_quarantined": 13,
                "expectations": 3,
                "passed": 2,
                "results": results,
            },
        },
    )
    del rec["stages"][2]  # the earlier quality stage record of the fixture
    run = job_run_from_dict(rec)
    assert [q.name for q in run.quality][1] == "expect_column_values_to_be_between(fare_amount)"
    assert run.quarantine == {"rows": 13, "expect_column_values_to_be_between(fare_amount)": 13}
    quality_stage = next(s for s in run.stages if s.name == "quality")
    assert "results" not in quality_stage.other_metrics
    page = render(Report(title="job run", job_runs=[run]))
    assert "13</b> row(s) quarantined by the quality gate" in page and "per rule" in page


KEYS = [
    "run_id",
    "id",
    "job",
    "status",
    "state",
    "started_at",
    "ended_at",
    "start_time",
    "duration_s",
    "attempt",
    "params",
    "stages",
    "stage",
    "metrics",
    "error",
    "error_stage",
    "details",
    "quality",
    "results",
    "rule",
    "success",
    "observed_value",
    "unexpected_count",
    "unexpected_percent",
    "action",
    "bookmarks",
    "before",
    "after",
    "sources",
    "mode",
    "files",
    "watermark",
    "quarantine",
    "nodes",
    "node",
    "kind",
    "attempts",
    "job_run_ids",
    "edges",
    "statistics",
    "rows_out",
    "bytes",
    "partitions",
    "seq",
    "changes",
]


def _json_values() -> Any:
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**15), 10**15),
        st.floats(allow_nan=True),
        st.text(max_size=12),
        st.sampled_from(["2026-11-25T10:00:00Z", "FAILED", "RUNNING", "x<y"]),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)
        ),
        max_leaves=25,
    )


def test_any_record_shape_renders_without_raising() -> None:
    """Whatever an older (or newer) version stored, the report renders: the builders never raise."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(
        st.dictionaries(st.sampled_from(KEYS), _json_values(), max_size=10),
        st.dictionaries(st.sampled_from(KEYS), _json_values(), max_size=10),
    )
    def check(job: dict, wf: dict) -> None:
        page = render(
            Report(title="t", job_runs=[job_run_from_dict(job)], workflow=workflow_run_from_dict(wf))
        )
        assert page.endswith("</html>\n")
        assert "<script" not in page

    check()


def test_a_run_with_no_new_input_says_so() -> None:
    rec = job_record(stages=[], details={"no_new_input": "no new input: 0 new file(s) in source trips"})
    page = render(Report(title="job run", job_runs=[job_run_from_dict(rec)]))
    assert "no new input: 0 new file(s) in source trips" in page


def test_malformed_rows_set_aside_are_counted() -> None:
    rec = job_record()
    rec["stages"][3]["metrics"].update(
        {
            "bad_records": 3,
            "bad_records_path": "/lake/trips_bad_records",
            "quarantine_path": "/lake/trips_quarantine",
        }
    )
    run = job_run_from_dict(rec)
    assert (run.bad_records, run.bad_records_path) == (3, "/lake/trips_bad_records")
    page = render(Report(title="job run", job_runs=[run]))
    assert "<b>3</b> malformed input row(s) set aside to <code>/lake/trips_bad_records</code>" in page
    assert "quarantine table: <code>/lake/trips_quarantine</code>" in page
