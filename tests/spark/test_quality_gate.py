"""The quality gate as a pure function: its per-rule results equal Great Expectations' own `batch.validate`
results, the quarantine holds exactly the rows that broke a quarantine rule (each with exactly the rules it broke),
and bad input gets a clear error naming the rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from etl_framework.config.model import Expectation
from etl_framework.errors import JobFailed
from etl_framework.quality.gate import evaluate_gate, should_persist

SCHEMA = "trip_id long, fare double, vendor string, zone string, tip double"
# trip 2: fare < 0; trip 3: vendor null; trip 4: fare > 1000 and vendor null; trip 5: unknown zone (warn only);
# trip 8: tip > fare (pair rule, warn); trip 9: null trip_id (fail rule, mostly 0.8 lets it pass)
ROWS = [
    (1, 10.0, "a", "Z1", 1.0),
    (2, -5.0, "a", "Z1", 0.0),
    (3, 12.0, None, "Z2", 2.0),
    (4, 2000.0, None, "Z2", 5.0),
    (5, 8.0, "b", "ZZ", 1.0),
    (6, 9.0, "b", "Z1", None),
    (7, 7.0, "a", "Z2", 1.0),
    (8, 3.0, "b", "Z1", 4.0),
    (None, 11.0, "a", "Z1", 1.0),
    (10, None, "b", "Z2", 1.0),
]
BAD = {2: {"fare_range"}, 3: {"vendor_present"}, 4: {"fare_range", "vendor_present"}}


def rules(*extra: dict[str, Any]) -> list[Expectation]:
    base = [
        {"expect": "expect_column_values_to_not_be_null", "column": "trip_id", "mostly": 0.8, "on_fail": "fail"},
        {"expect": "expect_column_values_to_be_between", "column": "fare", "min_value": 0, "max_value": 1000,
         "on_fail": "quarantine", "name": "fare_range"},
        {"expect": "expect_column_values_to_not_be_null", "column": "vendor", "on_fail": "quarantine",
         "name": "vendor_present"},
        {"expect": "expect_column_values_to_be_in_set", "column": "zone", "value_set": ["Z1", "Z2"],
         "on_fail": "warn", "name": "zone_known"},
    ]
    return [Expectation.model_validate(r) for r in [*base, *extra]]


@pytest.fixture(scope="module")
def trips(spark: Any) -> Any:
    return spark.createDataFrame(ROWS, SCHEMA)


def normalized(value: Any) -> Any:
    """GX results as they are stored with a run (JSON): tuples become lists."""
    return json.loads(json.dumps(value, default=str))


def gx_own(df: Any, exp: Expectation) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (ctx.data_sources.add_spark(name="own").add_dataframe_asset(name="d")
             .add_batch_definition_whole_dataframe("b").get_batch(batch_parameters={"dataframe": df}))
    expectation = ExpectationConfiguration(type=exp.expect, kwargs=exp.kwargs).to_domain_obj()
    return batch.validate(expectation, result_format="BASIC")


def test_results_equal_great_expectations_own_validation(trips: Any) -> None:
    """Counted in one pass by the gate, decided by GX: identical to GX validating each expectation itself."""
    exps = rules(
        {"expect": "expect_column_values_to_be_unique", "column": "vendor", "on_fail": "warn"},
        {"expect": "expect_column_pair_values_a_to_be_greater_than_b", "column_A": "fare", "column_B": "tip",
         "on_fail": "warn"},
        {"expect": "expect_compound_columns_to_be_unique", "column_list": ["vendor", "zone"], "on_fail": "warn"},
        {"expect": "expect_column_values_to_match_regex", "column": "zone", "regex": "^Z[0-9]$", "mostly": 0.85,
         "on_fail": "warn"},
        {"expect": "expect_column_values_to_be_between", "column": "tip", "max_value": 3, "on_fail": "warn",
         "row_condition": "zone = 'Z1'", "condition_parser": "spark"},
        {"expect": "expect_column_values_to_be_increasing", "column": "trip_id", "on_fail": "warn"},
        {"expect": "expect_table_row_count_to_be_between", "min_value": 1, "max_value": 5, "on_fail": "warn"},
        {"expect": "expect_column_mean_to_be_between", "column": "fare", "min_value": 0, "max_value": 50,
         "on_fail": "warn"},
    )
    gate = evaluate_gate(trips, exps, "trips", "run1", persist=False)
    assert len(gate.results) == len(exps)
    for stored, exp in zip(gate.results, exps, strict=True):
        own = gx_own(trips, exp)
        assert stored["success"] == own.success, exp.rule_name
        assert stored["gx_result"] == normalized(own.result), exp.rule_name
        assert stored["unexpected_count"] == own.result.get("unexpected_count"), exp.rule_name
        assert stored["unexpected_percent"] == own.result.get("unexpected_percent"), exp.rule_name
    by_rule = {r["rule"]: r for r in gate.results}
    # spot checks against the fixture itself, so the comparison above cannot pass vacuously
    assert by_rule["fare_range"]["unexpected_count"] == 2 and not by_rule["fare_range"]["success"]
    assert by_rule["fare_range"]["partial_unexpected_list"] == [-5.0, 2000.0]
    assert by_rule["expect_column_values_to_not_be_null(trip_id)"]["success"]  # 1 null of 10, mostly 0.8
    assert by_rule["expect_table_row_count_to_be_between"]["observed_value"] == 10
    assert not by_rule["expect_table_row_count_to_be_between"]["success"]
    assert by_rule["expect_column_pair_values_a_to_be_greater_than_b"]["unexpected_count"] == 2  # trips 2, 8
    assert by_rule["expect_column_values_to_be_between(tip)"]["unexpected_count"] == 1  # trip 8 (Z1), not trip 4


def test_quarantine_holds_exactly_the_bad_rows_with_their_rules(trips: Any) -> None:
    gate = evaluate_gate(trips, rules(), "trips", "run1")
    try:
        assert gate.ok and gate.row_count == 10 and gate.quarantined_rows == 3
        q = {r["trip_id"]: r for r in (row.asDict() for row in gate.quarantine_df.collect())}
        assert {k: set(v["_failed_rules"]) for k, v in q.items()} == BAD
        assert all(v["_run_id"] == "run1" and v["_quarantined_at"] is not None for v in q.values())
        assert gate.quarantine_df.columns == [*trips.columns, "_failed_rules", "_run_id", "_quarantined_at"]
        assert dict(gate.quarantine_df.dtypes)["_failed_rules"] == "array<string>"
        kept = sorted((r["trip_id"] or -1) for r in gate.passed_df.collect())
        assert kept == [-1, 1, 5, 6, 7, 8, 10]
        assert gate.passed_df.columns == trips.columns
        actions = {r["rule"]: r["action"] for r in gate.results}
        assert actions == {"expect_column_values_to_not_be_null(trip_id)": "passed",
                           "fare_range": "quarantined 2 rows", "vendor_present": "quarantined 2 rows",
                           "zone_known": "warned"}
        assert [r["rule"] for r in gate.warned] == ["zone_known"]
    finally:
        gate.release()


def test_row_breaking_a_warn_rule_too_is_labelled_with_it(trips: Any) -> None:
    exps = rules({"expect": "expect_column_values_to_be_in_set", "column": "vendor", "value_set": ["b"],
                  "on_fail": "warn", "name": "vendor_b"})
    gate = evaluate_gate(trips, exps, "trips", "run1", persist=False)
    q = {r["trip_id"]: set(r["_failed_rules"]) for r in gate.quarantine_df.collect()}
    assert q == {2: {"fare_range", "vendor_b"}, 3: {"vendor_present"}, 4: {"fare_range", "vendor_present"}}


def test_failed_fail_rule_is_reported_with_observed_value(trips: Any) -> None:
    exps = rules({"expect": "expect_column_values_to_be_between", "column": "fare", "max_value": 100,
                  "on_fail": "fail", "name": "fare_small"},
                 {"expect": "expect_column_max_to_be_between", "column": "tip", "max_value": 4, "on_fail": "fail"})
    gate = evaluate_gate(trips, exps, "trips", "run1", persist=False)
    assert not gate.ok
    assert [r["rule"] for r in gate.failed] == ["fare_small", "expect_column_max_to_be_between(tip)"]
    msg = gate.failure_message()
    assert "fare_small [expect_column_values_to_be_between]: 1 of 10 rows unexpected (11.11%), e.g. [2000.0]" in msg
    assert "expect_column_max_to_be_between(tip) [expect_column_max_to_be_between]: observed value 5.0" in msg
    assert "nothing was written" in msg


def test_missing_column_fails_before_any_data_is_read(spark: Any, tmp_path: Path) -> None:
    """The schema is known from the plan: the error comes without reading a byte (the files are gone)."""
    import shutil

    src = tmp_path / "src"
    spark.createDataFrame(ROWS, SCHEMA).write.parquet(str(src))
    df = spark.read.parquet(str(src)).withColumnRenamed("fare", "fare_amount")
    shutil.rmtree(src)  # any read now fails with a Spark error
    exps = rules()
    with pytest.raises(JobFailed) as e:
        evaluate_gate(df, exps, "trips", "run1")
    text = e.value.render()
    assert "job trips, stage quality" in text
    assert "rule 'fare_range': column 'fare' does not exist in the transformed data (did you mean 'fare_amount'?)" \
        in text
    assert "what to do:" in text


def test_wrong_kwarg_type_names_the_rule(trips: Any) -> None:
    exps = rules({"expect": "expect_column_values_to_be_in_set", "column": "zone", "value_set": "Z1",
                  "mostly": "most", "on_fail": "warn", "name": "zone_set"})
    with pytest.raises(JobFailed) as e:
        evaluate_gate(trips, exps, "trips", "run1")
    assert "rule 'zone_set' (expect_column_values_to_be_in_set) has invalid arguments" in e.value.message
    assert "mostly" in e.value.message and e.value.stage == "quality"


def test_unknown_keyword_names_the_rule(trips: Any) -> None:
    exps = rules({"expect": "expect_column_values_to_not_be_null", "column": "zone", "min_value": 3,
                  "on_fail": "warn", "name": "zone_present"})
    with pytest.raises(JobFailed, match="rule 'zone_present'.*min_value"):
        evaluate_gate(trips, exps, "trips", "run1")


def test_quarantine_on_a_table_level_rule_is_refused(trips: Any) -> None:
    exps = rules({"expect": "expect_table_row_count_to_be_between", "min_value": 1, "on_fail": "quarantine"})
    with pytest.raises(JobFailed, match="table-level: it cannot quarantine rows"):
        evaluate_gate(trips, exps, "trips", "run1")


def test_empty_dataframe(spark: Any) -> None:
    empty = spark.createDataFrame([], SCHEMA)
    exps = rules({"expect": "expect_table_row_count_to_be_between", "min_value": 1, "on_fail": "warn"})
    gate = evaluate_gate(empty, exps, "trips", "run1")
    assert gate.ok and gate.row_count == 0 and gate.quarantined_rows == 0 and gate.quarantine_df is None
    assert gate.passed_df.count() == 0
    by_rule = {r["rule"]: r for r in gate.results}
    assert by_rule["fare_range"]["success"] and by_rule["fare_range"]["element_count"] == 0
    assert by_rule["fare_range"]["action"] == "passed"
    assert not by_rule["expect_table_row_count_to_be_between"]["success"]
    assert by_rule["expect_table_row_count_to_be_between"]["action"] == "warned"
    gate.release()


def test_every_row_quarantined(spark: Any) -> None:
    df = spark.createDataFrame([(1, -1.0, "a", "Z1", 0.0), (2, -2.0, None, "Z1", 0.0)], SCHEMA)
    gate = evaluate_gate(df, rules(), "trips", "run1", persist=False)
    assert gate.quarantined_rows == gate.row_count == 2
    assert gate.passed_df.count() == 0 and gate.quarantine_df.count() == 2
    assert "every row was quarantined: the target write commits 0 rows" in gate.summary()


def test_persist_only_when_recomputing_costs_more(spark: Any, trips: Any, tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    trips.write.parquet(str(tmp_path / "p"))
    trips.write.option("header", True).csv(str(tmp_path / "c"))
    assert not should_persist(spark.read.parquet(str(tmp_path / "p")).filter("fare > 0").withColumn("x", F.col("fare")))
    assert should_persist(spark.read.option("header", True).csv(str(tmp_path / "c")).filter("fare > 0"))
    assert not should_persist(trips.filter("fare > 0").withColumn("x", F.col("fare") * 2))
    assert should_persist(trips.groupBy("zone").count())
    assert should_persist(trips.join(trips.select("trip_id"), "trip_id"))
    assert should_persist(trips.withColumn("r", F.rand()))


NATIVE_CASES = [
    {"expect": "expect_column_values_to_not_be_null", "column": "vendor"},
    {"expect": "expect_column_values_to_not_be_null", "column": "trip_id", "mostly": 0.9},
    {"expect": "expect_column_values_to_not_be_null", "column": "trip_id", "mostly": 0.95},
    {"expect": "expect_column_values_to_be_between", "column": "fare", "min_value": 0, "max_value": 1000},
    {"expect": "expect_column_values_to_be_between", "column": "fare", "min_value": 8, "strict_min": True},
    {"expect": "expect_column_values_to_be_between", "column": "tip", "max_value": 1.0, "strict_max": True,
     "mostly": 0.5},
    {"expect": "expect_column_values_to_be_between", "column": "tip", "min_value": 1, "max_value": 2,
     "strict_min": True, "strict_max": False},
    {"expect": "expect_column_values_to_be_in_set", "column": "zone", "value_set": ["Z1", "Z2"]},
    {"expect": "expect_column_values_to_be_in_set", "column": "vendor", "value_set": ["a"], "mostly": 0.6},
    {"expect": "expect_column_values_to_not_be_in_set", "column": "trip_id", "value_set": [2, 3]},
    {"expect": "expect_column_values_to_match_regex", "column": "zone", "regex": "^Z[0-9]$", "mostly": 0.85},
    {"expect": "expect_column_values_to_not_match_regex", "column": "vendor", "regex": "b"},
    {"expect": "expect_column_values_to_be_unique", "column": "vendor"},
    {"expect": "expect_column_values_to_be_unique", "column": "trip_id", "mostly": 0.5},
    {"expect": "expect_table_row_count_to_be_between", "min_value": 1, "max_value": 10},
    {"expect": "expect_table_row_count_to_be_between", "min_value": 10, "strict_min": True},
    {"expect": "expect_table_row_count_to_be_between", "max_value": 10, "strict_max": True},
]


@pytest.mark.parametrize("case", NATIVE_CASES, ids=lambda c: f"{c['expect'][7:]}-{c.get('column')}-{len(c)}")
def test_rules_spark_checks_alone_give_great_expectations_own_results(trips: Any, spark: Any, case: dict,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The common row rules run without importing GX (`quality.native`): success and the stored result dict are
    exactly those of GX validating the same data itself, and, on empty data too, those of the gate's GX path."""
    from etl_framework.quality import native

    exps = [Expectation.model_validate({**case, "on_fail": "warn"})]
    assert native.covers(exps)
    gate = evaluate_gate(trips, exps, "trips", "run1", persist=False)
    own = gx_own(trips, exps[0])
    assert (gate.results[0]["success"], gate.results[0]["gx_result"]) == (own.success, normalized(own.result))
    empty = spark.createDataFrame([], SCHEMA)
    mine = evaluate_gate(empty, exps, "trips", "run1", persist=False).results
    monkeypatch.setenv(native.ENGINE_ENV, "gx")
    assert not native.covers(exps)
    assert mine == evaluate_gate(empty, exps, "trips", "run1", persist=False).results
    assert mine[0]["element_count" if "column" in case else "observed_value"] == 0


def test_a_gate_of_such_rules_never_imports_great_expectations(tmp_path: Path) -> None:
    """In a fresh process: a gate of native rules runs, and great_expectations is never imported; a rule only GX
    knows imports it."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        from pyspark.sql import SparkSession
        from etl_framework.config.model import Expectation
        from etl_framework.quality.gate import evaluate_gate
        spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
        df = spark.createDataFrame([(1, 5.0), (2, -1.0)], "id long, fare double")
        rules = [Expectation.model_validate({"expect": "expect_column_values_to_be_between", "column": "fare",
                                            "min_value": 0, "on_fail": "quarantine"})]
        gate = evaluate_gate(df, rules, "j", "r", persist=False)
        print(gate.quarantined_rows, "great_expectations" in sys.modules)
        rules.append(Expectation.model_validate({"expect": "expect_column_mean_to_be_between", "column": "id",
                                                "min_value": 0, "on_fail": "warn"}))
        evaluate_gate(df, rules, "j", "r", persist=False)
        print("great_expectations" in sys.modules)
        spark.stop()
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True,
                         cwd=tmp_path).stdout.split()
    assert out == ["1", "False", "True"]
