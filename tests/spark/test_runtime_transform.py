"""Every built-in transform step (SPEC §4.3) on the shared local Spark session, through the transform stage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from etl_framework.config.model import JobConfig
from etl_framework.engine.context import JobContext, LocalRunProperties
from etl_framework.engine.job import JobRunState
from etl_framework.errors import JobFailed
from etl_framework.log import JobLog, python_logger
from etl_framework.stages.transform import run_transform

TRIPS = [
    (1, "2024-01-01 10:00:00", 1, 2.5, 10.0, "a"),
    (2, "2024-01-01 11:00:00", 2, 0.0, 5.0, "b"),
    (2, "2024-01-01 12:00:00", 2, 1.0, 7.0, "b"),
    (3, "2024-01-02 09:00:00", 9, 4.0, 20.0, "c"),
]
TRIP_SCHEMA = "trip_id long, ts string, zone_id int, distance double, fare double, tag string"
ZONES = [(1, "Old Town", "eu"), (2, "Harbour", "eu")]
ZONE_SCHEMA = "zone_id int, zone_name string, region string"


def state_for(spark: Any, steps: list[dict[str, Any]], tmp_path: Path, params: dict[str, Any] | None = None,
              extra_views: dict[str, Any] | None = None) -> JobRunState:
    cfg = JobConfig.model_validate({
        "job": "t", "params": params or {},
        "sources": {"trips": {"format": "csv", "path": str(tmp_path)}, "zones": {"format": "csv", "path": "z"}},
        "transform": steps, "target": {"path": str(tmp_path / "out")},
    })
    session = spark.newSession()
    log = JobLog("t", "jr_test", quiet=True)
    ctx = JobContext(job="t", run_id="jr_test", env="local", params=params or {}, spark=session,
                     logger=python_logger(log), run_properties=LocalRunProperties({"region": "eu"}))
    st = JobRunState(config=cfg, run_id="jr_test", spark=session, log=log, ctx=ctx, project_root=tmp_path,
                     params=params or {})
    views = {"trips": session.createDataFrame(TRIPS, TRIP_SCHEMA),
             "zones": session.createDataFrame(ZONES, ZONE_SCHEMA), **(extra_views or {})}
    for name, df in views.items():
        df.createOrReplaceTempView(name)
    st.views = views
    st.metrics["transform"] = {}
    return st


def run_steps(spark: Any, steps: list[dict[str, Any]], tmp_path: Path, **kw: Any) -> list[dict[str, Any]]:
    st = state_for(spark, steps, tmp_path, **kw)
    run_transform(st)
    return [r.asDict() for r in st.df.collect()]


def test_no_steps_passes_the_first_source_through(spark: Any, tmp_path: Path) -> None:
    assert len(run_steps(spark, [], tmp_path)) == 4


def test_sql_sees_every_source_and_previous(spark: Any, tmp_path: Path) -> None:
    rows = run_steps(spark, [
        {"filter": "distance > 0"},
        {"sql": "SELECT p.trip_id, z.zone_name FROM previous p JOIN zones z USING (zone_id) ORDER BY trip_id"},
    ], tmp_path)
    assert rows == [{"trip_id": 1, "zone_name": "Old Town"}, {"trip_id": 2, "zone_name": "Harbour"}]


def test_select_filter_with_columns(spark: Any, tmp_path: Path) -> None:
    rows = run_steps(spark, [
        {"filter": "fare >= 7"},
        {"with_columns": {"total": "fare * 2", "double_total": "total * 2"}},  # a later column uses an earlier
        {"select": ["trip_id", "total", "double_total", "upper(tag) AS tag"]},
    ], tmp_path)
    assert sorted(r["trip_id"] for r in rows) == [1, 2, 3]
    assert {(r["trip_id"], r["total"], r["double_total"], r["tag"]) for r in rows} == {
        (1, 20.0, 40.0, "A"), (2, 14.0, 28.0, "B"), (3, 40.0, 80.0, "C")}


def test_rename_cast_drop(spark: Any, tmp_path: Path) -> None:
    st = state_for(spark, [
        {"rename": {"ts": "pickup_ts", "tag": "label"}},
        {"cast": {"pickup_ts": "timestamp", "zone_id": "bigint", "fare": "decimal(10,2)"}},
        {"drop": ["label"]},
    ], tmp_path)
    run_transform(st)
    types = dict(st.df.dtypes)
    assert types == {"trip_id": "bigint", "pickup_ts": "timestamp", "zone_id": "bigint", "distance": "double",
                     "fare": "decimal(10,2)"}
    assert st.df.filter("trip_id = 3").first()["pickup_ts"].isoformat() == "2024-01-02T09:00:00"


def test_rename_of_a_missing_column_names_the_step(spark: Any, tmp_path: Path) -> None:
    with pytest.raises(JobFailed) as e:
        run_steps(spark, [{"filter": "true"}, {"rename": {"nope": "x"}, "name": "fix names"}], tmp_path)
    assert e.value.stage == "transform"
    assert "step 2 (rename: fix names)" in e.value.message and "'nope'" in e.value.message


def test_dedupe_keeps_the_first_row_in_order(spark: Any, tmp_path: Path) -> None:
    rows = run_steps(spark, [{"dedupe": {"keys": ["trip_id"], "order_by": "ts DESC"}}], tmp_path)
    assert len(rows) == 3
    assert next(r for r in rows if r["trip_id"] == 2)["ts"] == "2024-01-01 12:00:00"
    rows = run_steps(spark, [{"dedupe": {"keys": ["trip_id"], "order_by": ["fare ASC"]}}], tmp_path)
    assert next(r for r in rows if r["trip_id"] == 2)["fare"] == 5.0
    assert len(run_steps(spark, [{"dedupe": {"keys": ["zone_id", "tag"]}}], tmp_path)) == 3


def test_join_on_columns_and_on_a_condition(spark: Any, tmp_path: Path) -> None:
    rows = run_steps(spark, [{"join": {"with": "zones", "on": ["zone_id"], "how": "left"}}], tmp_path)
    assert {(r["trip_id"], r["region"]) for r in rows} == {(1, "eu"), (2, "eu"), (3, None)}
    rows = run_steps(spark, [{"join": {"with": "zones", "on": "previous.zone_id = zones.zone_id AND fare > 6"}},
                             {"select": ["trip_id", "zone_name"]}], tmp_path)
    assert sorted((r["trip_id"], r["zone_name"]) for r in rows) == [(1, "Old Town"), (2, "Harbour")]
    rows = run_steps(spark, [{"join": {"with": "zones", "on": "zone_id", "how": "left_anti"}}], tmp_path)
    assert [r["trip_id"] for r in rows] == [3]


def test_union_by_name_with_missing_columns_and_distinct(spark: Any, tmp_path: Path) -> None:
    more = spark.createDataFrame([(9, 1.0), (1, 2.5)], "trip_id long, distance double")
    steps = [{"select": ["trip_id", "distance"]},
             {"union": {"with": ["more", "more"], "allow_missing_columns": True, "distinct": True}}]
    rows = run_steps(spark, steps, tmp_path, extra_views={"more": more})
    assert sorted((r["trip_id"], r["distance"]) for r in rows) == [
        (1, 2.5), (2, 0.0), (2, 1.0), (3, 4.0), (9, 1.0)]


def test_aggregate(spark: Any, tmp_path: Path) -> None:
    rows = run_steps(spark, [
        {"with_columns": {"day": "to_date(ts)"}},
        {"aggregate": {"group_by": ["day"], "aggs": {"trips": "count(*)", "revenue": "round(sum(fare), 1)",
                                                     "zones": "count(DISTINCT zone_id)"}}},
    ], tmp_path)
    got = {str(r["day"]): (r["trips"], r["revenue"], r["zones"]) for r in rows}
    assert got == {"2024-01-01": (3, 22.0, 2), "2024-01-02": (1, 20.0, 1)}


PY_STEPS = '''
from pyspark.sql import functions as F

def add_region(df, ctx):
    ctx.logger.info("adding region")
    ctx.put_run_property("seen_rows", 4)
    return df.withColumn("region", F.lit(ctx.get_run_property("region"))).withColumn(
        "min_fare", F.lit(ctx.param("min_fare")))

def not_a_df(df, ctx):
    return 42
'''


def test_python_step_gets_params_run_properties_spark_and_logger(spark: Any, tmp_path: Path) -> None:
    (tmp_path / "rt_py_steps.py").write_text(PY_STEPS)
    st = state_for(spark, [{"python": "rt_py_steps:add_region"}], tmp_path, params={"min_fare": 7})
    try:
        run_transform(st)
        rows = st.df.collect()
        assert {r["region"] for r in rows} == {"eu"} and {r["min_fare"] for r in rows} == {7}
        assert st.ctx.run_properties.get("seen_rows") == 4
        assert st.ctx.spark is st.spark
        st2 = state_for(spark, [{"python": "rt_py_steps:not_a_df"}], tmp_path)
        with pytest.raises(JobFailed, match="returned int, not a DataFrame"):
            run_transform(st2)
    finally:
        sys.modules.pop("rt_py_steps", None)


def test_bad_sql_names_the_step(spark: Any, tmp_path: Path) -> None:
    with pytest.raises(JobFailed) as e:
        run_steps(spark, [{"sql": "SELECT no_such_column FROM trips"}], tmp_path)
    assert e.value.stage == "transform" and "step 1 (sql)" in e.value.message
    assert "no_such_column" in e.value.message
