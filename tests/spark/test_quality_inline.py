"""The quality gate inside the target write's own pass (`quality.inline`): the same table, quarantine and GX
results as counting first, a `fail` rule stopping the write before any commit, the staged rows coming back
exactly, and the cases that must count first instead."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from etl_framework.config.model import JobConfig
from etl_framework.quality.inline import MODE_ENV
from tests.spark.test_quality_stage import (
    BAD,
    BROKE,
    GOOD,
    RULES,
    delta_rows,
    delta_version,
    job,
    quality_stage,
    run,
    stored_run,
    write_csv,
)


def quality_metrics(tmp: Path, run_id: str) -> dict[str, Any]:
    return quality_stage(stored_run(tmp, run_id))


def as_stored(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return json.loads(json.dumps(results))


def test_inline_gate_equals_counting_first(spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same input, both modes: the same target rows, the same quarantined rows with the same rule names, the same
    per-rule results (GX's own); the inline run made no pass of its own before the write."""
    src = tmp_path / "in"
    write_csv(src, GOOD[:1] + BAD[:2], name="part-0.csv")  # three files: three tasks each stage their own rows
    write_csv(src, GOOD[1:2] + BAD[2:], name="part-1.csv")
    write_csv(src, GOOD[2:], name="part-2.csv")
    inline = run(spark, job(src, tmp_path / "a"), tmp_path)
    monkeypatch.setenv(MODE_ENV, "count-first")
    counted = run(spark, job(src, tmp_path / "b"), tmp_path)
    assert inline.ok and counted.ok, (inline.error, counted.error)

    mi, mc = quality_metrics(tmp_path, inline.run_id), quality_metrics(tmp_path, counted.run_id)
    assert mi["mode"] == "inline" and "count_pass_s" not in mi
    assert mc["mode"] == "count-first" and mc["inline_blocked_by"] == f"{MODE_ENV}=count-first"
    assert as_stored(mi["results"]) == as_stored(mc["results"])
    for key in ("rows_in", "rows_out", "rows_quarantined", "passed", "failed", "warned", "reason"):
        assert mi[key] == mc[key], key
    assert mi["rows_in"] == 6 and mi["rows_quarantined"] == 3
    # the inline write counts its rows with the gate's own counter, not an Observation of its own
    assert inline.metrics["write"]["rows_written"] == counted.metrics["write"]["rows_written"] == 3

    assert delta_rows(tmp_path / "a") == delta_rows(tmp_path / "b")
    assert [r["trip_id"] for r in delta_rows(tmp_path / "a")] == [1, 5, 6]
    qa, qb = delta_rows(tmp_path / "a_quarantine"), delta_rows(tmp_path / "b_quarantine")
    assert {r["trip_id"]: sorted(r["_failed_rules"]) for r in qa} == BROKE
    assert [{k: v for k, v in r.items() if k not in ("_run_id", "_quarantined_at")} for r in qa] == \
        [{k: v for k, v in r.items() if k not in ("_run_id", "_quarantined_at")} for r in qb]
    assert {r["_run_id"] for r in qa} == {inline.run_id}
    assert not (tmp_path / "a_quarantine" / "_etl_staging").exists() or \
        not any((tmp_path / "a_quarantine" / "_etl_staging").iterdir())


def test_fail_rule_stops_the_inline_write_before_any_commit(spark: Any, tmp_path: Path) -> None:
    """A row breaking a fail rule stops the write: exit 3 from the quality gate, every failed rule counted, no
    target (not even the files of a first Delta write) and no quarantine; the next good run is not blocked."""
    src, out = tmp_path / "in", tmp_path / "out"
    rules = [*RULES, {"expect": "expect_column_values_to_be_between", "column": "fare", "max_value": 2500,
                      "on_fail": "fail", "name": "fare_max"}]
    write_csv(src, GOOD + BAD + [",3.0,a,Z1", "9,3000.0,b,Z1"])
    res = run(spark, job(src, out, rules), tmp_path)
    assert res.exit_code == 3 and res.error_stage == "quality", res.error
    assert "expect_column_values_to_not_be_null(trip_id) [expect_column_values_to_not_be_null]: 1 of 8 rows" \
        in res.error
    assert "fare_max [expect_column_values_to_be_between]: 1 of 8 rows unexpected" in res.error
    assert not out.exists() and not Path(str(out) + "_quarantine").exists()
    m = quality_metrics(tmp_path, res.run_id)
    assert m["mode"] == "inline" and m["stopped_write"] is True
    assert m["failed"] == ["expect_column_values_to_not_be_null(trip_id)", "fare_max"]

    write_csv(src, GOOD + BAD)  # fixed at the source: the same target accepts the next run
    again = run(spark, job(src, out, rules), tmp_path)
    assert again.ok, again.error
    assert [r["trip_id"] for r in delta_rows(out)] == [1, 5, 6] and delta_version(out) == 0


def test_staged_rows_come_back_exactly(spark: Any, tmp_path: Path) -> None:
    """The side output stages rows with Spark's Parquet writer: every type comes back to the quarantine table
    unchanged (microsecond timestamps, decimals, NaN, nested values, unicode and newlines in strings)."""
    rows = [
        (1, datetime(2024, 1, 2, 3, 4, 5, 123456), Decimal("12.345"), float("nan"), ["x", None], {"k": 1},
         "line1\nline2 ü \"q\"", -1.0),
        (2, None, None, None, None, None, None, -2.0),
        (3, datetime(2024, 1, 2), Decimal("0.001"), 1.5, [], {}, "", 5.0),
    ]
    schema = ("id long, ts timestamp, amount decimal(10,3), ratio double, tags array<string>, "
              "attrs map<string,int>, note string, fare double")
    src = tmp_path / "src"
    spark.createDataFrame(rows, schema).coalesce(1).write.parquet(str(src))
    cfg = JobConfig.model_validate({
        "job": "types_q",
        "sources": {"t": {"format": "parquet", "path": str(src)}},
        "quality": [{"expect": "expect_column_values_to_be_between", "column": "fare", "min_value": 0,
                     "on_fail": "quarantine", "name": "fare_ok"}],
        "target": {"format": "delta", "path": str(tmp_path / "out")},
    })
    res = run(spark, cfg, tmp_path)
    assert res.ok, res.error
    assert quality_metrics(tmp_path, res.run_id)["mode"] == "inline"
    q = spark.read.format("delta").load(str(tmp_path / "out_quarantine"))
    assert q.columns == [*schema_names(schema), "_failed_rules", "_run_id", "_quarantined_at"]
    got = sorted((tuple(r)[:8] for r in q.collect()), key=lambda r: r[0])
    for a, b in zip(got, rows[:2], strict=True):
        assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and a[4:] == b[4:]
        assert (a[3] != a[3]) if b[3] is not None else a[3] is None  # NaN stays NaN
    assert [r["_failed_rules"] for r in q.orderBy("id").collect()] == [["fare_ok"], ["fare_ok"]]
    assert [r["id"] for r in spark.read.format("delta").load(str(tmp_path / "out")).collect()] == [3]


def test_samples_of_locally_staged_rows_are_read_by_pyarrow_as_spark_reads_them(spark: Any, tmp_path: Path) -> None:
    """A quarantine rule's unexpected values come from the staged files through pyarrow when they are on this
    machine's disk (a Spark job is ~0.3 s of a small run), equal to Spark's filter + limit on the same files;
    a column whose Python value could differ (a timestamp) or a remote folder goes to Spark."""
    from datetime import date

    from pyspark.sql import functions as F

    from etl_framework.quality.gate import _unexpected_values, sample_columns, shape_sample
    from etl_framework.quality.staging import local_sample, read_staged

    schema = ("id long, fare double, day date, ts timestamp, zone string, even boolean, small float, "
              "_failed_rules array<string>")
    rows = [(i, i - 5.5, date(2024, 1, 1 + i % 3), datetime(2024, 1, 1, i), None if i == 4 else f"z{i}",
             i % 2 == 0, i / 3, ["r1"] if i % 3 else ["r1", "r2"]) for i in range(12)]
    folder = tmp_path / "staged"
    spark.createDataFrame(rows[:7], schema).coalesce(1).write.parquet(str(folder))
    spark.createDataFrame(rows[7:], schema).coalesce(1).write.mode("append").parquet(str(folder))
    staged_df = read_staged(spark, str(folder))
    staged_schema = staged_df.schema
    for accessor in ({"column": "fare"}, {"column": "small"}, {"column_A": "id", "column_B": "zone"},
                     {"column_list": ["id", "day", "even", "zone"]}):
        cols = sample_columns(accessor)
        for rule, limit in (("r1", 100), ("r2", 100), ("r1", 3)):
            local = local_sample(str(folder), staged_schema, rule, cols, limit)
            assert local is not None, accessor
            by_spark = _unexpected_values(staged_df.filter(F.array_contains("_failed_rules", rule)), accessor, 100)
            mine = shape_sample(accessor, local)
            assert len(mine) == min(limit, len(by_spark))
            key = repr
            assert sorted(map(key, mine)) == sorted(map(key, by_spark)) if limit == 100 else \
                set(map(key, mine)) <= set(map(key, by_spark))
    assert sorted(shape_sample({"column": "id"}, local_sample(str(folder), staged_schema, "r2", ["id"], 10) or [])) \
        == [0, 3, 6, 9]
    assert local_sample(str(folder), staged_schema, "r1", ["ts"], 10) is None  # Spark: a naive local datetime
    assert local_sample(f"s3a://bucket{folder}", staged_schema, "r1", ["id"], 10) is None
    via_uri = local_sample(f"file://{folder}", staged_schema, "r1", ["id"], 2)
    assert via_uri is not None and len(via_uri) == 2


def schema_names(ddl: str) -> list[str]:
    return [part.strip().split(" ")[0] for part in ddl.split(", ")]


@pytest.mark.parametrize(("extra", "blocked"), [
    ({"expect": "expect_column_values_to_not_be_null", "column": "zone", "mostly": 0.5, "on_fail": "fail"},
     "fails on a share of rows (mostly 0.5)"),
    ({"expect": "expect_table_row_count_to_be_between", "min_value": 1, "on_fail": "fail"},
     "is table-level with on_fail: fail: its count decides the commit"),
    ({"expect": "expect_column_mean_to_be_between", "column": "fare", "min_value": 0, "on_fail": "warn"},
     "is validated by GX itself"),
    ({"expect": "expect_column_values_to_be_unique", "column": "trip_id", "on_fail": "warn"},
     "needs a window over the whole data"),
])
def test_rules_that_need_counts_first(spark: Any, tmp_path: Path, extra: dict[str, Any], blocked: str) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_csv(src, GOOD + BAD)
    cached_before = spark.sparkContext._jsc.getPersistentRDDs().size()
    res = run(spark, job(src, out, [*RULES, extra]), tmp_path)
    assert res.ok, res.error
    m = quality_metrics(tmp_path, res.run_id)
    assert m["mode"] == "count-first" and blocked in m["inline_blocked_by"]
    # a CSV source is cached for the counting pass and released once the quarantine committed
    assert m["persisted"] is True and spark.sparkContext._jsc.getPersistentRDDs().size() == cached_before
    assert res.metrics["write"]["quarantined_rows"] == 3
    assert [r["trip_id"] for r in delta_rows(out)] == [1, 5, 6]
    assert {r["trip_id"]: sorted(r["_failed_rules"]) for r in delta_rows(Path(str(out) + "_quarantine"))} == BROKE


def test_without_the_helper_jar_the_gate_counts_first(spark: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from etl_framework.quality import inline

    monkeypatch.setattr(inline, "tee_available", lambda spark: False)
    src, out = tmp_path / "in", tmp_path / "out"
    write_csv(src, GOOD + BAD)
    res = run(spark, job(src, out), tmp_path)
    assert res.ok, res.error
    m = quality_metrics(tmp_path, res.run_id)
    assert m["mode"] == "count-first" and "helper JAR" in m["inline_blocked_by"]
    assert [r["trip_id"] for r in delta_rows(out)] == [1, 5, 6]


def test_a_json_staging_left_by_an_earlier_version_is_still_read(spark: Any, tmp_path: Path) -> None:
    """Before the side output wrote Parquet it staged JSON lines beside `_schema.json`: a crash left before an
    upgrade is still committed after it, with every value and the run's constants."""
    from etl_framework.quality.staging import read_staged

    staged = tmp_path / "staging"
    staged.mkdir()
    schema = {"type": "struct", "fields": [
        {"name": "id", "type": "long", "nullable": True, "metadata": {}},
        {"name": "at", "type": "timestamp", "nullable": True, "metadata": {}},
        {"name": "_failed_rules", "type": {"type": "array", "elementType": "string", "containsNull": True},
         "nullable": True, "metadata": {}},
        {"name": "_run_id", "type": "string", "nullable": True, "metadata": {}}]}
    (staged / "_schema.json").write_text(json.dumps({"schema": schema, "constants": {"_run_id": "jr_1"}}))
    (staged / "part-00000.jsonl").write_text('{"0":7,"1":"2024-01-02T03:04:05.123456Z","2":["fare_ok"]}\n')
    rows = [r.asDict() for r in read_staged(spark, str(staged)).collect()]
    assert rows == [{"id": 7, "at": datetime(2024, 1, 2, 3, 4, 5, 123456), "_failed_rules": ["fare_ok"],
                     "_run_id": "jr_1"}]


def test_the_gated_write_runs_as_generated_code(spark: Any, tmp_path: Path) -> None:
    """Every operator the gate adds to the write (its predicates, the counter, the stop and the side output) stays
    in whole-stage generated code: one interpreted expression (a lambda, an Observation) would make Spark evaluate
    every row of the write through it (issue 19: +1 to 2 s on 4M rows)."""
    from etl_framework.quality.gate import plan_gate
    from etl_framework.quality.inline import InlineGate

    src = tmp_path / "in"
    write_csv(src, GOOD + BAD)
    cfg = job(src, tmp_path / "out")
    df = spark.read.option("header", True).schema("trip_id long, fare double, vendor string, zone string").csv(str(src))
    gate = InlineGate(plan_gate(df, list(cfg.quality), cfg.job, "jr_codegen"), str(tmp_path / "staging"),
                      str(tmp_path / "out"), "delta")
    plan = gate.write_df()._jdf.queryExecution().executedPlan().toString()
    ops = []
    for line in plan.splitlines():
        op = line.split("+- ", 1)[-1].strip()
        generated = op.startswith("*(")
        ops.append(((op.split(") ", 1)[1] if generated else op).split(" ")[0], generated))
    assert "etl_quarantine_tee" in plan and "etl_gate_count" in plan
    gated = [generated for name, generated in ops if name in ("Filter", "Project")]
    assert len(gated) >= 2 and all(gated), plan


def test_staged_files_join_the_quarantine_table_exactly_once(spark: Any, tmp_path: Path) -> None:
    """The quarantine commit adds the staged Parquet files to the Delta log instead of writing the rows again. Files
    an earlier attempt moved into the table's folder before stopping join the commit; a second commit of the run
    adds nothing; a table with other columns is left to the usual write, with every staged file still staged."""
    from deltalake import DeltaTable

    from etl_framework.tables import CommitRequest, table_format

    table, staging = tmp_path / "q", tmp_path / "q" / "_etl_staging" / "jr_1"
    spark.createDataFrame([(1, "a"), (2, "b"), (3, "c")], "id long, s string").repartition(2) \
        .write.parquet(str(staging))
    files = sorted(staging.glob("*.parquet"))
    assert len(files) == 2
    files[0].rename(table / f"{files[0].stem}-jr_1.parquet")  # moved by an attempt that stopped before its commit
    delta = table_format("delta")
    commit = CommitRequest("jr_1", txn=("etl_framework:quarantine:t:jr_1", 0))
    res = delta.append_staged(spark, str(table), str(staging), commit)
    assert res is not None and res.version == 0 and res.files_written == 2
    assert sorted(DeltaTable(str(table)).to_pyarrow_table().to_pylist(), key=lambda r: r["id"]) == \
        [{"id": 1, "s": "a"}, {"id": 2, "s": "b"}, {"id": 3, "s": "c"}]
    assert not list(staging.glob("*.parquet"))
    assert json.loads(DeltaTable(str(table)).history(1)[0]["userMetadata"]) == {"etl_run_id": "jr_1"}

    again = delta.append_staged(spark, str(table), str(staging), commit)  # a retry of the same run
    assert again is not None and again.version is None and DeltaTable(str(table)).version() == 0

    other = tmp_path / "q" / "_etl_staging" / "jr_2"
    spark.createDataFrame([(4, "d", 1.5)], "id long, s string, x double").write.parquet(str(other))
    staged = sorted(p.name for p in other.glob("*.parquet"))
    assert delta.append_staged(spark, str(table), str(other),
                               CommitRequest("jr_2", txn=("etl_framework:quarantine:t:jr_2", 0))) is None
    assert sorted(p.name for p in other.glob("*.parquet")) == staged and DeltaTable(str(table)).version() == 0


def test_nothing_quarantined_leaves_no_quarantine_folder(spark: Any, tmp_path: Path) -> None:
    """Quarantine rules that no row breaks: the target commits, and no quarantine table (not even an empty folder
    or its marker) appears beside it."""
    src, out = tmp_path / "in", tmp_path / "out"
    write_csv(src, [r for r in GOOD if r.split(",")[2] and r.split(",")[3] == "Z1"])
    res = run(spark, job(src, out), tmp_path)
    assert res.ok, res.error
    assert quality_metrics(tmp_path, res.run_id)["rows_quarantined"] == 0
    assert [r["trip_id"] for r in delta_rows(out)] == [1, 6]
    assert not Path(str(out) + "_quarantine").exists()
