#!/usr/bin/env python3
"""`make demo`: generate sample data and run the example project end to end, printing each command first."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ETL = str(BIN / "etl")

STEPS: list[list[str]] = [
    [sys.executable, "scripts/generate_data.py", "--rows", "20000", "--files", "4", "--days", "3",
     "--bad-rows", "5", "--out", "data/raw"],
    [ETL, "validate"],
    [ETL, "plan", "jobs/nightly_trips.yaml", "--format", "text"],
    [ETL, "workflow", "run", "jobs/nightly_trips.yaml"],
    [ETL, "workflow", "status"],
    [ETL, "catalog", "list"],
    [ETL, "query", "SELECT pickup_date, count(*) AS trips FROM curated.trips GROUP BY 1 ORDER BY 1"],
    # the daily stats are an Iceberg table: its current snapshot, read without a JVM
    [ETL, "query", "SELECT region, sum(trips) AS trips, sum(revenue) AS revenue FROM marts.trip_stats GROUP BY 1"],
    [ETL, "catalog", "ddl", "marts.trip_stats"],
    # a JDBC source (a generated SQLite database standing in for PostgreSQL/MySQL), incremental on a compound
    # watermark [updated_at, order_id] that the database filters, merged into Delta
    [ETL, "run", "jobs/shop_orders.yaml"],
    [ETL, "query", ("SELECT status, count(*) AS orders, round(sum(amount), 2) AS amount FROM curated.orders "
                    "GROUP BY 1 ORDER BY 1")],
    [ETL, "runs"],
    # A second run of the incremental job: nothing new landed, so it reads nothing.
    [ETL, "run", "jobs/trips_clean.yaml"],
]


def main() -> int:
    env = dict(os.environ, ETL_PROJECT_DIR=str(ROOT))
    for step in STEPS:
        shown = " ".join(shlex.quote(Path(a).name if a in (ETL, sys.executable) else a) for a in step)
        print(f"\n$ {shown}", flush=True)
        rc = subprocess.call(step, cwd=ROOT, env=env)
        if rc != 0:
            print(f"demo: step failed with exit code {rc}: {shown}", file=sys.stderr)
            return rc
    print("\ndemo: done. Try `.venv/bin/etl show <RUN_ID>` and the HTML reports under reports/.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
