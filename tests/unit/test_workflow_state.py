"""The workflow run store across real processes: the max_concurrent_runs guard (BEGIN IMMEDIATE + owner liveness),
orphaned runs after a SIGKILL, run properties written by another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from etl_framework.state.workflows import (
    ConcurrentRunsExceeded,
    RunProperties,
    WorkflowStore,
    mark_orphaned_runs,
    owner_alive,
    statistics_of,
)
from tests.conftest import REPO

HOLDER = textwrap.dedent("""
    import sys, time
    from etl_framework.state.workflows import WorkflowStore, ConcurrentRunsExceeded
    store = WorkflowStore(sys.argv[1])
    try:
        run_id = store.begin_run("wf", max_concurrent_runs=int(sys.argv[2]), nodes={"a": "job", "c": "crawler"},
                                 properties={})
    except ConcurrentRunsExceeded as e:
        print("REFUSED", e.running[0], flush=True)
        sys.exit(1)
    store.update_node(run_id, "a", state="RUNNING", attempts=1)
    store.update_node(run_id, "c", state="RUNNING", attempts=1)
    print("RUNNING", run_id, flush=True)
    time.sleep(float(sys.argv[3]))
""")


def holder(db: Path, limit: int = 1, hold: float = 30) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db), str(limit), str(hold)], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def test_second_process_is_refused_with_the_running_run_id_then_allowed_after_a_crash(db: Path) -> None:
    first = holder(db)
    line = first.stdout.readline().split()
    assert line[0] == "RUNNING"
    run_id = line[1]
    second = holder(db, hold=0)
    out, _ = second.communicate(timeout=30)
    assert second.returncode == 1 and out.split() == ["REFUSED", run_id]

    first.send_signal(signal.SIGKILL)
    first.wait()
    # The dead owner's RUNNING record is left behind but does not hold the slot: no stale lock.
    store = WorkflowStore(db)
    assert store.get_run(run_id)["state"] == "RUNNING" and store.get_run(run_id)["owner_alive"] is False
    third = holder(db, hold=0)
    out, _ = third.communicate(timeout=30)
    assert third.returncode == 0 and out.startswith("RUNNING")


def test_processes_racing_for_one_slot_exactly_one_wins(db: Path) -> None:
    WorkflowStore(db).close()  # schema exists, so the race is on the guard alone
    procs = [holder(db, hold=3) for _ in range(4)]
    outs = [p.stdout.readline().split() for p in procs]
    for p in procs:
        p.kill()
        p.wait()
    assert sorted(o[0] for o in outs) == ["REFUSED", "REFUSED", "REFUSED", "RUNNING"]
    winner = next(o[1] for o in outs if o[0] == "RUNNING")
    assert all(o[1] == winner for o in outs if o[0] == "REFUSED")


def test_limit_two_allows_two(db: Path) -> None:
    store = WorkflowStore(db)
    a = store.begin_run("wf", max_concurrent_runs=2, nodes={}, properties={})
    b = store.begin_run("wf", max_concurrent_runs=2, nodes={}, properties={})
    with pytest.raises(ConcurrentRunsExceeded) as e:
        store.begin_run("wf", max_concurrent_runs=2, nodes={}, properties={})
    assert e.value.running == [a, b] and e.value.exit_code == 1
    store.begin_run("other", max_concurrent_runs=1, nodes={}, properties={})  # limits are per workflow


def test_mark_orphaned_runs_marks_only_dead_owners(db: Path) -> None:
    dead = holder(db, limit=5)
    dead_id = dead.stdout.readline().split()[1]
    live = holder(db, limit=5)
    live_id = live.stdout.readline().split()[1]
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    store = WorkflowStore(db)
    try:
        listed = {r["run_id"]: r["owner_alive"] for r in store.list_runs()}
        assert listed == {dead_id: False, live_id: True}
        assert mark_orphaned_runs(store) == [dead_id]
        run = store.get_run(dead_id)
        assert run["state"] == "STOPPED" and f"etl workflow resume {dead_id}" in run["error"]
        assert {n["node"]: n["state"] for n in run["nodes"]} == {"a": "STOPPED", "c": "CANCELLED"}
        assert run["statistics"]["StoppedActions"] == 2
        assert store.get_run(live_id)["state"] == "RUNNING"
        assert mark_orphaned_runs(store) == []
    finally:
        live.kill()
        live.wait()


def test_liveness_checks_pid_start_time_not_just_pid() -> None:
    me = {"owner_host": os.uname().nodename, "owner_pid": os.getpid(), "heartbeat_at": 0.0}
    from etl_framework.state.workflows import process_start

    assert owner_alive({**me, "owner_start": process_start(os.getpid())})
    assert not owner_alive({**me, "owner_start": "1"})  # same pid, other process (pid reuse)
    assert not owner_alive({**me, "owner_pid": 2**22 + 7, "owner_start": None})
    # another host: the heartbeat lease decides
    other = {"owner_host": "elsewhere", "owner_pid": 1, "owner_start": "1"}
    assert owner_alive({**other, "heartbeat_at": time.time()})
    assert not owner_alive({**other, "heartbeat_at": time.time() - 3600})


def test_run_properties_put_from_another_process(db: Path) -> None:
    store = WorkflowStore(db)
    run_id = store.begin_run("wf", max_concurrent_runs=None, nodes={}, properties={"region": "eu"})
    code = (
        "import sys; from etl_framework.state.workflows import RunProperties as R;"
        "p = R(sys.argv[1], sys.argv[2]); p.put('count', p.get('region') + '-1'); p.put({'x': 1})"
    )
    subprocess.run([sys.executable, "-c", code, str(db), run_id], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    props = RunProperties(store, run_id)
    assert props.get_all() == {"region": "eu", "count": "eu-1", "x": 1}
    assert props["x"] == 1 and "count" in props and props.get("missing", 5) == 5


def test_statistics_use_glue_names_and_skip_copied_nodes() -> None:
    stats = statistics_of([
        {"state": "SUCCEEDED"}, {"state": "FAILED"}, {"state": "TIMEOUT"}, {"state": "ERROR"},
        {"state": "STOPPED"}, {"state": "CANCELLED"}, {"state": "WAITING"}, {"state": "RUNNING"},
        {"state": "STARTING"}, {"state": None}, {"state": "SUCCEEDED", "copied_from": "wr_x"},
    ])
    assert stats == {
        "TotalActions": 9, "RunningActions": 2, "SucceededActions": 1, "FailedActions": 1, "TimeoutActions": 1,
        "StoppedActions": 2, "ErroredActions": 1, "WaitingActions": 1,
    }


def test_run_properties_for_a_job_in_another_process(db: Path) -> None:
    from etl_framework.state.workflows import run_properties_for

    store = WorkflowStore(db)
    run_id = store.begin_run("wf", max_concurrent_runs=None, nodes={}, properties={"k": 1})
    assert run_properties_for(db, None) is None and run_properties_for(db, "wr_unknown") is None
    props = run_properties_for(db, run_id)
    props.put("x", 2)
    props.update({"y": 3, "z": 4})
    assert store.get_properties(run_id) == {"k": 1, "x": 2, "y": 3, "z": 4} and props.as_dict()["z"] == 4


SIGNALLED = textwrap.dedent("""
    import sys
    from etl_framework.cli.workflow import stop_on_signals
    from etl_framework.state.workflows import WorkflowStore
    from tests.unit.test_workflow_fakes import FakeExecutor, run_engine, workflow
    cfg = workflow([{"name": "start", "type": "on_demand", "actions": [{"job": "a"}]},
                    {"name": "then", "type": "conditional", "conditions": [{"job": "a", "state": "SUCCEEDED"}],
                     "actions": [{"job": "b"}]}], ["a", "b"])
    ex = FakeExecutor({"a": [("hang",)]})
    ex.hooks["a"] = lambda task: print("RUNNING", task.run_id, flush=True)
    run = run_engine(cfg, WorkflowStore(sys.argv[1]), ex, progress=lambda m: print(m, file=sys.stderr, flush=True))
    with stop_on_signals(run):
        res = run.start()
    print("ENDED", res.state, flush=True)
""")


def test_sigterm_stops_the_run_cleanly_and_it_is_resumable(db: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SIGNALLED, str(db)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    first = proc.stdout.readline().split()
    assert first[0] == "RUNNING", proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    out, errs = proc.communicate(timeout=30)
    assert out.split() == ["ENDED", "STOPPED"] and proc.returncode == 0, errs
    assert "received SIGTERM: stopping the run" in errs
    run = WorkflowStore(db).get_run(first[1])
    assert run["state"] == "STOPPED" and run["error"] == "received SIGTERM"
    assert {n["node"]: n["state"] for n in run["nodes"]} == {"a": "STOPPED", "b": None}
    assert next(t for t in run["triggers"] if t["trigger"] == "then")["reason"].startswith("not fired: the run was")
