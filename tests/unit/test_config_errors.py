"""Every class of config error of issue 2: reported as `file:line:col: message` at the offending line, exit 2,
all errors of a file at once, never a traceback. Driven through the real CLI in-process (fast)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from etl_framework.cli import cli
from etl_framework.cli.common import run_cli

GOOD_JOB = """\
job: demo
params: {min_distance: 0}
sources:
  trips:
    format: csv
    path: ${env.raw_root}/trips/
    schema: {trip_id: long, trip_distance: double, pickup_ts: timestamp}
  zones: {format: csv, path: ../zones.csv}
transform:
  - sql: SELECT * FROM trips WHERE trip_distance > ${params.min_distance}
  - with_columns: {pickup_date: to_date(pickup_ts)}
  - join: {with: zones, on: [zone_id]}
quality:
  - {expect: expect_column_values_to_not_be_null, column: trip_id, on_fail: fail}
target:
  path: ${env.lake_root}/demo
  partition_by: [pickup_date]
  mode: append
"""

GOOD_WORKFLOW = """\
workflow: flow
run_properties: {region: eu}
jobs:
  demo: demo.yaml
crawlers:
  raw: {path: ../data, database: raw}
triggers:
  - {name: start, type: on_demand, actions: [{crawler: raw}]}
  - name: nightly
    type: scheduled
    schedule: cron(0 2 * * ? *)
    actions: [{crawler: raw}]
  - name: after_crawl
    type: conditional
    conditions: [{crawler: raw, state: SUCCEEDED}]
    actions: [{job: demo}]
"""


def run(project: Path, *args: str) -> tuple[int, str]:
    import contextlib
    import io

    buf_err, buf_out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(buf_err), contextlib.redirect_stdout(buf_out):
        rc = run_cli(cli, ["--project-dir", str(project), *args])
    return rc, buf_err.getvalue() + buf_out.getvalue()


def write(project: Path, name: str, text: str) -> Path:
    path = project / "jobs" / name
    path.write_text(textwrap.dedent(text))
    return path


def at(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """(line, col), 1-based, of the nth occurrence of needle in text: the truth the tests compare against."""
    idx = -1
    for _ in range(nth):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


def errors(output: str) -> list[tuple[str, int, int, str]]:
    return [(m[1], int(m[2]), int(m[3]), m[4]) for m in re.finditer(r"^(\S+?):(\d+):(\d+): (.*)$", output, re.MULTILINE)]


def check_job(project: Path, text: str, needle: str, expect: str, nth: int = 1, col: bool = True) -> str:
    """Write a job file, validate it, and assert an error at the line (and column) of `needle` whose message
    matches `expect`; exit code 2; no traceback."""
    write(project, "demo.yaml", text)
    rc, out = run(project, "validate", str(project / "jobs" / "demo.yaml"))
    assert rc == 2, out
    assert "Traceback" not in out
    line, column = at(text, needle, nth)
    found = [e for e in errors(out) if e[0].endswith("demo.yaml") and re.search(expect, e[3])]
    assert found, out
    assert found[0][1] == line, out
    if col:
        assert found[0][2] == column, out
    return out


@pytest.fixture
def proj(project: Path) -> Path:
    """The example project with only our test files in jobs/."""
    for f in (project / "jobs").glob("*.yaml"):
        f.unlink()
    return project


def test_good_files_pass(proj: Path) -> None:
    write(proj, "demo.yaml", GOOD_JOB)
    write(proj, "flow.yaml", GOOD_WORKFLOW)
    rc, out = run(proj, "validate")
    assert rc == 0, out
    assert "ok  " in out and "flow.yaml" in out and "demo.yaml" in out


# ------------------------------------------------------------------------------------------- YAML level


def test_yaml_syntax_error_position(proj: Path) -> None:
    text = GOOD_JOB.replace("  - sql: SELECT", "  - sql: [SELECT")
    # inside a flow sequence '[...', the '{' of '${' is where YAML gives up
    out = check_job(proj, text, "{params.min_distance}", "YAML syntax error")
    assert out.count("demo.yaml:") == 1


def test_flow_mapping_with_comma(proj: Path) -> None:
    # valid YAML, but not what was meant: {x: "coalesce(a", "b)": null}
    text = GOOD_JOB.replace("{pickup_date: to_date(pickup_ts)}", "{x: coalesce(a, b)}")
    check_job(proj, text, "b)}", "quote")


def test_tab_indentation(proj: Path) -> None:
    text = GOOD_JOB.replace("    format: csv\n", "\tformat: csv\n", 1)
    check_job(proj, text, "\tformat", "tab character", col=False)


def test_empty_file(proj: Path) -> None:
    out = check_job(proj, "# nothing here\n\n", "# nothing", "empty")
    assert "demo.yaml:1:1:" in out


def test_top_level_not_a_mapping(proj: Path) -> None:
    check_job(proj, "- just\n- a list\n", "- just", "expected a mapping")


def test_duplicate_key(proj: Path) -> None:
    text = GOOD_JOB.replace("params: {min_distance: 0}\n", "params: {min_distance: 0}\nparams: {}\n")
    check_job(proj, text, "params: {}", "duplicate key", col=False)


# ----------------------------------------------------------------------------------------- model level


def test_unknown_key_did_you_mean(proj: Path) -> None:
    text = GOOD_JOB.replace("  partition_by: [pickup_date]", "  partition_bi: [pickup_date]")
    out = check_job(proj, text, "partition_bi", "unknown key 'partition_bi'")
    assert "did you mean 'partition_by'" in out


def test_unknown_key_in_step(proj: Path) -> None:
    text = GOOD_JOB.replace("  - with_columns:", "  - with_column:")
    out = check_job(proj, text, "with_column:", "unknown key 'with_column'")
    assert "did you mean 'with_columns'" in out


def test_wrong_type_points_at_value(proj: Path) -> None:
    text = GOOD_JOB.replace("  partition_by: [pickup_date]", "  partition_by: {a: 1}")
    check_job(proj, text, "{a: 1}", r"partition_by: expected a list")


@pytest.mark.parametrize("old,new,needle,allowed", [
    ("  mode: append", "  mode: apend", "apend", "append, overwrite, overwrite_partitions, merge"),
    ("    format: csv\n    path: ${env", "    format: cvs\n    path: ${env", "cvs", "csv, json, parquet"),
    ("on_fail: fail}", "on_fail: stop}", "stop", "fail, quarantine, warn"),
])
def test_bad_enum_lists_allowed(proj: Path, old: str, new: str, needle: str, allowed: str) -> None:
    text = GOOD_JOB.replace(old, new)
    out = check_job(proj, text, needle, "is not allowed")
    assert allowed in out


def test_bad_enum_in_workflow(proj: Path) -> None:
    write(proj, "demo.yaml", GOOD_JOB)
    text = GOOD_WORKFLOW.replace("    type: conditional\n", "    type: conditional\n    logical: all\n").replace(
        "{path: ../data, database: raw}", "{path: ../data, database: raw, schema_change: ignore}").replace(
        "state: SUCCEEDED", "state: DONE")
    write(proj, "flow.yaml", text)
    rc, out = run(proj, "validate", str(proj / "jobs" / "flow.yaml"))
    assert rc == 2
    errs = {(e[1], e[2]) for e in errors(out)}
    assert at(text, "all") in errs and at(text, "ignore") in errs and at(text, "DONE") in errs
    assert "and, any" in out and "log, update, fail" in out and "SUCCEEDED, STOPPED, FAILED, TIMEOUT, CANCELLED" in out


def test_bad_job_name(proj: Path) -> None:
    check_job(proj, GOOD_JOB.replace("job: demo", "job: Demo-Job"), "Demo-Job", "not a valid name")


def test_merge_without_merge_keys(proj: Path) -> None:
    text = GOOD_JOB.replace("  mode: append", "  mode: merge")
    check_job(proj, text, "target:", "mode 'merge' needs 'merge_keys'")


def test_missing_required_key(proj: Path) -> None:
    text = GOOD_JOB.replace("  path: ${env.lake_root}/demo\n", "")
    check_job(proj, text, "target:", "missing required key 'path'")


# -------------------------------------------------------------------------------------------- references


def test_unknown_env_var(proj: Path) -> None:
    text = GOOD_JOB.replace("${env.raw_root}", "${env.raw_rot}")
    out = check_job(proj, text, "${env.raw_rot}", "unknown env var")
    assert "did you mean 'raw_root'" in out


def test_unknown_param(proj: Path) -> None:
    text = GOOD_JOB.replace("> ${params.min_distance}", "> ${params.max_distance}")
    check_job(proj, text, "${params.max_distance}", "unknown param")


def test_unknown_run_property(proj: Path) -> None:
    text = GOOD_JOB.replace("> ${params.min_distance}", "> 0 AND region = '${run.regio}'")
    out = check_job(proj, text, "${run.regio}", "unknown run property")
    assert "id" in out and "date" in out


def test_run_property_of_a_workflow_using_the_job_is_valid(proj: Path) -> None:
    text = GOOD_JOB.replace("> ${params.min_distance}", "> 0 AND region = '${run.region}' AND d = '${run.date}'")
    write(proj, "demo.yaml", text)
    rc, out = run(proj, "validate", str(proj / "jobs" / "demo.yaml"))
    assert rc == 2 and "${run.region}" in out  # no workflow uses it yet
    write(proj, "flow.yaml", GOOD_WORKFLOW)  # run_properties: {region: eu}
    rc, out = run(proj, "validate")
    assert rc == 0, out


def test_unknown_reference_scope(proj: Path) -> None:
    text = GOOD_JOB.replace("${env.lake_root}/demo", "${enviro.lake_root}/demo")
    check_job(proj, text, "${enviro.lake_root}", "unknown reference")


# --------------------------------------------------------------------------------------------------- SQL


def test_sql_does_not_parse_multiline_position(proj: Path) -> None:
    text = GOOD_JOB.replace(
        "  - sql: SELECT * FROM trips WHERE trip_distance > ${params.min_distance}\n",
        "  - sql: |\n      SELECT *\n      FROM trips\n      WHERE trip_distance > ${params.min_distance} AND (\n",
    )
    out = check_job(proj, text, "(\n", "SQL does not parse")
    assert "transform[0].sql" in out


def test_sql_error_column_after_interpolation(proj: Path) -> None:
    # the parameter's value is shorter than its reference: the column still points into the YAML text
    text = GOOD_JOB.replace("> ${params.min_distance}", "> ${params.min_distance} AND AND x")
    check_job(proj, text, "AND x", "SQL does not parse")


def test_sql_not_a_query(proj: Path) -> None:
    text = GOOD_JOB.replace("SELECT * FROM trips WHERE trip_distance > ${params.min_distance}", "DROP TABLE trips")
    check_job(proj, text, "DROP TABLE", "must be a query")


def test_sql_reads_unknown_view(proj: Path) -> None:
    text = GOOD_JOB.replace("SELECT * FROM trips WHERE", "SELECT * FROM trip WHERE")
    out = check_job(proj, text, "trip WHERE", "reads 'trip'")
    assert "did you mean 'trips'" in out


def test_sql_views_ctes_previous_and_catalog_tables_are_fine(proj: Path) -> None:
    text = GOOD_JOB.replace(
        "  - sql: SELECT * FROM trips WHERE trip_distance > ${params.min_distance}\n",
        "  - sql: WITH t AS (SELECT * FROM trips) SELECT * FROM t JOIN raw.zones z ON t.a = z.a\n"
        "  - sql: SELECT * FROM previous\n",
    )
    write(proj, "demo.yaml", text)
    rc, out = run(proj, "validate", str(proj / "jobs" / "demo.yaml"))
    assert rc == 0, out


@pytest.mark.parametrize("old,new,needle", [
    ("{pickup_date: to_date(pickup_ts)}", "{pickup_date: 'to_date(pickup_ts'}", "pickup_ts'"),
    ("on: [zone_id]", "on: a = = b", "= b"),
])
def test_sql_expression_does_not_parse(proj: Path, old: str, new: str, needle: str) -> None:
    check_job(proj, GOOD_JOB.replace(old, new), needle, "does not parse", col=False)


def test_step_references_unknown_source(proj: Path) -> None:
    text = GOOD_JOB.replace("with: zones", "with: zone")
    out = check_job(proj, text, "zone,", "not a source")
    assert "did you mean 'zones'" in out


# -------------------------------------------------------------------------------------------------- GX


def test_unknown_expectation_type(proj: Path) -> None:
    text = GOOD_JOB.replace("expect_column_values_to_not_be_null", "expect_column_values_to_not_be_nul")
    out = check_job(proj, text, "expect_column_values_to_not_be_nul", "unknown expectation type")
    assert "did you mean 'expect_column_values_to_not_be_null'" in out


def test_unknown_expectation_kwarg(proj: Path) -> None:
    text = GOOD_JOB.replace("column: trip_id, on_fail", "column: trip_id, mostlyy: 0.9, on_fail")
    out = check_job(proj, text, "mostlyy", "no keyword argument 'mostlyy'")
    assert "did you mean 'mostly'" in out


def test_quarantine_on_table_level_expectation(proj: Path) -> None:
    text = GOOD_JOB.replace(
        "  - {expect: expect_column_values_to_not_be_null, column: trip_id, on_fail: fail}\n",
        "  - {expect: expect_column_values_to_not_be_null, column: trip_id, on_fail: quarantine}\n"
        "  - {expect: expect_table_row_count_to_be_between, min_value: 1, on_fail: quarantine}\n",
    )
    out = check_job(proj, text, "quarantine}", "needs a row-level expectation", nth=2)
    assert len([e for e in errors(out) if "row-level" in e[3]]) == 1


# ------------------------------------------------------------------------------------------- all at once


def test_all_errors_of_a_file_at_once(proj: Path) -> None:
    text = (GOOD_JOB.replace("job: demo", "job: Demo")
            .replace("${env.raw_root}", "${env.nope}")
            .replace("  mode: append", "  mode: apend")
            .replace("FROM trips", "FROM tripz")
            .replace("expect_column_values_to_not_be_null", "expect_nothing"))
    write(proj, "demo.yaml", text)
    rc, out = run(proj, "validate", str(proj / "jobs" / "demo.yaml"))
    assert rc == 2
    lines = {e[1] for e in errors(out)}
    assert lines == {at(text, n)[0] for n in ("Demo", "${env.nope}", "apend", "tripz", "expect_nothing")}, out
    assert "5 config errors" in out


# ---------------------------------------------------------------------------------------------- workflows


def check_wf(project: Path, text: str, needle: str, expect: str, nth: int = 1) -> str:
    write(project, "demo.yaml", GOOD_JOB)
    write(project, "flow.yaml", text)
    rc, out = run(project, "validate", str(project / "jobs" / "flow.yaml"))
    assert rc == 2, out
    assert "Traceback" not in out
    line, _ = at(text, needle, nth)
    found = [e for e in errors(out) if e[0].endswith("flow.yaml") and re.search(expect, e[3])]
    assert found, out
    assert found[0][1] == line, out
    return out


@pytest.mark.parametrize("schedule,why", [
    ("cron(0 2 * * * *)", "exactly one of day-of-month and day-of-week"),
    ("cron(0 2 * *)", "six fields"),
    ("cron(61 2 * * ? *)", "minutes: 61 is out of range"),
    ("cron(0 2 ? * MON#7 *)", "#1 to #5"),
    ("0 2 * * ?", r"cron\(Minutes"),
])
def test_invalid_cron(proj: Path, schedule: str, why: str) -> None:
    text = GOOD_WORKFLOW.replace("cron(0 2 * * ? *)", schedule)
    check_wf(proj, text, schedule, why)


def test_workflow_cycle(proj: Path) -> None:
    text = GOOD_WORKFLOW + (
        "  - name: again\n"
        "    type: conditional\n"
        "    conditions: [{job: demo, state: FAILED}]\n"
        "    actions: [{crawler: raw}]\n"
    )
    out = check_wf(proj, text, "again", "workflow cycle")
    assert "raw -> demo -> raw" in out or "demo -> raw -> demo" in out


def test_action_names_unknown_job(proj: Path) -> None:
    text = GOOD_WORKFLOW.replace("actions: [{job: demo}]", "actions: [{job: demo2}]")
    out = check_wf(proj, text, "demo2", "unknown job 'demo2'")
    assert "did you mean 'demo'" in out


def test_condition_names_unknown_crawler(proj: Path) -> None:
    text = GOOD_WORKFLOW.replace("[{crawler: raw, state", "[{crawler: rawr, state")
    check_wf(proj, text, "rawr", "unknown crawler 'rawr'")


def test_condition_state_glue_cannot_watch(proj: Path) -> None:
    text = GOOD_WORKFLOW.replace("{crawler: raw, state: SUCCEEDED}", "{crawler: raw, state: TIMEOUT}")
    out = check_wf(proj, text, "TIMEOUT", "cannot watch state TIMEOUT")
    assert "SUCCEEDED, FAILED, CANCELLED" in out


def test_job_condition_state_cancelled(proj: Path) -> None:
    text = GOOD_WORKFLOW + (
        "  - name: after_demo\n"
        "    type: conditional\n"
        "    conditions: [{job: demo, state: CANCELLED}]\n"
        "    actions: [{crawler: raw}]\n"
    )
    out = check_wf(proj, text, "CANCELLED", "cannot watch state CANCELLED")
    assert "SUCCEEDED, STOPPED, FAILED, TIMEOUT" in out


def test_condition_that_can_never_be_met(proj: Path) -> None:
    text = GOOD_WORKFLOW.replace("  demo: demo.yaml\n", "  demo: demo.yaml\n  other: other.yaml\n") + (
        "  - name: after_other\n"
        "    type: conditional\n"
        "    conditions: [{job: other, state: SUCCEEDED}]\n"
        "    actions: [{job: demo}]\n"
    )
    write(proj, "other.yaml", GOOD_JOB.replace("job: demo", "job: other"))
    check_wf(proj, text, "{job: other, state: SUCCEEDED}", "can never be met")


def test_duplicate_trigger_names(proj: Path) -> None:
    text = GOOD_WORKFLOW.replace("  - name: nightly", "  - name: start")
    check_wf(proj, text, "name: start", "duplicate trigger name 'start'", nth=2)


def test_job_and_crawler_with_the_same_name(proj: Path) -> None:
    text = GOOD_WORKFLOW.replace("crawlers:\n  raw:", "crawlers:\n  demo: {path: ../x, database: raw}\n  raw:")
    check_wf(proj, text, "demo: {path", "both a job and a crawler")


def test_job_file_does_not_exist(proj: Path) -> None:
    text = GOOD_WORKFLOW.replace("demo: demo.yaml", "demo: dmeo.yaml")
    check_wf(proj, text, "dmeo.yaml", "does not exist")


def test_action_argument_not_a_param(proj: Path) -> None:
    text = GOOD_WORKFLOW.replace("actions: [{job: demo}]", "actions: [{job: demo, arguments: {min_dist: 1}}]")
    out = check_wf(proj, text, "min_dist", "has no param 'min_dist'")
    assert "did you mean 'min_distance'" in out


def test_errors_in_a_workflows_job_file_point_into_the_job_file(proj: Path) -> None:
    write(proj, "demo.yaml", GOOD_JOB.replace("  mode: append", "  mode: apend"))
    write(proj, "flow.yaml", GOOD_WORKFLOW)
    rc, out = run(proj, "validate", str(proj / "jobs" / "flow.yaml"))
    assert rc == 2
    line, col = at(GOOD_JOB, "append")
    assert any(e[0].endswith("demo.yaml") and (e[1], e[2]) == (line, col) for e in errors(out)), out


def test_all_errors_of_a_workflow_file_at_once(proj: Path) -> None:
    text = (GOOD_WORKFLOW.replace("workflow: flow", "workflow: Flow")
            .replace("cron(0 2 * * ? *)", "cron(0 2 * * * *)")
            .replace("actions: [{job: demo}]", "actions: [{job: demo2}]"))
    write(proj, "demo.yaml", GOOD_JOB)
    write(proj, "flow.yaml", text)
    rc, out = run(proj, "validate", str(proj / "jobs" / "flow.yaml"))
    assert rc == 2
    assert {e[1] for e in errors(out)} == {at(text, n)[0] for n in ("Flow", "cron(0 2", "demo2")}, out


def test_misspelled_on_fail_in_expectation(proj: Path) -> None:
    text = GOOD_JOB.replace("on_fail: fail}", "on_fial: warn}")
    out = check_job(proj, text, "on_fial", "no keyword argument 'on_fial'")
    assert "did you mean 'on_fail'" in out


def test_tab_inside_a_block_scalar_is_fine(proj: Path) -> None:
    text = GOOD_JOB.replace(
        "  - sql: SELECT * FROM trips WHERE trip_distance > ${params.min_distance}\n",
        "  - sql: |\n      SELECT *\n      \tFROM trips\n",
    )
    write(proj, "demo.yaml", text)
    rc, out = run(proj, "validate", str(proj / "jobs" / "demo.yaml"))
    assert rc == 0, out


def test_missing_top_level_key_points_at_the_first_key(proj: Path) -> None:
    text = "# a comment\n\n" + GOOD_JOB[: GOOD_JOB.index("target:")]
    check_job(proj, text, "job: demo", "missing required key 'target'")


def test_number_out_of_range(proj: Path) -> None:
    text = GOOD_JOB + "retries: {max_attempts: 11}\n"
    check_job(proj, text, "11}", "max_attempts: 11 is out of range: must be at most 10")
