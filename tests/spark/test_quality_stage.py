"""The quality gate inside real job runs (engine, Delta target, SQLite run store): what lands in the target and in
the quarantine table (read back with delta-rs, an independent reader), what a failed gate leaves behind (nothing),
and the quarantine commit happening exactly once around a crash between the target and quarantine commits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from etl_framework.config.model import JobConfig
from etl_framework.engine.job import run_loaded
from etl_framework.state.runs import SqliteRunStore

HEADER = "trip_id,fare,vendor,zone"
GOOD = ["1,10.0,a,Z1", "5,8.0,b,ZZ", "6,9.0,b,Z1"]
BAD = ["2,-5.0,a,Z1", "3,12.0,,Z2", "4,2000.0,,Z2"]
BROKE = {2: ["fare_range"], 3: ["vendor_present"], 4: ["fare_range", "vendor_present"]}
RULES = [
    {"expect": "expect_column_values_to_not_be_null", "column": "trip_id", "on_fail": "fail"},
    {"expect": "expect_column_values_to_be_between", "column": "fare", "min_value": 0, "max_value": 1000,
     "on_fail": "quarantine", "name": "fare_range"},
    {"expect": "expect_column_values_to_not_be_null", "column": "vendor", "on_fail": "quarantine",
     "name": "vendor_present"},
    {"expect": "expect_column_values_to_be_in_set", "column": "zone", "value_set": ["Z1", "Z2"], "on_fail": "warn",
     "name": "zone_known"},
]


def write_csv(folder: Path, rows: list[str], name: str = "part-0.csv") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(HEADER + "\n" + "".join(r + "\n" for r in rows))


def job(src: Path, out: Path, rules: list[dict[str, Any]] | None = None, name: str = "trips_q") -> JobConfig:
    return JobConfig.model_validate({
        "job": name,
        "sources": {"trips": {"format": "csv", "path": str(src), "options": {"header": True},
                              "schema": {"trip_id": "long", "fare": "double", "vendor": "string", "zone": "string"}}},
        "transform": [{"filter": "trip_id IS NOT NULL OR fare IS NOT NULL"}],
        "quality": RULES if rules is None else rules,
        "target": {"format": "delta", "path": str(out)},
    })


def run(spark: Any, cfg: JobConfig, tmp: Path, **kw: Any) -> Any:
    store = SqliteRunStore(tmp / "state.db")
    try:
        return run_loaded(cfg, spark=spark, store=store, quiet=True, **kw)
    finally:
        store.close()


def stored_run(tmp: Path, run_id: str) -> dict[str, Any]:
    store = SqliteRunStore(tmp / "state.db")
    try:
        record = store.get_run(run_id)
        assert record is not None
        return record
    finally:
        store.close()


def delta_rows(path: Path) -> list[dict[str, Any]]:
    """The table as delta-rs sees it (independent of Spark)."""
    import pyarrow.fs as pafs
    from deltalake import DeltaTable

    table = DeltaTable(str(path)).to_pyarrow_table(
        filesystem=pafs.SubTreeFileSystem(str(path), pafs.LocalFileSystem()))
    return sorted(table.to_pylist(), key=lambda r: r["trip_id"])


def delta_version(path: Path) -> int:
    from deltalake import DeltaTable

    return DeltaTable(str(path)).version()


def quality_stage(record: dict[str, Any]) -> dict[str, Any]:
    """The quality stage's metrics, with the per-rule results stored beside them in the run's details."""
    stages = [s for s in record["stages"] if s["stage"] == "quality"]
    assert stages, record["stages"]
    metrics = stages[-1]["metrics"]
    metrics = dict(json.loads(metrics) if isinstance(metrics, str) else metrics)
    metrics["results"] = record["details"]["quality"]["results"]
    return metrics


def test_bad_rows_quarantined_with_their_rules_rest_written(spark: Any, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_csv(src, GOOD[:1] + BAD[:2] + GOOD[1:] + BAD[2:])
    res = run(spark, job(src, out), tmp_path)
    assert res.ok, res.error
    assert [r["trip_id"] for r in delta_rows(out)] == [1, 5, 6]
    q = delta_rows(Path(str(out) + "_quarantine"))
    assert {r["trip_id"]: sorted(r["_failed_rules"]) for r in q} == BROKE
    assert {r["_run_id"] for r in q} == {res.run_id}
    assert all(r["_quarantined_at"] is not None for r in q)
    assert [r["fare"] for r in q] == [-5.0, 12.0, 2000.0] and [r["vendor"] for r in q] == ["a", None, None]
    assert not (Path(str(out) + "_quarantine") / "_etl_staging" / res.run_id).exists()  # staged rows cleaned up

    m = quality_stage(stored_run(tmp_path, res.run_id))
    assert m["rows_in"] == 6 and m["rows_quarantined"] == 3 and m["rows_out"] == 3
    by_rule = {r["rule"]: r for r in m["results"]}
    assert by_rule["fare_range"]["action"] == "quarantined 2 rows"
    assert by_rule["vendor_present"]["unexpected_count"] == 2
    assert by_rule["zone_known"]["action"] == "warned" and by_rule["zone_known"]["observed_value"] == ["ZZ"]
    assert by_rule["expect_column_values_to_not_be_null(trip_id)"]["action"] == "passed"

    # the stored results are Great Expectations' own results for the same data
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    data = spark.read.option("header", True).schema("trip_id long, fare double, vendor string, zone string").csv(
        str(src))
    batch = (ctx.data_sources.add_spark(name="own").add_dataframe_asset(name="d")
             .add_batch_definition_whole_dataframe("b").get_batch(batch_parameters={"dataframe": data}))
    for rule in job(src, out).quality:
        own = batch.validate(ExpectationConfiguration(type=rule.expect, kwargs=rule.kwargs).to_domain_obj(),
                             result_format="BASIC")
        assert by_rule[rule.rule_name]["success"] == own.success
        assert by_rule[rule.rule_name]["gx_result"] == json.loads(json.dumps(own.result, default=str))


def test_fail_and_quarantine_both_trigger_nothing_written(spark: Any, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_csv(src, GOOD + BAD + [",3.0,a,Z1"])  # a null trip_id breaks the fail rule
    res = run(spark, job(src, out), tmp_path)
    assert res.status == "FAILED" and res.exit_code == 3 and res.error_stage == "quality"
    assert "expect_column_values_to_not_be_null(trip_id) [expect_column_values_to_not_be_null]: 1 of 7 rows " \
        "unexpected" in res.error
    assert "nothing was written" in res.error
    assert not out.exists()
    assert not Path(str(out) + "_quarantine").exists()  # not even the staged quarantine rows
    record = stored_run(tmp_path, res.run_id)
    assert record["exit_code"] == 3
    m = quality_stage(record)
    assert m["failed"] == ["expect_column_values_to_not_be_null(trip_id)"]
    assert {r["rule"]: r["action"] for r in m["results"]}["fare_range"] == \
        "not quarantined: the gate failed (2 rows broke it)"
    assert m["rows_out"] == 0


def test_fail_rule_leaves_target_and_quarantine_untouched(spark: Any, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    qpath = Path(str(out) + "_quarantine")
    write_csv(src, GOOD + BAD)
    assert run(spark, job(src, out), tmp_path).ok
    before = (delta_version(out), delta_rows(out), delta_version(qpath), delta_rows(qpath))
    write_csv(src, ["7,1.0,a,Z1", "8,-1.0,,Z1", ",1.0,a,Z1"], name="part-1.csv")
    res = run(spark, job(src, out), tmp_path)
    assert res.exit_code == 3
    assert (delta_version(out), delta_rows(out), delta_version(qpath), delta_rows(qpath)) == before
    assert [p.name for p in (qpath / "_etl_staging").glob("*")] == [] if (qpath / "_etl_staging").exists() else True


def test_every_row_quarantined_commits_an_empty_write(spark: Any, tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_csv(src, BAD)
    res = run(spark, job(src, out), tmp_path)
    assert res.ok, res.error
    assert delta_version(out) == 0 and delta_rows(out) == []  # the zero-row write committed
    assert len(delta_rows(Path(str(out) + "_quarantine"))) == 3
    m = quality_stage(stored_run(tmp_path, res.run_id))
    assert m["rows_out"] == 0 and "every row was quarantined: the target write commits 0 rows" in m["reason"]


def test_quarantine_commits_exactly_once_around_a_crash(spark: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stops right after its target commit: its staged quarantine rows are committed by the next run of
    the job; committing again (a retry, a second recovery) adds nothing."""
    from etl_framework.stages import quality

    src, out = tmp_path / "in", tmp_path / "out"
    qpath = Path(str(out) + "_quarantine")
    write_csv(src, GOOD + BAD)

    def crash(state: Any) -> None:
        raise RuntimeError("killed between the target and the quarantine commit")

    monkeypatch.setattr(quality, "write_quarantine", crash)
    first = run(spark, job(src, out), tmp_path)
    monkeypatch.undo()
    assert first.status == "FAILED" and first.error_stage == "write"
    assert [r["trip_id"] for r in delta_rows(out)] == [1, 5, 6]  # the target committed
    assert not qpath.joinpath("_delta_log").exists()  # the quarantine did not
    assert (qpath / "_etl_staging" / first.run_id).is_dir()  # but its rows are staged

    write_csv(src, ["7,1.0,a,Z1", "8,-1.0,a,Z1"], name="part-1.csv")
    second = run(spark, job(src, out), tmp_path)
    assert second.ok, second.error
    q = delta_rows(qpath)
    assert sorted((r["_run_id"] == first.run_id, r["trip_id"]) for r in q) == [
        (False, 2), (False, 3), (False, 4), (False, 8), (True, 2), (True, 3), (True, 4)]
    assert not (qpath / "_etl_staging").exists() or not any((qpath / "_etl_staging").iterdir())

    # the same run's quarantine committed again (a retry after the commit): Delta's txn id makes it a no-op
    from etl_framework.tables import CommitRequest, Storage, table_format

    staged = spark.createDataFrame([r for r in q if r["_run_id"] == first.run_id])
    version = delta_version(qpath)
    table_format("delta").write(spark, staged, str(qpath), mode="append", partition_by=[], merge_keys=None,
                                options={}, job="trips_q", storage=Storage(), commit=CommitRequest(
                                    first.run_id, txn=(quality.quarantine_app_id("trips_q", first.run_id), 0)))
    assert delta_version(qpath) == version and len(delta_rows(qpath)) == 7


def test_resume_after_target_commit_completes_the_quarantine_once(spark: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`etl resume` of a run that stopped between its target commit and its quarantine commit: the target is not
    written again, the staged quarantine rows are committed, once."""
    import yaml

    from etl_framework.cli import cli
    from etl_framework.cli.common import run_cli
    from etl_framework.stages import quality

    root = tmp_path / "p"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    write_csv(root / "in", GOOD + BAD)
    spec = job(root / "in", root / "out").model_dump(mode="json", by_alias=True, exclude_defaults=True)
    spec["sources"]["trips"]["path"], spec["target"]["path"] = "../in", "../out"
    job_file = root / "jobs" / "trips_q.yaml"
    job_file.write_text(yaml.safe_dump(spec, sort_keys=False))

    def crash(state: Any) -> None:
        raise RuntimeError("killed between the target and the quarantine commit")

    monkeypatch.setattr(quality, "write_quarantine", crash)
    assert run_cli(cli, ["--project-dir", str(root), "run", "--no-report", str(job_file)]) == 1
    monkeypatch.undo()
    store = SqliteRunStore(root / ".etl" / "state.db")
    run_id = store.list_runs(limit=1)[0]["run_id"]
    store.close()
    qpath = root / "out_quarantine"
    assert (qpath / "_etl_staging" / run_id).is_dir() and not (qpath / "_delta_log").exists()
    target_version = delta_version(root / "out")

    # `etl show RUN_ID` of the stopped run prints the gate's results as a table; `--json` carries them
    capsys.readouterr()
    assert run_cli(cli, ["--project-dir", str(root), "show", run_id]) == 0
    text = capsys.readouterr().out
    assert "quality gate: 1/4 expectations passed on 6 rows; 3 rows quarantined, 3 to write" in text
    for rule, action in (("fare_range", "quarantined 2 rows"), ("vendor_present", "quarantined 2 rows"),
                         ("zone_known", "warned"), ("expect_column_values_to_not_be_null(trip_id)", "passed")):
        assert any(rule in line and action in line for line in text.splitlines()), (rule, text)
    assert run_cli(cli, ["--project-dir", str(root), "show", run_id, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    results = {r["rule"]: r for r in record["details"]["quality"]["results"]}
    assert results["fare_range"]["unexpected_count"] == 2
    assert results["fare_range"]["unexpected_percent"] == pytest.approx(100 / 3)
    assert results["zone_known"]["observed_value"] == ["ZZ"] and results["zone_known"]["success"] is False

    assert run_cli(cli, ["--project-dir", str(root), "resume", run_id]) == 0
    assert delta_version(root / "out") == target_version  # the target is not written twice
    assert [r["trip_id"] for r in delta_rows(root / "out")] == [1, 5, 6]
    q = delta_rows(qpath)
    assert {r["trip_id"]: sorted(r["_failed_rules"]) for r in q} == BROKE and {r["_run_id"] for r in q} == {run_id}
    assert not (qpath / "_etl_staging" / run_id).exists()

