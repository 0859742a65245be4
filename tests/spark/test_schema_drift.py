"""Schema drift, as a new user met it (issue 14): a job with quarantine rules; the feed gains a column.

For every format: with `schema_evolution: fail` nothing commits and the message names the column; with
`add_columns` the target, the quarantine and the staged rows all carry it; a run stopped after its target commit
and before its quarantine commit (a failure there, then a real SIGKILL) is reported as such (never "target not
changed"), `etl resume` finishes exactly the rest, and the next day's run is not blocked. Every row lands exactly once (read back without Spark)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.spark.test_quality_stage import RULES
from tests.spark.test_runtime_helpers import delta_rows, iceberg_rows, parquet_rows
from tests.spark.test_table_contract import folder_bytes

DAY1 = ["1,10.0,a,Z1", "5,8.0,b,Z1", "2,-5.0,a,Z1", "3,12.0,,Z2"]  # 2 and 3 break quarantine rules
DAY2 = ["11,10.0,a,Z1,C11", "12,-1.0,b,Z1,C12", "13,7.0,b,Z2,C13"]  # 12 breaks fare_range
DAY3 = ["21,3.0,a,Z1,C21", "22,4.0,,Z1,C22"]  # 22 breaks vendor_present
DAY4 = ["31,6.0,b,Z2,C31", "32,-2.0,b,Z2,C32"]  # 32 breaks fare_range
MODE = {"delta": "merge", "iceberg": "merge", "parquet": "append"}  # Parquet has no merge


def land(root: Path, name: str, rows: list[str], coupon: bool) -> None:
    (root / "in").mkdir(parents=True, exist_ok=True)
    header = "trip_id,fare,vendor,zone" + (",coupon" if coupon else "")
    (root / "in" / name).write_text(header + "\n" + "".join(r + "\n" for r in rows))


def write_job(root: Path, fmt: str, coupon: bool, evolution: str) -> Path:
    schema = {"trip_id": "long", "fare": "double", "vendor": "string", "zone": "string"}
    if coupon:
        schema["coupon"] = "string"
    spec = {
        "job": "drift",
        "sources": {"trips": {"format": "csv", "path": "../in", "options": {"header": True}, "schema": schema,
                              "incremental": {"mode": "files"}}},
        "quality": [r for r in RULES if r.get("on_fail") != "warn"],
        "target": {"format": fmt, "path": "../out", "mode": MODE[fmt], "schema_evolution": evolution,
                   **({"merge_keys": ["trip_id"]} if MODE[fmt] == "merge" else {})},
    }
    path = root / "jobs" / "drift.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def target_rows(root: Path, fmt: str) -> list[dict[str, Any]]:
    out = root / "out"
    if fmt == "delta":
        return delta_rows(out)
    if fmt == "parquet":
        return parquet_rows(out)
    return iceberg_rows(out, root / ".etl" / "iceberg_catalog.db")


def cli(root: Path, *args: str) -> int:
    from etl_framework.cli import cli as group
    from etl_framework.cli.common import run_cli

    return run_cli(group, ["--project-dir", str(root), *args])


def last_run(root: Path) -> dict[str, Any]:
    from etl_framework.state.runs import SqliteRunStore

    store = SqliteRunStore(root / ".etl" / "state.db")
    try:
        return store.get_run(store.list_runs(limit=1)[0]["run_id"]) or {}
    finally:
        store.close()


@pytest.mark.parametrize("fmt", ["delta", "parquet", "iceberg"])
def test_a_new_column_in_the_feed(spark: Any, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from etl_framework.stages import quality

    root = tmp_path / "p"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    land(root, "day1.csv", DAY1, coupon=False)
    job = write_job(root, fmt, coupon=False, evolution="fail")
    assert cli(root, "run", "--no-report", str(job)) == 0
    quarantine = root / "out_quarantine"

    def committed() -> tuple[Any, ...]:
        """Target and quarantine, byte by byte; rows a failed run staged (uncommitted, hidden) aside."""
        q = {k: v for k, v in (folder_bytes(quarantine) or {}).items() if not k.startswith("_etl_staging")}
        return folder_bytes(root / "out"), q

    before = committed()

    # the feed gains `coupon`; with schema_evolution: fail nothing commits, and the message names the column
    land(root, "day2.csv", DAY2, coupon=True)
    job = write_job(root, fmt, coupon=True, evolution="fail")
    assert cli(root, "run", "--no-report", str(job)) == 1
    failed = last_run(root)
    assert failed["error_stage"] == "write" and "coupon" in failed["error"] and "nothing was committed" in \
        failed["error"]
    assert committed() == before

    # add_columns, and the run stops between its target commit and its quarantine commit
    job = write_job(root, fmt, coupon=True, evolution="add_columns")

    def crash(state: Any) -> None:
        raise RuntimeError("killed between the target and the quarantine commit")

    monkeypatch.setattr(quality, "write_quarantine", crash)
    assert cli(root, "run", "--no-report", str(job)) == 1
    monkeypatch.undo()
    stopped = last_run(root)
    assert "the target committed" in stopped["error"] and "not changed" not in stopped["error"]
    assert f"etl resume {stopped['run_id']}" in stopped["error"]
    assert (quarantine / "_etl_staging" / stopped["run_id"]).is_dir()  # the staged rows wait, with coupon
    committed_after_stop = folder_bytes(root / "out")

    assert cli(root, "resume", stopped["run_id"]) == 0
    assert folder_bytes(root / "out") == committed_after_stop  # the target is not written again
    assert not (quarantine / "_etl_staging" / stopped["run_id"]).exists()

    # the next day: a real `etl run` process killed (SIGKILL) right after its target commit, then `etl resume`
    land(root, "day3.csv", DAY3, coupon=True)
    killed = subprocess.run([str(Path(sys.executable).parent / "etl"), "--project-dir", str(root), "run",
                             "--no-report", str(job)], env={**os.environ, "ETL_FAULT_KILL_AT": "write.committed",
                                                            "ETL_QUIET": "1"},
                            capture_output=True, timeout=300, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    victim = last_run(root)
    assert victim["status"] == "RUNNING"  # its process is gone; resume sees that
    assert cli(root, "resume", victim["run_id"]) == 0
    assert not (quarantine / "_etl_staging" / victim["run_id"]).exists()

    # and the day after is not blocked
    land(root, "day4.csv", DAY4, coupon=True)
    assert cli(root, "run", "--no-report", str(job)) == 0

    rows = {r["trip_id"]: r for r in target_rows(root, fmt)}
    assert sorted(rows) == [1, 5, 11, 13, 21, 31]  # every good row, once
    assert [rows[i].get("coupon") for i in sorted(rows)] == [None, None, "C11", "C13", "C21", "C31"]
    q = delta_rows(quarantine)
    assert sorted(r["trip_id"] for r in q) == [2, 3, 12, 22, 32]  # every quarantined row, once
    assert {r["trip_id"]: r.get("coupon") for r in q} == {2: None, 3: None, 12: "C12", 22: "C22", 32: "C32"}


def test_a_changed_column_type_stops_before_any_commit(spark: Any, tmp_path: Path) -> None:
    from etl_framework.config.model import EnvConfig
    from tests.spark.test_quality_stage import job, run, write_csv

    env = EnvConfig.model_validate({"catalog": {"path": str(tmp_path / ".etl" / "catalog.db")}})
    src, out = tmp_path / "in", tmp_path / "out"
    write_csv(src, ["1,10.0,a,Z1"])
    cfg = job(src, out, [])
    cfg.quality = []
    assert run(spark, cfg, tmp_path, env_config=env).ok
    before = folder_bytes(out)
    cfg.sources["trips"].schema_["fare"] = "string"
    r = run(spark, cfg, tmp_path, env_config=env)
    assert r.exit_code == 1 and r.error_stage == "write"
    assert "column type changed: fare (double in the table, string in the data)" in r.error
    assert folder_bytes(out) == before
