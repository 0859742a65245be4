"""`etl workflow run|resume|status` as a user runs them (real CLI processes, real SQLite, real crawlers; no Spark:
these workflows are made of crawlers, which are pure Python)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

WORKFLOW = """
workflow: crawl_chain
max_concurrent_runs: 1
run_properties: {region: eu}
crawlers:
  raw_a: {path: "${env.raw_root}/a/", database: raw}
  raw_b: {path: "${env.raw_root}/b/", database: raw}
  raw_c: {path: "${env.raw_root}/c/", database: raw}
triggers:
  - {name: start, type: on_demand, actions: [{crawler: raw_a}]}
  - name: after_a
    type: conditional
    conditions: [{crawler: raw_a, state: SUCCEEDED}]
    actions: [{crawler: raw_b}]
  - name: after_b
    type: conditional
    conditions: [{crawler: raw_b, state: SUCCEEDED}]
    actions: [{crawler: raw_c}]
  - name: on_b_failed
    type: conditional
    conditions: [{crawler: raw_b, state: FAILED}]
    actions: [{crawler: raw_c}]
"""


def etl(proj: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("ETL_PROJECT_DIR", None)
    return subprocess.run([sys.executable, "-c", "from etl_framework.cli import main; main()", *args],
                          check=False, cwd=proj, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "local.yaml").write_text(
        "vars: {raw_root: ../data/raw}\nstate: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    (root / "jobs").mkdir()
    (root / "jobs" / "crawl_chain.yaml").write_text(WORKFLOW)
    for name in ("a", "c"):
        d = root / "data" / "raw" / name
        d.mkdir(parents=True)
        (d / "part-0.csv").write_text("id,name\n1,x\n2,y\n")
    return root


def nodes(record: dict) -> dict[str, str | None]:
    return {n["node"]: n["state"] for n in record["nodes"]}


def test_failing_crawler_mid_workflow_then_resume_reruns_only_failed_and_downstream(proj: Path) -> None:
    r = etl(proj, "workflow", "run", "jobs/crawl_chain.yaml", "--property", "day=2026-01-02", "--json")
    assert r.returncode == 1, r.stderr
    rec = json.loads(r.stdout)
    assert rec["state"] == "COMPLETED"
    assert nodes(rec) == {"raw_a": "SUCCEEDED", "raw_b": "FAILED", "raw_c": "SUCCEEDED"}
    assert rec["statistics"]["FailedActions"] == 1 and rec["statistics"]["TotalActions"] == 3
    assert rec["properties"] == {"region": "eu", "day": "2026-01-02"}
    trig = {t["trigger"]: t["state"] for t in rec["triggers"]}
    assert trig == {"start": "FIRED", "after_a": "FIRED", "on_b_failed": "FIRED", "after_b": "NOT_FIRED"}
    assert "raw_b FAILED" in r.stderr and f"etl workflow resume {rec['run_id']}" in r.stderr
    assert "crawler raw_b RUNNING" in r.stderr  # progress on stderr, JSON alone on stdout

    status = etl(proj, "workflow", "status")
    assert status.returncode == 0
    assert rec["run_id"] in status.stdout and "raw_b" in status.stdout and "does not exist" in status.stdout
    assert "hint: resume it" in status.stdout
    plan = etl(proj, "plan", "jobs/crawl_chain.yaml", "--run", rec["run_id"], "--format", "dot")
    assert plan.returncode == 0, plan.stderr
    assert r"raw_b\nFAILED" in plan.stdout and r"raw_a\nSUCCEEDED" in plan.stdout

    (proj / "data" / "raw" / "b").mkdir()
    (proj / "data" / "raw" / "b" / "x.csv").write_text("k\n1\n")
    r2 = etl(proj, "workflow", "resume", rec["run_id"], "--json")
    assert r2.returncode == 0, r2.stderr
    rec2 = json.loads(r2.stdout)
    assert rec2["previous_run_id"] == rec["run_id"]
    assert nodes(rec2) == {"raw_a": "SUCCEEDED", "raw_b": "SUCCEEDED", "raw_c": "SUCCEEDED"}
    ran = {n["node"] for n in rec2["nodes"] if not n["copied_from"]}
    assert ran == {"raw_b", "raw_c"}  # raw_a is copied, not re-run
    assert rec2["statistics"]["TotalActions"] == 2 and rec2["statistics"]["SucceededActions"] == 2

    listing = etl(proj, "workflow", "status", "--list", "--json")
    runs = json.loads(listing.stdout)
    assert [x["run_id"] for x in runs] == [rec2["run_id"], rec["run_id"]]


def test_workflow_by_name_and_status_errors(proj: Path) -> None:
    r = etl(proj, "workflow", "status")
    assert r.returncode == 2 and "no workflow runs yet" in r.stderr
    r = etl(proj, "workflow", "status", "wr_nope")
    assert r.returncode == 2 and "no workflow run wr_nope" in r.stderr
    r = etl(proj, "workflow", "run", "no_such_workflow")
    assert r.returncode == 2 and "crawl_chain" in r.stderr  # names the workflows it knows
    r = etl(proj, "workflow", "resume", "wr_nope")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_bad_workflow_file_is_a_config_error(proj: Path) -> None:
    (proj / "jobs" / "broken.yaml").write_text(
        "workflow: broken\ncrawlers: {}\ntriggers:\n  - {name: start, type: on_demand, actions: [{job: ghost}]}\n")
    r = etl(proj, "workflow", "run", "jobs/broken.yaml")
    assert r.returncode == 2, r.stderr
    assert "broken.yaml:" in r.stderr and "ghost" in r.stderr and "Traceback" not in r.stderr
