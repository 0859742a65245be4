"""Warm a new daemon's JVM on the paths every run takes, so the user's first commands are as fast as later ones.

Why: a fresh JVM interprets Spark's planner, codegen, the CSV and Parquet readers, the Delta commit and the quality
gate's side output until its JIT has compiled them; measured on 2 cores, the first runs of a 1,000-row job in a new
daemon took 4–5 s and later ones 2–3 s. At `etl daemon start` the daemon runs two small throwaway jobs through
the real engine (a CSV source, a transform, row rules with a quarantine, a partitioned Delta overwrite, then an
aggregate of that table), twice, in a temporary project of its own that it deletes afterwards: nothing of the
user's project (state, catalog, tables) is touched. A failure here is only a slower first run: it is ignored.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

ROUNDS = 2
ROWS = 2000
LOAD = """job: warm_load
sources:
  rows: {format: csv, path: ../data/in, options: {header: true},
         schema: {id: long, ts: timestamp, zone: int, amount: double, note: string}}
transform:
  - filter: zone >= 0
  - with_columns: {day: to_date(ts), amount_eur: amount * 0.9}
quality:
  - {expect: expect_column_values_to_not_be_null, column: id, on_fail: fail}
  - {expect: expect_column_values_to_be_between, column: amount, min_value: 0, on_fail: quarantine}
  - {expect: expect_column_values_to_be_in_set, column: zone, value_set: [0, 1, 2, 3, 4, 5, 6], on_fail: warn}
target: {format: delta, path: ../data/out/load, partition_by: [day], mode: overwrite}
"""
STATS = """job: warm_stats
sources:
  loaded: {format: delta, path: ../data/out/load}
transform:
  - sql: SELECT day, zone, count(*) AS n, sum(amount) AS total FROM loaded GROUP BY day, zone
quality:
  - {expect: expect_table_row_count_to_be_between, min_value: 1, on_fail: warn}
target: {format: delta, path: ../data/out/stats, mode: overwrite}
"""


def _project(root: Path) -> None:
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    (root / "data" / "in").mkdir(parents=True)
    lines = ["id,ts,zone,amount,note"]
    lines += [f"{i},2024-01-{i % 5 + 1:02d} 10:{i % 60:02d}:00,{i % 7},{-1.0 if i % 97 == 0 else (i % 300) / 10},n{i}"
              for i in range(ROWS)]
    (root / "data" / "in" / "part-0.csv").write_text("\n".join(lines) + "\n")
    (root / "jobs").mkdir()
    (root / "jobs" / "warm_load.yaml").write_text(LOAD)
    (root / "jobs" / "warm_stats.yaml").write_text(STATS)


def warm_up(spark: Any) -> bool:
    """Run the throwaway jobs `ROUNDS` times on `spark` (quietly), then delete their project. True when every run
    succeeded."""
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job

    root = Path(tempfile.mkdtemp(prefix="etl-daemon-warmup-"))
    try:
        _project(root)
        project = Project.discover(root)
        for _ in range(ROUNDS):
            for name in ("warm_load", "warm_stats"):
                result = run_job(root / "jobs" / f"{name}.yaml", project=project, spark=spark, quiet=True)
                if not result.ok:
                    return False
    except Exception:  # noqa: BLE001 - warming is an optimisation: the daemon serves without it
        return False
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return True
