"""`etl scheduler` as a real process over a real project and state store: file bursts batched as Glue would, a
minutely schedule, SIGTERM, restart, SIGKILL mid-run, the lock against a second scheduler."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ETL = [sys.executable, "-c", "from etl_framework.cli import main; main()"]

LANDING = """workflow: landing
max_concurrent_runs: 1
crawlers:
  inbox: {path: ../data/inbox/, database: raw, table: inbox}
  ticks: {path: ../data/ticks/, database: raw, table: ticks}
triggers:
  - name: on_files
    type: event
    watch: {path: ../data/inbox/, pattern: "*.csv"}
    batch: {size: 10, window_seconds: 5}
    actions: [{crawler: inbox}]
  - name: every_minute
    type: scheduled
    schedule: cron(* * * * ? *)
    actions: [{crawler: ticks}]
"""


def make_project(root: Path, workflows: dict[str, str]) -> Path:
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "local.yaml").write_text("vars: {}\nstate: {path: ../.etl/state.db}\n")
    (root / "jobs").mkdir()
    for name, text in workflows.items():
        (root / "jobs" / f"{name}.yaml").write_text(text)
    for d in ("inbox", "ticks"):
        (root / "data" / d).mkdir(parents=True)
    (root / "data" / "ticks" / "t.csv").write_text("a,b\n1,2\n")
    return root


class Proc:
    """A scheduler process whose JSON log lines are read from its stderr file."""

    def __init__(self, root: Path, *args: str, name: str = "sched") -> None:
        self.err = root / f"{name}-{time.monotonic_ns()}.log"
        with self.err.open("wb") as f:
            self.p = subprocess.Popen(
                [*ETL, "--project-dir", str(root), "scheduler", "--log-json", *args], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=f, cwd=root,
            )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.err.read_text().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
        return out

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.lines()):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; scheduler log:\n{self.err.read_text()[-4000:]}")

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)


def runs(root: Path) -> list[dict[str, Any]]:
    db = root / ".etl" / "state.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM workflow_runs ORDER BY started_at, rowid").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [{**dict(r), "properties": json.loads(r["properties"])} for r in rows]


def wait_runs(root: Path, pred: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str,
              proc: Proc | None = None) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rs = runs(root)
        if pred(rs):
            return rs
        time.sleep(0.3)
    log = proc.err.read_text()[-4000:] if proc else ""
    raise AssertionError(f"timed out waiting for {what}; runs: {runs(root)}\n{log}")


def land(folder: Path, names: list[str]) -> None:
    for n in names:
        tmp = folder / f".{n}.tmp"
        tmp.write_text("id,value\n1,2\n")
        tmp.rename(folder / n)  # as a well-behaved producer lands a file


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


@pytest.mark.slow
def test_bursts_batch_like_glue_schedule_fires_sigterm_is_clean_and_a_restart_fires_nothing_twice(
    tmp_path: Path, procs: list[Proc]
) -> None:
    root = make_project(tmp_path / "proj", {"landing": LANDING})
    inbox = root / "data" / "inbox"
    s = Proc(root, "--grace-seconds", "30")
    procs.append(s)
    s.wait_for(lambda ls: any(x["message"] == "scheduler started" for x in ls), 30, "start")

    # 25 files in three bursts against size 10 / window 5 s: Glue starts 10, 10, then 5 after the window
    names = [f"f{i:02}.csv" for i in range(25)]
    land(inbox, names[:10])
    time.sleep(0.3)
    land(inbox, names[10:20])
    time.sleep(0.3)
    land(inbox, names[20:])

    def event_runs(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rs if r["started_by"] == "on_files"]

    rs = wait_runs(root, lambda rs: len(event_runs(rs)) >= 3 and all(r["state"] != "RUNNING" for r in rs), 60,
                   "3 event runs", s)
    ev = event_runs(rs)
    assert [len(r["properties"]["event_files"]) for r in ev] == [10, 10, 5]
    files = [Path(f).name for r in ev for f in r["properties"]["event_files"]]
    assert sorted(files) == names and len(set(files)) == 25  # every file exactly once
    assert all(r["state"] == "COMPLETED" for r in ev)
    batches = [x for x in s.lines() if x["message"].startswith("event batch")]
    assert [b["files"] for b in batches] == [10, 10, 5] and "window of 5s passed" in batches[2]["message"]
    # the scheduled trigger may fire too when a minute turns meanwhile (a slow machine): only its own runs
    started = [x for x in s.lines() if x["message"].startswith("run started")]
    assert all(x.get("workflow") == "landing" and x.get("trigger") in ("on_files", "every_minute") and x.get("run_id")
               for x in started)
    assert len([x for x in started if x["trigger"] == "on_files"]) == 3

    # the minutely schedule fires on the next minute
    rs = wait_runs(root, lambda rs: any(r["started_by"] == "every_minute" and r["state"] == "COMPLETED" for r in rs),
                   75, "a scheduled run", s)
    ticks = [r["properties"]["scheduled_time"] for r in rs if r["started_by"] == "every_minute"]
    assert ticks[0].endswith(":00+00:00")

    # SIGTERM: clean stop, exit 0
    s.p.send_signal(signal.SIGTERM)
    assert s.p.wait(60) == 0
    assert s.lines()[-1]["message"] == "scheduler stopped"

    # restart: the old files are not events again; a tick fires at most once
    before = {r["run_id"] for r in runs(root)}
    again = subprocess.run([*ETL, "--project-dir", str(root), "scheduler", "--once", "--log-json"],
                           check=False, capture_output=True, text=True, timeout=120, cwd=root)
    assert again.returncode == 0, again.stderr
    new = [r for r in runs(root) if r["run_id"] not in before]
    assert not [r for r in new if r["started_by"] == "on_files"]
    all_ticks = [r["properties"]["scheduled_time"] for r in runs(root) if r["started_by"] == "every_minute"]
    assert len(all_ticks) == len(set(all_ticks))
    assert "new file" not in again.stderr


def test_second_scheduler_on_the_same_store_refuses_and_names_the_first(tmp_path: Path, procs: list[Proc]) -> None:
    root = make_project(tmp_path / "proj", {"landing": LANDING})
    s = Proc(root)
    procs.append(s)
    s.wait_for(lambda ls: any(x["message"] == "scheduler started" for x in ls), 30, "start")
    second = subprocess.run([*ETL, "--project-dir", str(root), "scheduler"], check=False, capture_output=True,
                            text=True, timeout=60, cwd=root)
    assert second.returncode == 1
    assert f"another scheduler holds the state store {root / '.etl' / 'state.db'}: pid {s.p.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    status = subprocess.run([*ETL, "--project-dir", str(root), "scheduler", "--status", "--json"], check=False,
                            capture_output=True, text=True, timeout=60, cwd=root)
    data = json.loads(status.stdout)
    assert data["lock_holder"].startswith(f"pid {s.p.pid} on ")
    assert [(x["trigger"], x["expr"]) for x in data["schedules"]] == [("every_minute", "cron(* * * * ? *)")]
    assert data["schedules"][0]["next_tick"].endswith(":00+00:00")
    s.p.send_signal(signal.SIGINT)
    assert s.p.wait(30) == 0
    status = subprocess.run([*ETL, "--project-dir", str(root), "scheduler", "--status", "--json"], check=False,
                            capture_output=True, text=True, timeout=60, cwd=root)
    assert json.loads(status.stdout)["lock_holder"] is None


def test_scheduler_with_a_non_sqlite_state_backend_is_a_usage_error(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", {"landing": LANDING})
    (root / "conf" / "prod.yaml").write_text("state: {backend: dynamodb}\n")
    res = subprocess.run([*ETL, "--project-dir", str(root), "--env", "prod", "scheduler", "--once"],
                         check=False, capture_output=True, text=True, timeout=60, cwd=root)
    assert res.returncode == 2 and "state.backend is dynamodb" in res.stderr



INGEST_JOB = """job: ingest
sources:
  inbox:
    format: csv
    path: ../data/inbox/
    options: {header: true}
    schema: {id: long, value: long}
transform:
  - python: holdstep:only_batch_files
target:
  format: parquet
  path: ../data/out
  mode: append
"""

HOLD_STEP = '''"""Test device: keep only the rows of this run's batch files (run property event_files); hold while ../HOLD
exists, so that the test can kill the scheduler while the run is surely in the middle of its job."""
import time
from pathlib import Path

from pyspark.sql import functions as F


def only_batch_files(df, ctx):
    root = Path(__file__).resolve().parents[1]
    (root / "holding").write_text(ctx.workflow_run_id or "")
    deadline = time.time() + 120
    while (root / "HOLD").exists() and time.time() < deadline:
        time.sleep(0.2)
    files = [Path(f).name for f in ctx.get_run_property("event_files", [])]
    name = F.element_at(F.split(F.input_file_name(), "/"), -1)
    return df.where(name.isin(files))
'''

INGEST_WF = """workflow: landing
max_concurrent_runs: 1
jobs: {ingest: ingest.yaml}
triggers:
  - name: on_files
    type: event
    watch: {path: ../data/inbox/, pattern: "*.csv"}
    batch: {size: 2, window_seconds: 60}
    actions: [{job: ingest}]
"""


def wait_file(path: Path, timeout: float, proc: Proc) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name}; scheduler log:\n{proc.err.read_text()[-3000:]}"
        time.sleep(0.3)


@pytest.mark.slow
def test_sigkill_mid_run_then_restart_marks_the_run_resumable_and_no_event_is_lost_or_doubled(
    tmp_path: Path, procs: list[Proc]
) -> None:
    root = make_project(tmp_path / "proj", {"landing": INGEST_WF})
    (root / "conf" / "local.yaml").write_text(
        "vars: {}\nstate: {path: ../.etl/state.db}\nspark: {spark.sql.shuffle.partitions: 1}\n")
    (root / "jobs" / "ingest.yaml").write_text(INGEST_JOB)
    (root / "jobs" / "holdstep.py").write_text(HOLD_STEP)
    inbox = root / "data" / "inbox"
    (root / "HOLD").write_text("")
    s = Proc(root)
    procs.append(s)
    s.wait_for(lambda ls: any(x["message"] == "scheduler started" for x in ls), 30, "start")
    for i, name in enumerate(["a.csv", "b.csv", "c.csv", "d.csv"], start=1):
        (inbox / f".{name}").write_text(f"id,value\n{i},{i * 10}\n")
    (inbox / ".a.csv").rename(inbox / "a.csv")
    (inbox / ".b.csv").rename(inbox / "b.csv")
    wait_file(root / "holding", 120, s)  # the first run is inside its job
    (inbox / ".c.csv").rename(inbox / "c.csv")
    (inbox / ".d.csv").rename(inbox / "d.csv")
    s.wait_for(lambda ls: any("max_concurrent_runs (1) is reached" in x["message"] for x in ls), 30,
               "the second batch to wait for the running one")
    (first,) = runs(root)
    assert first["state"] == "RUNNING"

    # SIGKILL: the run dies with the scheduler; the restart marks it STOPPED (resumable) and starts the batch
    # that was waiting — not the killed run's batch again
    s.p.send_signal(signal.SIGKILL)
    s.p.wait(10)
    (root / "holding").unlink()
    s2 = Proc(root, "--grace-seconds", "2", name="restart")
    procs.append(s2)
    wait_file(root / "holding", 120, s2)
    killed, second = runs(root)
    assert killed["run_id"] == first["run_id"] and killed["state"] == "STOPPED"
    assert "ended without finishing" in killed["error"]
    assert any(x.get("run_id") == killed["run_id"] and "marked STOPPED" in x["message"] for x in s2.lines())
    assert [Path(f).name for f in killed["properties"]["event_files"]] == ["a.csv", "b.csv"]
    assert [Path(f).name for f in second["properties"]["event_files"]] == ["c.csv", "d.csv"]
    assert second["state"] == "RUNNING"

    # SIGTERM with a run still busy after the grace period: it is stopped and marked, the scheduler exits 0
    s2.p.send_signal(signal.SIGTERM)
    assert s2.p.wait(90) == 0
    (_, stopped) = runs(root)
    assert stopped["state"] == "STOPPED" and "grace period of 2s" in stopped["error"]
    assert any("stopped after the grace period" in x["message"] and x.get("run_id") == stopped["run_id"]
               for x in s2.lines())

    # both are resumable; once resumed every file's row is in the output exactly once
    (root / "HOLD").unlink()
    for run in (killed, stopped):
        status = subprocess.run([*ETL, "--project-dir", str(root), "workflow", "status", run["run_id"]],
                                check=False, capture_output=True, text=True, timeout=60, cwd=root)
        assert f"etl workflow resume {run['run_id']}" in status.stdout
        resumed = subprocess.run([*ETL, "--project-dir", str(root), "workflow", "resume", run["run_id"]],
                                 check=False, capture_output=True, text=True, timeout=180, cwd=root)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    import pyarrow.parquet as pq

    ids = sorted(pq.read_table(root / "data" / "out").column("id").to_pylist())
    assert ids == [1, 2, 3, 4]  # none lost, none doubled

    # a third start fires nothing: every file was an event once, every batch started once
    n = len(runs(root))
    again = subprocess.run([*ETL, "--project-dir", str(root), "scheduler", "--once"], check=False,
                           capture_output=True, text=True, timeout=120, cwd=root)
    assert again.returncode == 0, again.stderr
    assert len(runs(root)) == n


BASELINE_WF = """workflow: landing
crawlers:
  inbox: {path: ../data/inbox/, database: raw, table: inbox}
triggers:
  - name: on_files
    type: event
    watch: {path: ../data/inbox/, pattern: "*.csv"}
    batch: {size: 2, window_seconds: 60}
    actions: [{crawler: inbox}]
"""


@pytest.mark.slow
def test_first_start_fires_nothing_for_existing_files_and_backfill_fires_them(tmp_path: Path) -> None:
    """As an EventBridge rule: files already there when the trigger is first served are its baseline (logged);
    `etl scheduler --backfill` fires for them."""
    root = make_project(tmp_path / "proj", {"landing": BASELINE_WF})
    land(root / "data" / "inbox", ["old1.csv", "old2.csv"])

    def once(*extra: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*ETL, "--project-dir", str(root), "scheduler", "--once", "--log-json",
                              "--settle-seconds", "0.2", *extra], check=False, capture_output=True, text=True,
                             timeout=120, cwd=root)
        assert res.returncode == 0, res.stderr
        return res

    first = once()
    assert runs(root) == []
    said = [json.loads(x)["message"] for x in first.stderr.splitlines() if x.startswith("{")]
    assert any("2 file(s) already in" in m and "are the baseline" in m for m in said), said
    assert runs(root) == [] and once().returncode == 0 and runs(root) == []  # a restart: still the baseline
    back = once("--backfill")
    assert "--backfill: 2 file(s)" in back.stderr
    (run,) = runs(root)
    assert run["started_by"] == "on_files" and sorted(Path(f).name for f in run["properties"]["event_files"]) == [
        "old1.csv", "old2.csv"]
