"""Quality-gate overhead (issue 4; `scripts/bench quality`, part of `make bench`).

The runtime bench's job (4,000,000 generated trips in 8 CSV files; filter, three derived columns) writing a Delta
table partitioned by day, run through the real job engine with and without a gate of five row-level expectations,
two of them `quarantine` (~5 % of the rows are quarantined: missing tips, negative fares):

    overhead = (median gated wall time - median ungated wall time) / median ungated wall time     (target <= 20 %, issue 19)

Both variants run alternately in one Spark session (the order flips every round), after an untimed warm-up of
each on one input file and then on the whole input (`--warm-rounds`, 1: on 2 cores the JIT is still compiling
after the one-file runs, and the first full rounds ran up to twice as slow as the later ones, whichever variant
came first), so JIT warm-up and Great Expectations' one-time import are not counted in either; the cold
import is measured separately in a fresh interpreter and reported as `gx_import_cold_s` (the engine overlaps it
with Spark's start-up for gated jobs). `--source parquet` runs the same job from a Parquet copy of the input, the
harder case for the gate (a cheaper read makes the gate's own pass weigh more).

Standalone: python scripts/bench_quality.py [--rows N] [--rounds N] [--source csv|parquet]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO), str(REPO / "scripts")):
    if p not in sys.path:
        sys.path.insert(0, p)

TRIPS_SCHEMA = {
    "trip_id": "long", "pickup_ts": "timestamp", "dropoff_ts": "timestamp", "pickup_zone_id": "int",
    "trip_distance": "double", "fare_amount": "double", "tip_amount": "double", "passenger_count": "int",
}
TRANSFORM = [
    {"filter": "trip_distance > 0 AND dropoff_ts >= pickup_ts"},
    {"with_columns": {
        "pickup_date": "to_date(pickup_ts)",
        "total_amount": "fare_amount + coalesce(tip_amount, 0)",
        "duration_minutes": "(unix_timestamp(dropoff_ts) - unix_timestamp(pickup_ts)) / 60.0",
    }},
]
RULES = [
    {"expect": "expect_column_values_to_not_be_null", "column": "trip_id", "on_fail": "fail"},
    {"expect": "expect_column_values_to_be_between", "column": "fare_amount", "min_value": 0, "max_value": 1000,
     "on_fail": "quarantine", "name": "fare_in_range"},
    {"expect": "expect_column_values_to_not_be_null", "column": "tip_amount", "on_fail": "quarantine",
     "name": "tip_present"},
    {"expect": "expect_column_values_to_be_between", "column": "passenger_count", "min_value": 1, "max_value": 8,
     "on_fail": "fail"},
    {"expect": "expect_column_values_to_be_in_set", "column": "pickup_zone_id", "value_set": list(range(1, 17)),
     "mostly": 0.5, "on_fail": "warn", "name": "zone_known"},
]


def trips_input(work: Path, rows: int, files: int = 8, days: int = 8, log: Any = print) -> Path:
    """The runtime bench's generated CSV input (same folder and marker, so the two benches share it)."""
    from generate_data import generate

    out = work / f"raw_{rows}_{files}_{days}"
    marker = out / "_generated.json"
    if not marker.exists():
        log(f"generating {rows:,} trips in {files} CSV files ...")
        info = generate(rows, files, days, out, quiet=True)
        marker.write_text(json.dumps({"rows": rows, "files": files, "days": days, "bytes": info["bytes"]}))
    return out / "trips"


def parquet_input(spark: Any, csv: Path, log: Any = print) -> Path:
    out = csv.parent / "trips_parquet"
    if not (out / "_SUCCESS").exists():
        log("converting the input to Parquet ...")
        ddl = ", ".join(f"{c} {t}" for c, t in TRIPS_SCHEMA.items())
        spark.read.option("header", "true").schema(ddl).csv(str(csv)).write.mode("overwrite").parquet(str(out))
    return out


def job_config(src: Path, fmt: str, target: Path, gated: bool) -> Any:
    from etl_framework.config.model import JobConfig

    source: dict[str, Any] = {"format": fmt, "path": str(src)}
    if fmt == "csv":
        source.update(options={"header": True}, schema=TRIPS_SCHEMA)
    return JobConfig.model_validate({
        "job": "bench_gated" if gated else "bench_ungated",
        "sources": {"trips": source},
        "transform": TRANSFORM,
        "quality": RULES if gated else [],
        "target": {"format": "delta", "path": str(target), "partition_by": ["pickup_date"], "mode": "overwrite"},
    })


def cold_gx_import() -> float:
    code = "import time; t = time.perf_counter(); import great_expectations; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    try:
        return round(float(out.stdout.strip().splitlines()[-1]), 2)
    except (ValueError, IndexError):
        return -1.0


def run_bench(spark: Any, work: Path, rows: int, rounds: int, source: str = "csv", log: Any = print,
              warm_rounds: int = 1) -> dict[str, Any]:
    from etl_framework.engine.job import run_loaded

    csv = trips_input(work, rows, log=log)
    src = parquet_input(spark, csv, log) if source == "parquet" else csv
    first_file = next(p for p in sorted(src.rglob("*")) if p.suffix in (".csv", ".parquet"))
    if source == "parquet":  # a Parquet source is a folder
        warm = src.parent / "trips_parquet_warm"
        if not warm.exists():
            warm.mkdir()
            shutil.copy(first_file, warm / first_file.name)
        first_file = warm
    out = work / "quality_out"

    def run(gated: bool, data: Path = src) -> dict[str, Any]:
        target = out / ("gated" if gated else "ungated")
        shutil.rmtree(str(target) + "_quarantine", ignore_errors=True)  # the quarantine appends: one run's rows
        cfg = job_config(data, source, target, gated)
        res = run_loaded(cfg, spark=spark, quiet=True)
        if not res.ok:
            raise SystemExit(f"bench job {cfg.job} failed: {res.error}")
        return res.metrics

    log("warm-up (one input file each, untimed) ...")
    run(False, first_file)
    run(True, first_file)
    for i in range(warm_rounds):
        log(f"warm-up round {i + 1}/{warm_rounds} (whole input, untimed) ...")
        run(False)
        run(True)
    times: dict[str, list[float]] = {"ungated": [], "gated": []}
    quality: dict[str, Any] = {}
    for i in range(rounds):
        order = [False, True] if i % 2 == 0 else [True, False]
        for gated in order:
            t0 = time.perf_counter()
            metrics = run(gated)
            dt = time.perf_counter() - t0
            name = "gated" if gated else "ungated"
            times[name].append(dt)
            if gated:
                quality = metrics.get("quality", {})
                parts = ", ".join(f"{k.removesuffix('_s')} {quality[k]}s" for k in
                                  ("gx_setup_s", "count_pass_s", "gx_validate_s", "staging_s") if k in quality)
                log(f"round {i + 1}/{rounds}: gated   {dt:6.2f}s ({quality.get('mode')} gate; quality stage "
                    f"{quality.get('duration_s')}s: {parts}; persisted {quality.get('persisted')}; "
                    f"{quality.get('rows_quarantined'):,} rows quarantined; write stage "
                    f"{metrics.get('write', {}).get('duration_s')}s, of which quarantine commit "
                    f"{metrics.get('write', {}).get('quarantine_commit_s')}s)")
            else:
                log(f"round {i + 1}/{rounds}: ungated {dt:6.2f}s (write stage "
                    f"{metrics.get('write', {}).get('duration_s')}s)")
    written = spark.read.format("delta").load(str(out / "gated")).count()
    quarantined = spark.read.format("delta").load(str(out / "gated") + "_quarantine").count()
    ungated_rows = spark.read.format("delta").load(str(out / "ungated")).count()
    if written + quarantined != ungated_rows:
        raise SystemExit(f"rows lost: gated wrote {written} + quarantined {quarantined} != ungated {ungated_rows}")
    mu, mg = statistics.median(times["ungated"]), statistics.median(times["gated"])
    shutil.rmtree(out, ignore_errors=True)
    pct = round(100 * (mg - mu) / mu, 1)
    return {
        "rows_in": rows, "source": source, "expectations": len(RULES), "quarantine_rules": 2, "rounds": rounds,
        "warm_rounds": warm_rounds,
        "rows_written": written, "rows_quarantined": quarantined,
        "ungated_s": [round(t, 2) for t in times["ungated"]], "gated_s": [round(t, 2) for t in times["gated"]],
        "median_ungated_s": round(mu, 2), "median_gated_s": round(mg, 2),
        "quality_stage_s": quality.get("duration_s"), "gate_mode": quality.get("mode"),
        "overhead_pct": pct, "target": "<= 20 %", "ok": pct <= 20, "gx_import_cold_s": cold_gx_import(),
    }


def bench_quality(ctx: Any) -> dict[str, Any]:
    """Job with a 5-expectation gate (2 quarantine) vs the same job ungated, 4M rows (overhead, target <= 20%)."""
    return run_bench(ctx.spark, ctx.work, ctx.rows or 4_000_000, ctx.rounds,
                     ctx.options.get("quality_source", "csv"), ctx.log)


def register(registry: Any) -> None:
    registry.add("quality", bench_quality, (bench_quality.__doc__ or "").strip())


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="quality-gate overhead bench")
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--source", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--warm-rounds", type=int, default=1)
    ap.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    a = ap.parse_args(argv)
    from etl_framework.runtime.spark import get_spark

    a.work.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    result = run_bench(get_spark(REPO), a.work, a.rows, a.rounds, a.source, log, a.warm_rounds)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
