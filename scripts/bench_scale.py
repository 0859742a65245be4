"""20 million rows on one machine (issue 21; `scripts/bench scale`, part of `make bench`).

The example `jobs/trips_clean.yaml`, unchanged (incremental files, bad records quarantined, SQL filter, three
derived columns, dedupe by trip id, a quality gate with a `quarantine` rule, Delta append partitioned by day,
catalog registration), over 20,000,000 generated trips (~1.6 GB of CSV in 16 files, generated once into the bench's
work folder and reused), against a hand-written PySpark job doing the same work (bad records split out, the same
filter, columns and dedupe, the gate as a data engineer writes it: persist, check, write the good rows and the
quarantined ones). Both run in one Spark session, alternating, each after an untimed warm-up on one file, each
round on a fresh target and state. Reported: wall times, rows per second, the ratio framework / hand-written
(target <= 1.05), rows verified by delta-rs (both targets and quarantines hold the same counts), and the peaks of
the Python driver's RSS, the JVM's RSS and its heap (local mode: the JVM is the driver and the executors), with the
heap's cap: `scripts/bench scale --driver-memory 1g` runs both jobs in a JVM whose heap cannot pass 1 GiB, which
shows nothing is collected to the driver (in local mode the executors' sort and shuffle memory share that heap).

Standalone: python scripts/bench_scale.py [--rows N] [--rounds N]
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO), str(REPO / "scripts")):
    if p not in sys.path:
        sys.path.insert(0, p)

FILES, DAYS = 16, 8
SCHEMA = ("trip_id long, pickup_ts timestamp, dropoff_ts timestamp, pickup_zone_id int, trip_distance double, "
          "fare_amount double, tip_amount double, passenger_count int")


def trips_input(work: Path, rows: int, log: Any) -> Path:
    from generate_data import generate

    out = work / f"raw_{rows}_{FILES}_{DAYS}"
    marker = out / "_generated.json"
    if not marker.exists():
        log(f"generating {rows:,} trips in {FILES} CSV files (once; kept in {out}) ...")
        info = generate(rows, FILES, DAYS, out, bad_rows=max(1, rows // 1_000_000), quiet=True)
        marker.write_text(json.dumps({"rows": rows, "bytes": info["bytes"]}))
    return out


def project(root: Path, raw: Path) -> Path:
    """A throwaway project holding the example job itself, its data where `raw` is."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    shutil.copy(REPO / "jobs" / "trips_clean.yaml", root / "jobs" / "trips_clean.yaml")
    (root / "conf" / "local.yaml").write_text(json.dumps({
        "vars": {"raw_root": str(raw), "lake_root": str(root / "lake")},
        "state": {"path": str(root / ".etl" / "state.db")}, "catalog": {"path": str(root / ".etl" / "catalog.db")}}))
    return root / "jobs" / "trips_clean.yaml"


def hand_written(spark: Any, raw: Path, out: Path) -> None:
    """trips_clean.yaml as a data engineer writes it in PySpark."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = (spark.read.option("header", "true").option("mode", "PERMISSIVE")
          .option("columnNameOfCorruptRecord", "_corrupt").schema(SCHEMA + ", _corrupt string")
          .csv(str(raw / "trips")).drop("pickup_date"))
    df = df.persist()
    bad = df.filter(F.col("_corrupt").isNotNull())
    bad.select(F.col("_corrupt").alias("record"), F.input_file_name().alias("file")).write.mode("append") \
        .parquet(str(out / "trips_bad_records"))
    good = df.filter(F.col("_corrupt").isNull()).drop("_corrupt")
    good = good.filter("trip_distance > 0 AND dropoff_ts >= pickup_ts").select(
        "trip_id", "pickup_ts", "dropoff_ts", "pickup_zone_id", "trip_distance", "fare_amount",
        F.coalesce("tip_amount", F.lit(0.0)).alias("tip_amount"), "passenger_count")
    good = (good.withColumn("pickup_date", F.to_date("pickup_ts"))
            .withColumn("total_amount", F.col("fare_amount") + F.col("tip_amount"))
            .withColumn("duration_minutes", (F.unix_timestamp("dropoff_ts") - F.unix_timestamp("pickup_ts")) / 60.0))
    w = Window.partitionBy("trip_id").orderBy(F.col("pickup_ts").desc())
    good = good.withColumn("_rn", F.row_number().over(w)).filter("_rn = 1").drop("_rn").persist()
    df.unpersist()
    if good.filter(F.col("trip_id").isNull()).limit(1).count():
        raise SystemExit("hand-written: a trip without an id")
    out_of_range = F.col("fare_amount").isNotNull() & ~F.col("fare_amount").between(0, 1000)  # GX: NULL passes
    good.filter(~out_of_range).write.format("delta").mode("append").partitionBy("pickup_date").save(str(out / "trips"))
    good.filter(out_of_range).withColumn("_failed_rules", F.array(F.lit("fare"))) \
        .write.format("delta").mode("append").save(str(out / "trips_quarantine"))
    good.unpersist()


def delta_count(path: Path) -> int:
    """Rows of a Delta table as delta-rs counts them (a reader that is not Spark); 0 when there is no table."""
    from deltalake import DeltaTable

    if not (path / "_delta_log").is_dir():
        return 0
    return int(DeltaTable(str(path)).to_pyarrow_dataset().count_rows())


def jvm_peaks(spark: Any) -> dict[str, float]:
    """The JVM's peak RSS (VmHWM) and the peak used heap, in MiB."""
    jvm = spark._jvm
    pid = int(jvm.java.lang.ProcessHandle.current().pid())
    hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    heap = 0
    for pool in jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans():
        if str(pool.getType().toString()) == "Heap memory":
            heap += int(pool.getPeakUsage().getUsed())
    cap = int(jvm.java.lang.Runtime.getRuntime().maxMemory())
    return {"jvm_peak_rss_mib": round(hwm), "jvm_peak_heap_used_mib": round(heap / 2**20),
            "jvm_max_heap_mib": round(cap / 2**20)}


def run_bench(spark: Any, work: Path, rows: int, rounds: int, log: Any) -> dict[str, Any]:
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job

    raw = trips_input(work, rows, log)
    warm_raw = work / "scale_warm_raw"
    if not warm_raw.exists():
        first = next(p for p in sorted((raw / "trips").rglob("*.csv")))
        (warm_raw / "trips" / first.parent.name).mkdir(parents=True)
        shutil.copy(first, warm_raw / "trips" / first.parent.name / first.name)

    def framework(data: Path, tag: str) -> Path:
        root = work / f"scale_fw_{tag}"
        job = project(root, data)
        r = run_job(job, project=Project.discover(root), spark=spark, quiet=True)
        if not r.ok:
            raise SystemExit(f"the framework run failed: {r.error}")
        return root / "lake" / "curated"

    def hand(data: Path, tag: str) -> Path:
        out = work / f"scale_hand_{tag}"
        shutil.rmtree(out, ignore_errors=True)
        hand_written(spark, data, out)
        return out

    log("warm-up (one file each, untimed) ...")
    framework(warm_raw, "warm")
    hand(warm_raw, "warm")
    times: dict[str, list[float]] = {"framework": [], "hand": []}
    outs: dict[str, Path] = {}
    for i in range(rounds):
        order = [("framework", framework), ("hand", hand)]
        for name, fn in (order if i % 2 == 0 else order[::-1]):
            shutil.rmtree(work / f"scale_{'fw' if name == 'framework' else 'hand'}_run", ignore_errors=True)
            t0 = time.perf_counter()
            outs[name] = fn(raw, "run")
            dt = time.perf_counter() - t0
            times[name].append(dt)
            log(f"round {i + 1}/{rounds}: {name:<9} {dt:7.1f}s ({rows / dt:,.0f} rows/s)")
    fw = {"target": delta_count(outs["framework"] / "trips"),
          "quarantine": delta_count(outs["framework"] / "trips_quarantine")}
    hd = {"target": delta_count(outs["hand"] / "trips"), "quarantine": delta_count(outs["hand"] / "trips_quarantine")}
    if fw != hd:
        raise SystemExit(f"the two outputs differ (delta-rs): framework {fw}, hand-written {hd}")
    med_fw, med_hand = statistics.median(times["framework"]), statistics.median(times["hand"])
    return {
        "rows_in": rows, "rows_target": fw["target"], "rows_quarantined": fw["quarantine"], "rounds": rounds,
        "framework_s": [round(t, 1) for t in times["framework"]],
        "hand_written_s": [round(t, 1) for t in times["hand"]],
        "framework_rows_per_s": round(rows / med_fw), "hand_written_rows_per_s": round(rows / med_hand),
        "ratio": round(med_fw / med_hand, 3), "target": "<= 1.05",
        "python_driver_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        **jvm_peaks(spark),
    }


def register(registry: Any) -> None:
    def bench(ctx: Any) -> dict[str, Any]:
        return run_bench(ctx.spark, ctx.work, ctx.rows or 20_000_000, ctx.rounds, ctx.log)

    registry.add("scale", bench, "the example trips job (quality gate on) vs hand-written PySpark, 20M rows")


def main(argv: list[str] | None = None) -> int:
    import argparse

    from etl_framework.runtime.spark import get_spark

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--work", type=Path, default=REPO / "data" / "bench")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run_bench(get_spark(REPO), a.work, a.rows, a.rounds,
                               lambda m: print(f"  {m}", file=sys.stderr, flush=True)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
