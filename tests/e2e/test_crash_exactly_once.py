"""SPEC §6 crash test: an incremental job over many small files is killed with SIGKILL at many moments — at
named points before, during and right after the write and its commit, and at random times — then re-run; after
every kill and re-run each input row is in the target exactly once (checked with delta-rs, the Parquet manifest
or pyiceberg, independent of Spark), for Delta, Parquet and Iceberg targets.

The killed runs are real `etl run` processes (own JVM, whole process group killed); the re-runs use the shared
test session to keep the suite fast. ETL_CRASH_POINTS sets how many kills (default 20).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_framework.config.model import EnvConfig, JobConfig
from tests.spark.test_glue_cloud_job import moto_url  # noqa: F401 - a moto server in its own process
from tests.spark.test_runtime_helpers import delta_rows, iceberg_rows, parquet_rows, run

pytestmark = pytest.mark.slow

ETL = str(Path(sys.executable).parent / "etl")
NAMED = ["bookmark.planned", "write.start", "parquet.staged", "parquet.moved", "parquet.committed",
         "write.committed", "bookmark.before_cache", "bookmark.cached"]
ROWS_PER_FILE = 25


def land(src: Path, index: int) -> None:
    ids = range(index * ROWS_PER_FILE, (index + 1) * ROWS_PER_FILE)
    day = f"2024-01-{index % 5 + 1:02d}"
    body = "".join(f"{i},{day} 10:00:00,{i % 7},{i * 0.5}\n" for i in ids)
    (src / f"part-{index:04d}.csv").write_text("trip_id,pickup_ts,zone_id,fare\n" + body)


def make(root: Path, fmt: str, target: str | None = None, endpoint: str | None = None
         ) -> tuple[Path, JobConfig, EnvConfig]:
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "in").mkdir()
    aws = {"aws": {"endpoint_url": endpoint, "region": "us-east-1"}} if endpoint else {}
    (root / "conf" / "local.yaml").write_text(yaml.safe_dump({"state": {"path": "../.etl/state.db"},
                                                              "catalog": {"path": "../.etl/catalog.db"}, **aws}))
    spec = {
        "job": "crashy",
        "sources": {"trips": {"format": "csv", "path": str(root / "in"), "options": {"header": True},
                              "incremental": {"mode": "files"},
                              "schema": {"trip_id": "long", "pickup_ts": "timestamp", "zone_id": "int",
                                         "fare": "double"}}},
        "transform": [{"with_columns": {"day": "to_date(pickup_ts)"}}],
        "target": {"format": fmt, "path": target or str(root / "out"), "partition_by": ["day"], "mode": "append"},
    }
    job_file = root / "jobs" / "crashy.yaml"
    job_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = EnvConfig.model_validate({"state": {"path": str(root / ".etl" / "state.db")},
                                    "catalog": {"path": str(root / ".etl" / "catalog.db")}, **aws})
    return job_file, JobConfig.model_validate(spec), env


def killed_run(root: Path, job_file: Path, point: str | None, delay: float | None) -> str:
    """Start `etl run` and kill it at a named fault point or after `delay` seconds; returns how it ended."""
    env = {**os.environ, "ETL_QUIET": "1"}
    if point:
        env["ETL_FAULT_KILL_AT"] = point
    proc = subprocess.Popen([ETL, "--project-dir", str(root), "run", str(job_file), "--no-report"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        proc.wait(timeout=delay if delay is not None else 300)
    except subprocess.TimeoutExpired:
        pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        return "killed (timer)"
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the JVM child of a self-killed driver
    except ProcessLookupError:
        pass
    if proc.returncode == -signal.SIGKILL:
        return "killed (fault point)"
    tail = (proc.stderr.read().decode(errors="replace").strip().splitlines() or [""])[-1] if proc.stderr else ""
    return f"exited {proc.returncode} ({tail[:300]})"


def committed_rows(root: Path, fmt: str, target: str | None = None, storage: Any = None) -> list[dict[str, Any]]:
    """The target as a reader that is not Spark sees it: delta-rs, the Parquet manifest, pyiceberg."""
    if target is not None:  # on S3: pyarrow's S3 client through the manifest, pyiceberg with the moto endpoint
        if fmt == "parquet":
            import pyarrow.dataset as ds

            manifest = json.loads(storage.read_text(f"{target}/_etl_manifest.json"))
            fs, base = storage.arrow_fs(target)
            files = [f"{base}/{f['path']}" for f in manifest["files"]]
            return ds.dataset(files, filesystem=fs, format="parquet").to_table().to_pylist()
        return iceberg_rows(target, root / ".etl" / "iceberg_catalog.db", properties=storage.pyiceberg_properties())
    if fmt == "delta":
        return delta_rows(root / "out")
    if fmt == "parquet":
        return parquet_rows(root / "out")
    return iceberg_rows(root / "out", root / ".etl" / "iceberg_catalog.db")


@pytest.mark.parametrize("fmt", ["delta", "parquet", "iceberg"])
def test_every_row_exactly_once_across_kills(spark: Any, tmp_path: Path, fmt: str) -> None:
    rng = random.Random({"delta": 42, "parquet": 43, "iceberg": 44}[fmt])
    root = tmp_path / "p"
    job_file, cfg, env = make(root, fmt)
    landed = 0
    outcomes: list[str] = []
    points = [p for p in NAMED if fmt == "parquet" or not p.startswith("parquet.")]
    # every named point, then random moments (ETL_CRASH_POINTS in all, shared by the three formats)
    kills = max(len(points) + 2, int(os.environ.get("ETL_CRASH_POINTS", "20")) // 3)
    for k in range(kills):
        for _ in range(rng.randint(1, 3)):  # new input lands before every attempt
            land(root / "in", landed)
            landed += 1
        if k < len(points):
            point, delay = points[k], None
        else:
            point, delay = None, rng.uniform(1.0, 20.0)
        outcomes.append(f"{point or f'{delay:.1f}s'}: {killed_run(root, job_file, point, delay)}")
        t0 = time.monotonic()
        r = run(spark, cfg, root / ".etl" / "state.db", env_config=env)
        assert r.ok, (outcomes[-1], r.error_stage, r.error)
        rows = committed_rows(root, fmt)
        ids = [row["trip_id"] for row in rows]
        assert len(ids) == len(set(ids)), f"duplicates after {outcomes[-1]}"
        assert sorted(ids) == list(range(landed * ROWS_PER_FILE)), f"rows missing after {outcomes[-1]}"
        outcomes[-1] += f", re-run ok in {time.monotonic() - t0:.1f}s"
    print(f"\n{fmt}: {kills} kill points, every row exactly once after each re-run:\n  " + "\n  ".join(outcomes))


S3_POINTS = {"parquet": ["write.start", "parquet.staged", "parquet.moved", "parquet.committed", "write.committed",
                         "bookmark.before_cache"],
             "iceberg": ["write.start", "write.committed", "bookmark.before_cache"]}


@pytest.mark.parametrize("fmt", ["parquet", "iceberg"])
def test_every_row_exactly_once_across_kills_on_s3(spark: Any, tmp_path: Path, moto_url: str, fmt: str,  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on `s3a://` (moto in its own process): the commit points that matter, then a random moment."""
    import boto3

    from etl_framework.tables import Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bucket = f"crash-{fmt}"
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1").create_bucket(Bucket=bucket)
    target = f"s3a://{bucket}/lake/out"
    rng = random.Random(45)
    root = tmp_path / "p"
    job_file, cfg, env = make(root, fmt, target, moto_url)
    storage = Storage(endpoint_url=moto_url)
    landed = 0
    outcomes: list[str] = []
    for point in [*S3_POINTS[fmt], None]:
        for _ in range(rng.randint(1, 2)):
            land(root / "in", landed)
            landed += 1
        delay = None if point else rng.uniform(8.0, 20.0)  # inside the write: a JVM takes ~8 s to start
        outcomes.append(f"{point or f'{delay:.1f}s'}: {killed_run(root, job_file, point, delay)}")
        r = run(spark, cfg, root / ".etl" / "state.db", env_config=env)
        assert r.ok, (outcomes[-1], r.error_stage, r.error)
        ids = [row["trip_id"] for row in committed_rows(root, fmt, target, storage)]
        assert len(ids) == len(set(ids)), f"duplicates after {outcomes[-1]}"
        assert sorted(ids) == list(range(landed * ROWS_PER_FILE)), f"rows missing after {outcomes[-1]}"
    print(f"\n{fmt} on s3a: {len(outcomes)} kills, every row exactly once after each re-run:\n  "
          + "\n  ".join(outcomes))
