#!/usr/bin/env python
"""`scripts/bench incremental` (issue 6): wall time of an `etl run` whose incremental source has nothing new,
against the wall time of merely starting a local SparkSession in a fresh process (the baseline a Spark-based
re-run cannot beat). The framework decides "no new input" from the listing and the bookmark, without Spark.

    .venv/bin/python scripts/bench_incremental.py [--files 200] [--runs 5]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ETL = str(Path(sys.executable).parent / "etl")
SPARK_START = (
    "import sys; sys.path.insert(0, %r)\n"
    "from etl_framework.runtime.spark import get_spark\n"
    "get_spark(None).range(1).count()\n"
)


def make_project(root: Path, files: int) -> Path:
    (root / "conf").mkdir(parents=True, exist_ok=True)
    (root / "jobs").mkdir(exist_ok=True)
    (root / "in").mkdir(exist_ok=True)
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    for i in range(files):
        day = f"2024-01-{i % 28 + 1:02d}"
        (root / "in" / f"part-{i:05d}.csv").write_text(
            "id,ts,v\n" + "".join(f"{i * 10 + k},{day} 00:00:00,{k}\n" for k in range(10)))
    job = root / "jobs" / "inc.yaml"
    job.write_text(
        "job: inc\nsources:\n  src: {format: csv, path: ../in, options: {header: true}, "
        "schema: {id: long, ts: timestamp, v: int}, incremental: {mode: files}}\n"
        "transform:\n  - with_columns: {day: to_date(ts)}\n"
        "target: {format: delta, path: ../out, partition_by: [day]}\n")
    return job


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, r


def measure(work: Path, files: int = 200, runs: int = 5) -> dict[str, Any]:
    root = work / "incremental"
    job = make_project(root, files)
    first, r = timed([ETL, "--project-dir", str(root), "run", str(job), "--no-report"], root)
    if r.returncode != 0:
        raise SystemExit(f"first run failed:\n{r.stderr[-2000:]}")
    idle, spark = [], []
    for _ in range(runs):
        t, r = timed([ETL, "--project-dir", str(root), "run", str(job), "--no-report"], root)
        if r.returncode != 0 or "no new input" not in r.stderr:
            raise SystemExit(f"re-run did not report 'no new input':\n{r.stderr[-2000:]}")
        idle.append(t)
        t, _ = timed([sys.executable, "-c", SPARK_START % str(ROOT)], root)
        spark.append(t)
    return {
        "bench": "incremental re-run with no new input",
        "input_files": files,
        "first_run_s": round(first, 2),
        "no_new_input_run_s_median": round(statistics.median(idle), 3),
        "spark_session_start_s_median": round(statistics.median(spark), 3),
        "ratio_vs_spark_start": round(statistics.median(idle) / statistics.median(spark), 3),
    }


def register(registry: Any) -> None:
    registry.add("incremental", lambda ctx: measure(ctx.work), "no-new-input re-run vs a bare Spark start")


if __name__ == "__main__":
    import tempfile

    files = int(sys.argv[sys.argv.index("--files") + 1]) if "--files" in sys.argv else 200
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(Path(tmp), files, runs)))
