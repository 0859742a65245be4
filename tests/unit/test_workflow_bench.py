"""The workflow engine bench (`scripts/bench workflow`) runs a synthetic workflow to completion and reports its
overhead. The 50 ms-per-node target is judged by `make bench`, not here (no timed unit tests)."""

from __future__ import annotations

from etl_framework.engine.bench import run_bench


def test_engine_bench_runs_every_node_and_reports_its_overhead() -> None:
    r = run_bench(nodes=30, layers=5)
    assert r["succeeded"] == 30
    assert r["wall_s"] >= r["jobs_own_s"] > 0 and r["overhead_ms_per_node"] >= 0, r
