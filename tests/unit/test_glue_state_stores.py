"""One state-store suite, parametrized over both backends: SQLite (local) and DynamoDB (a real moto server on
127.0.0.1). Runs and stage checkpoints, target write locks, bookmarks, workflow runs, run properties and the
cross-process `max_concurrent_runs` limit must behave the same on both."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etl_framework.incremental import Bookmark, SourceCursor
from etl_framework.state.base import TargetLocked
from etl_framework.state.workflows import ConcurrentRunsExceeded

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.server import DomainDispatcherApplication, ThreadedMotoServer, create_backend_app
    from werkzeug.serving import make_server

    class SerialMotoServer(ThreadedMotoServer):
        """A moto server that handles one request at a time. DynamoDB serializes conditional transactions;
        moto under a threaded server does not (two racing TransactWriteItems can both pass their condition),
        which would make the race tests below test moto instead of our conditional writes."""

        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            self._server = make_server(self._ip_address, self._port, app, False,
                                       request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    server = SerialMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def env_config(backend: str, tmp_path: Path, moto_url: str) -> Any:
    from etl_framework.config.model import EnvConfig

    return EnvConfig.model_validate({
        "state": {"backend": backend, "path": str(tmp_path / "state.db"),
                  "table_prefix": f"t{uuid.uuid4().hex[:8]}_"},
        "aws": {"region": REGION, "endpoint_url": moto_url},
    })


@pytest.fixture(params=["sqlite", "dynamodb"])
def env(request: pytest.FixtureRequest, tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    return env_config(request.param, tmp_path, moto_url)


@pytest.fixture
def runs(env: Any) -> Any:
    from etl_framework.state.runs import open_run_store

    return open_run_store(env)


@pytest.fixture
def bookmarks(env: Any) -> Any:
    from etl_framework.state.dynamodb import open_bookmark_store

    return open_bookmark_store(env)


@pytest.fixture
def workflows(env: Any) -> Any:
    from etl_framework.state.dynamodb import open_workflow_store

    return open_workflow_store(env)


def test_the_backend_is_the_one_configured(env: Any, runs: Any, workflows: Any, bookmarks: Any) -> None:
    names = {type(runs).__name__, type(workflows).__name__, type(bookmarks).__name__}
    if env.state.backend == "dynamodb":
        assert names == {"DynamoRunStore", "DynamoWorkflowStore", "DynamoBookmarkStore"}
    else:
        assert names == {"SqliteRunStore", "SqliteWorkflowStore", "SqliteBookmarkStore"}
    from etl_framework.state.workflows import SqliteWorkflowStore

    assert not isinstance(workflows, SqliteWorkflowStore) or env.state.backend == "sqlite"  # no backend subclasses another


# ----------------------------------------------------------------------------------------- runs and stages


def test_run_record_with_stages_details_and_metrics(runs: Any) -> None:
    runs.create_run({"run_id": "jr_1", "job": "j", "env": "prod", "started_at": "2026-11-25T10:00:00.000Z",
                     "params": {"min_distance": 0.5}})
    runs.start_stage("jr_1", "extract", 1, "2026-11-25T10:00:01.000Z")
    runs.finish_stage("jr_1", "extract", status="SUCCEEDED", duration_s=1.5, metrics={"rows_in": 10})
    runs.update_stage_metrics("jr_1", "extract", {"files": 2})
    runs.finish_stage("jr_1", "quality", status="SKIPPED", seq=3)  # never started
    runs.start_stage("jr_1", "write", 4, "2026-11-25T10:00:05.000Z")
    runs.set_detail("jr_1", "quality", [{"rule": "r", "success": True}])
    runs.set_detail("jr_1", "bookmarks", {"v": 1})
    runs.update_run("jr_1", status="FAILED", error="boom", error_stage="write", exit_code=1,
                    ended_at="2026-11-25T10:00:09.000Z", duration_s=9.0)
    run = runs.get_run("jr_1")
    assert (run["status"], run["error"], run["error_stage"], run["exit_code"]) == ("FAILED", "boom", "write", 1)
    assert run["params"] == {"min_distance": 0.5} and run["duration_s"] == 9.0
    assert run["details"] == {"quality": [{"rule": "r", "success": True}], "bookmarks": {"v": 1}}
    stages = {s["stage"]: s for s in run["stages"]}
    assert [s["stage"] for s in run["stages"]] == ["extract", "quality", "write"]
    assert stages["extract"]["metrics"] == {"rows_in": 10, "files": 2}
    assert stages["extract"]["duration_s"] == 1.5 and stages["extract"]["status"] == "SUCCEEDED"
    assert stages["quality"]["status"] == "SKIPPED" and stages["quality"]["started_at"] is None
    assert stages["write"]["status"] == "RUNNING"
    assert runs.get_run("nope") is None
    with pytest.raises(ValueError):
        runs.update_run("jr_1", colour="red")


def test_stage_attempts_are_kept_apart(runs: Any) -> None:
    runs.create_run({"run_id": "jr_a", "job": "j", "started_at": "2026-11-25T10:00:00.000Z"})
    runs.start_stage("jr_a", "write", 4, "t1", attempt=1)
    runs.finish_stage("jr_a", "write", status="FAILED", error="disk", attempt=1)
    runs.start_stage("jr_a", "write", 4, "t2", attempt=2)
    runs.finish_stage("jr_a", "write", status="SUCCEEDED", attempt=2)
    got = [(s["attempt"], s["status"]) for s in runs.get_run("jr_a")["stages"]]
    assert got == [(1, "FAILED"), (2, "SUCCEEDED")]


def test_list_runs_newest_first_filtered(runs: Any) -> None:
    for i, (job, wr) in enumerate([("a", None), ("b", "wr_1"), ("a", "wr_1"), ("a", None)]):
        runs.create_run({"run_id": f"jr_{i}", "job": job, "started_at": f"2026-11-25T10:00:0{i}.000Z",
                         "workflow_run_id": wr})
    assert [r["run_id"] for r in runs.list_runs()] == ["jr_3", "jr_2", "jr_1", "jr_0"]
    assert [r["run_id"] for r in runs.list_runs(job="a", limit=2)] == ["jr_3", "jr_2"]
    assert [r["run_id"] for r in runs.list_runs(workflow_run_id="wr_1")] == ["jr_2", "jr_1"]
    assert "stages" not in runs.list_runs()[0]


def test_target_lock_refuses_a_live_holder_and_takes_over_from_a_dead_one(runs: Any) -> None:
    runs.create_run({"run_id": "jr_x", "job": "x", "started_at": "2026-11-25T10:00:00.000Z"})
    runs.create_run({"run_id": "jr_y", "job": "y", "started_at": "2026-11-25T10:00:01.000Z"})
    runs.acquire_target_lock("s3://lake/t", "jr_x", "x")
    runs.acquire_target_lock("s3://lake/t", "jr_x", "x")  # re-entrant for the holder
    with pytest.raises(TargetLocked, match="jr_x"):
        runs.acquire_target_lock("s3://lake/t", "jr_y", "y")
    runs.release_target_lock("s3://lake/t", "jr_y")  # not the holder: no effect
    with pytest.raises(TargetLocked):
        runs.acquire_target_lock("s3://lake/t", "jr_y", "y")
    runs.update_run("jr_x", status="FAILED")  # the holder's run ended (crash recorded)
    runs.acquire_target_lock("s3://lake/t", "jr_y", "y")
    assert runs.target_lock("s3://lake/t")["run_id"] == "jr_y"
    runs.release_target_lock("s3://lake/t", "jr_y")
    assert runs.target_lock("s3://lake/t") is None


def test_a_killed_holder_on_this_host_loses_its_lock_and_its_run_is_marked(runs: Any) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs.create_run({"run_id": "jr_dead", "job": "x", "started_at": "2026-11-25T10:00:00.000Z", "pid": dead.pid})
    runs.create_run({"run_id": "jr_new", "job": "x", "started_at": "2026-11-25T10:00:01.000Z"})
    import socket

    if type(runs).__name__ == "SqliteRunStore":
        runs.conn.execute("INSERT INTO target_locks (target, run_id, job, host, pid, acquired_at) VALUES (?,?,?,?,?,?)",
                          ("s3://lake/k", "jr_dead", "x", socket.gethostname(), dead.pid, "t"))
    else:
        from etl_framework.state.dynamodb import encode_item

        runs.db.put({"pk": "lock#s3://lake/k", "sk": "lock",
                     **encode_item({"target": "s3://lake/k", "run_id": "jr_dead", "job": "x",
                                    "host": socket.gethostname(), "pid": dead.pid, "acquired_at": "t"})})
    runs.acquire_target_lock("s3://lake/k", "jr_new", "x")
    assert runs.target_lock("s3://lake/k")["run_id"] == "jr_new"
    old = runs.get_run("jr_dead")
    assert old["status"] == "FAILED" and "took over the write lock" in old["error"]


def _plant_lock(runs: Any, key: str, run_id: str, *, host: str, pid: int, lease_until: float) -> None:
    """A lock as another process left it (another host: only its lease says whether it is alive)."""
    fields = {"target": key, "run_id": run_id, "job": "x", "host": host, "pid": pid,
              "acquired_at": "2026-11-25T10:00:00.000Z", "lease_until": lease_until, "heartbeat_at": lease_until - 120}
    if type(runs).__name__ == "SqliteRunStore":
        runs.conn.execute(f"INSERT INTO target_locks ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})",
                          list(fields.values()))
    else:
        from etl_framework.state.dynamodb import encode_item

        runs.db.put({"pk": f"lock#{key}", "sk": "lock", "gpk": "locks", "gsk": key, **encode_item(fields)})


def test_a_holder_on_another_host_with_an_expired_lease_is_taken_over_and_its_run_marked(runs: Any) -> None:
    runs.create_run({"run_id": "jr_oom", "job": "x", "started_at": "2026-11-25T10:00:00.000Z", "host": "glue-1"})
    runs.create_run({"run_id": "jr_next", "job": "x", "started_at": "2026-11-25T11:00:00.000Z"})
    _plant_lock(runs, "s3://lake/t", "jr_oom", host="glue-1", pid=7, lease_until=time.time() - 5)
    runs.acquire_target_lock("s3://lake/t", "jr_next", "x")
    assert runs.target_lock("s3://lake/t")["run_id"] == "jr_next"
    old = runs.get_run("jr_oom")
    assert old["status"] == "FAILED"
    assert "lease expired" in old["error"] and "glue-1" in old["error"] and "jr_next took over" in old["error"]
    assert not runs.renew_target_lock(["s3://lake/t"], "jr_oom")  # the old holder, if it wakes up, knows
    assert runs.renew_target_lock(["s3://lake/t"], "jr_next")


def test_a_live_lease_on_another_host_is_respected(runs: Any) -> None:
    runs.create_run({"run_id": "jr_glue", "job": "x", "started_at": "2026-11-25T10:00:00.000Z", "host": "glue-2"})
    _plant_lock(runs, "s3://lake/t", "jr_glue", host="glue-2", pid=7, lease_until=time.time() + 60)
    with pytest.raises(TargetLocked, match="jr_glue"):
        runs.acquire_target_lock("s3://lake/t", "jr_me", "y")
    assert runs.get_run("jr_glue")["status"] == "RUNNING"
    with pytest.raises(TargetLocked, match="jr_glue"):  # a table inside the held one is held too
        runs.acquire_target_lock(["s3://lake/t_quarantine", "s3://lake/t/part"], "jr_me", "y")
    assert runs.target_lock("s3://lake/t_quarantine") is None  # all or nothing
    runs.acquire_target_lock("s3://lake/t_other", "jr_me", "y")  # a sibling whose name starts alike is free


def test_nested_targets_exclude_each_other(runs: Any) -> None:
    runs.create_run({"run_id": "jr_a", "job": "a", "started_at": "2026-11-25T10:00:00.000Z"})
    runs.create_run({"run_id": "jr_b", "job": "b", "started_at": "2026-11-25T10:00:01.000Z"})
    runs.acquire_target_lock("s3://lake/sales/daily", "jr_a", "a")
    with pytest.raises(TargetLocked, match="jr_a"):
        runs.acquire_target_lock("s3://lake/sales", "jr_b", "b")
    runs.release_target_lock("s3://lake/sales/daily", "jr_a")
    runs.acquire_target_lock("s3://lake/sales", "jr_b", "b")
    with pytest.raises(TargetLocked, match="jr_b"):
        runs.acquire_target_lock("s3://lake/sales/daily", "jr_a", "a")


def test_unlock_by_hand_releases_the_lock_and_marks_the_holder(runs: Any) -> None:
    runs.create_run({"run_id": "jr_stuck", "job": "x", "started_at": "2026-11-25T10:00:00.000Z"})
    _plant_lock(runs, "s3://lake/t", "jr_stuck", host="glue-3", pid=7, lease_until=time.time() + 600)
    released = runs.force_unlock("s3://lake/t", "etl runs --unlock by ops on laptop")
    assert [h["run_id"] for h in released] == ["jr_stuck"]
    assert runs.target_lock("s3://lake/t") is None and runs.list_locks() == []
    old = runs.get_run("jr_stuck")
    assert old["status"] == "FAILED" and "released by hand (etl runs --unlock by ops on laptop)" in old["error"]
    runs.acquire_target_lock("s3://lake/t", "jr_new", "x")


def test_crawler_runs_and_files_seen(env: Any) -> None:
    from etl_framework.catalog.crawler import CrawlerRunResult, FileInfo
    from etl_framework.state import open_state

    state = open_state(env)
    store = state.crawlers
    rid = store.start("raw_trips", "raw", "trips", "/data/raw/trips", "log")
    assert store.runs("raw_trips")[0]["state"] == "RUNNING"
    store.remember("raw_trips", [FileInfo(rel="a.csv", size=10, mtime=1.5), FileInfo(rel="b.csv", size=3, mtime=2.0)])
    store.finish(rid, CrawlerRunResult(crawler="raw_trips", state="SUCCEEDED", message="2 files", table="trips",
                                       ended="2026-11-25T10:00:01", changes=[{"change": "column_added"}]))
    rid2 = store.start("other", "raw", None, "/data/raw/other", "log")
    (last,) = store.runs("raw_trips")
    assert (last["state"], last["message"], last["changes"]) == ("SUCCEEDED", "2 files", [{"change": "column_added"}])
    assert store.seen("raw_trips") == {"a.csv": (10, 1.5), "b.csv": (3, 2.0)}
    assert store.last_path("raw_trips") == "/data/raw/trips" and store.last_path("other") is None
    assert [r["crawler"] for r in store.runs()][:2] == ["other", "raw_trips"] and rid2 != rid
    store.forget("raw_trips")
    assert store.seen("raw_trips") == {}
    state.close()


def test_etl_runs_unlock_releases_a_lock_by_hand_and_says_so(env: Any, runs: Any, tmp_path: Path) -> None:
    import json

    import yaml

    from tests.unit.test_config_cli import run as cli

    project = tmp_path / "proj"
    (project / "conf").mkdir(parents=True)
    (project / "conf" / "local.yaml").write_text(yaml.safe_dump(
        {"state": env.state.model_dump(), "aws": {"region": env.aws.region, "endpoint_url": env.aws.endpoint_url}}))
    runs.create_run({"run_id": "jr_stuck", "job": "x", "started_at": "2026-11-25T10:00:00.000Z", "host": "glue-4"})
    _plant_lock(runs, "s3://lake/t", "jr_stuck", host="glue-4", pid=7, lease_until=time.time() + 600)
    rc, out, err = cli("--project-dir", str(project), "runs", "--locks", "--json")
    assert rc == 0 and [h["run_id"] for h in json.loads(out)] == ["jr_stuck"], err
    rc, out, err = cli("--project-dir", str(project), "runs", "--unlock", "s3a://lake/t/")  # another spelling
    assert rc == 0, err
    assert "released the write lock of s3://lake/t held by run jr_stuck of job x (pid 7 on glue-4)" in err
    assert runs.target_lock("s3://lake/t") is None
    old = runs.get_run("jr_stuck")
    assert old["status"] == "FAILED" and "released by hand (etl runs --unlock by " in old["error"]
    rc, _out, err = cli("--project-dir", str(project), "runs", "--unlock", "s3://lake/t")
    assert rc == 0 and "no lock held on s3://lake/t" in err


# ------------------------------------------------------------------------------------------------ bookmarks


def test_bookmarks_with_history_and_reset_to_a_run(bookmarks: Any) -> None:
    assert bookmarks.get("trips").version == 0
    b1 = Bookmark("trips", 1, "jr_1", {"trips": SourceCursor("files", {"s3://raw/a.csv": [10, 1.5]})})
    bookmarks.put(b1)
    b2 = Bookmark("trips", 2, "jr_2", {"trips": SourceCursor("files", {"s3://raw/a.csv": [10, 1.5],
                                                                       "s3://raw/b.csv": [20, 2.5]})})
    bookmarks.put(b2)
    bookmarks.put(Bookmark("trips", 2, None, {}), action="reset")
    assert bookmarks.get("trips").sources == {}
    assert [(h["version"], h["run_id"], h["action"]) for h in bookmarks.history("trips")] == [
        (1, "jr_1", "commit"), (2, "jr_2", "commit"), (2, None, "reset")]
    back = bookmarks.at_run("trips", "jr_1")
    assert back is not None and back.sources["trips"].files == {"s3://raw/a.csv": [10, 1.5]}
    assert bookmarks.at_run("trips", "jr_9") is None
    w = Bookmark("stats", 1, "jr_3", {"s": SourceCursor("watermark", column="updated_at",
                                                        watermark="2026-11-25T00:00:00")})
    bookmarks.put(w)
    assert bookmarks.get("stats").to_json() == w.to_json()


# -------------------------------------------------------------------------------------------- workflow runs


def test_workflow_run_record_nodes_triggers_and_properties(workflows: Any) -> None:
    rid = workflows.begin_run("wf", max_concurrent_runs=None, nodes={"raw": "crawler", "a": "job"},
                              properties={"region": "eu"}, env="prod", executor="inline")
    workflows.update_node(rid, "raw", state="SUCCEEDED", attempts=1, started_at="t0", ended_at="t1")
    workflows.update_node(rid, "a", state="RUNNING", arguments={"--x": "1"}, job_run_ids=["jr_1"])
    workflows.set_trigger(rid, "start", "FIRED", "on demand")
    workflows.set_trigger(rid, "after", "FIRED")
    assert workflows.get_properties(rid) == {"region": "eu"}
    assert workflows.put_properties(rid, {"rows": 5}) == {"region": "eu", "rows": 5}
    run = workflows.get_run(rid)
    assert run["state"] == "RUNNING" and run["workflow"] == "wf" and run["owner_alive"] is True
    assert [(n["node"], n["kind"], n["state"]) for n in run["nodes"]] == [("raw", "crawler", "SUCCEEDED"),
                                                                         ("a", "job", "RUNNING")]
    assert run["nodes"][1]["arguments"] == {"--x": "1"} and run["nodes"][1]["job_run_ids"] == ["jr_1"]
    assert [(t["trigger"], t["state"], t["reason"]) for t in run["triggers"]] == [
        ("start", "FIRED", "on demand"), ("after", "FIRED", None)]
    workflows.finish_run(rid, "COMPLETED", {"TotalActions": 2})
    run = workflows.get_run(rid)
    assert run["state"] == "COMPLETED" and run["statistics"] == {"TotalActions": 2} and run["ended_at"]
    assert workflows.latest_run_id("wf") == rid and workflows.latest_run_id("other") is None
    assert workflows.get_run("wr_none") is None


def test_workflow_list_newest_first(workflows: Any) -> None:
    ids = []
    for wf in ("a", "b", "a"):
        ids.append(workflows.begin_run(wf, max_concurrent_runs=None, nodes={}, properties={}))
        time.sleep(0.01)
    assert [r["run_id"] for r in workflows.list_runs()] == ids[::-1]
    assert [r["run_id"] for r in workflows.list_runs("a", limit=1)] == [ids[2]]
    assert workflows.latest_run_id() == ids[2]


def test_max_concurrent_runs_counts_live_runs_only(workflows: Any) -> None:
    first = workflows.begin_run("lim", max_concurrent_runs=1, nodes={"a": "job"}, properties={})
    with pytest.raises(ConcurrentRunsExceeded) as e:
        workflows.begin_run("lim", max_concurrent_runs=1, nodes={"a": "job"}, properties={})
    assert e.value.running == [first]
    other = workflows.begin_run("other_wf", max_concurrent_runs=1, nodes={}, properties={})
    assert other
    workflows.finish_run(first, "COMPLETED", {})
    second = workflows.begin_run("lim", max_concurrent_runs=1, nodes={"a": "job"}, properties={})
    assert second != first


def test_max_concurrent_runs_under_a_race(workflows: Any) -> None:
    """Eight threads start a run of a limit-2 workflow at once: exactly two get in."""
    got: list[str] = []
    refused: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        try:
            got.append(workflows.begin_run("race", max_concurrent_runs=2, nodes={"a": "job"}, properties={}))
        except ConcurrentRunsExceeded:
            refused.append("x")

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 2 and len(refused) == 6


def test_a_dead_owner_does_not_hold_a_slot_and_is_marked_stopped(workflows: Any) -> None:
    from etl_framework.state.workflows import mark_orphaned_runs

    rid = workflows.begin_run("orph", max_concurrent_runs=1, nodes={"a": "job", "c": "crawler"}, properties={})
    workflows.update_node(rid, "a", state="RUNNING")
    workflows.update_node(rid, "c", state="RUNNING")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # the owner dies: its pid is gone and its heartbeat is old
    if type(workflows).__name__ == "SqliteWorkflowStore":
        with workflows.tx() as c:
            c.execute("UPDATE workflow_runs SET owner_pid = ?, heartbeat_at = 0 WHERE run_id = ?", (dead.pid, rid))
        marked = mark_orphaned_runs(workflows)
    else:
        workflows.db.set_fields(f"wfrun#{rid}", "run", {"owner_pid": dead.pid, "heartbeat_at": 0})
        marked = workflows.mark_orphaned_runs()
    assert marked == [rid]
    run = workflows.get_run(rid)
    assert run["state"] == "STOPPED" and "resume" in run["error"]
    assert {n["node"]: n["state"] for n in run["nodes"]} == {"a": "STOPPED", "c": "CANCELLED"}
    assert workflows.begin_run("orph", max_concurrent_runs=1, nodes={}, properties={})


def test_limit_holds_across_processes(env: Any, tmp_path: Path) -> None:
    """Two processes, each trying to start a run of a limit-1 workflow and keep it: one is refused."""
    code = (
        "import sys, time, json\n"
        "from etl_framework.config.model import EnvConfig\n"
        "from etl_framework.state.dynamodb import open_workflow_store\n"
        "from etl_framework.state.workflows import ConcurrentRunsExceeded\n"
        "env = EnvConfig.model_validate(json.loads(sys.argv[1]))\n"
        "s = open_workflow_store(env)\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "try:\n"
        "    s.begin_run('xproc', max_concurrent_runs=1, nodes={}, properties={})\n"
        "    print('RUN', flush=True); time.sleep(1.5)\n"
        "except ConcurrentRunsExceeded:\n"
        "    print('REFUSED', flush=True)\n"
    )
    start_at = str(time.time() + 2.0)
    envs = {**os.environ}
    procs = [subprocess.Popen([sys.executable, "-c", code, env.model_dump_json(), start_at], stdout=subprocess.PIPE,
                              text=True, env=envs) for _ in range(2)]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["REFUSED", "RUN"]


# ------------------------------------------------------------------------------ the real engine on each backend


def test_the_workflow_engine_runs_and_resumes_on_the_store(workflows: Any) -> None:
    """The Glue-semantics engine itself (with a scripted executor) records its runs in either backend."""
    from tests.unit.test_workflow_fakes import FakeExecutor, run_engine, workflow

    cfg = workflow([
        {"name": "start", "type": "on_demand", "actions": [{"crawler": "raw"}]},
        {"name": "after", "type": "conditional", "conditions": [{"crawler": "raw", "state": "SUCCEEDED"}],
         "actions": [{"job": "a"}, {"job": "b"}]},
    ], jobs=["a", "b"], crawlers=["raw"], max_concurrent_runs=1, run_properties={"region": "eu"})
    ex = FakeExecutor({"b": [("fail", 0)]})
    first = run_engine(cfg, workflows, ex).start()
    assert first.state == "COMPLETED" and first.nodes == {"raw": "SUCCEEDED", "a": "SUCCEEDED", "b": "FAILED"}
    rec = workflows.get_run(first.run_id)
    assert rec["statistics"]["SucceededActions"] == 2 and rec["statistics"]["FailedActions"] == 1
    assert rec["properties"] == {"region": "eu"}
    assert [t["trigger"] for t in rec["triggers"]] == ["start", "after"]

    second = run_engine(cfg, workflows, FakeExecutor()).resume(first.run_id)
    assert second.nodes["b"] == "SUCCEEDED"
    again = workflows.get_run(second.run_id)
    assert again["previous_run_id"] == first.run_id
    assert {n["node"]: n["copied_from"] for n in again["nodes"]}["a"] == first.run_id
