"""`make bench` for the workflow engine: the overhead per node stays far below the 50 ms target."""

from __future__ import annotations

from etl_framework.engine.bench import run_bench


def test_engine_overhead_per_node_is_under_target() -> None:
    r = run_bench(nodes=30, layers=5)
    assert r["succeeded"] == 30
    assert r["overhead_ms_per_node"] < 50, r
