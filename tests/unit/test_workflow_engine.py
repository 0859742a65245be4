"""Glue Workflow semantics of the trigger engine, driven by a scripted executor (no Spark): and/any, at-most-once
firing, failure paths, retries with backoff, timeout, ERROR, the concurrency cap, statistics, stop, resume."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from etl_framework.config.model import Retries
from etl_framework.errors import EtlError
from etl_framework.state.workflows import WorkflowStore
from tests.unit.test_workflow_fakes import FakeExecutor, run_engine, specs, workflow

START = {"name": "start", "type": "on_demand", "actions": [{"job": "a"}]}


def cond(name: str, conditions: list[tuple[str, str]], actions: list[str], logical: str = "and",
         kind: str = "job") -> dict:
    return {
        "name": name, "type": "conditional", "logical": logical,
        "conditions": [{("crawler" if n.startswith("crawl") else "job"): n, "state": s} for n, s in conditions],
        "actions": [{("crawler" if a.startswith("crawl") else "job"): a} for a in actions],
    }


@pytest.fixture
def store(tmp_path: Path) -> WorkflowStore:
    s = WorkflowStore(tmp_path / "state.db")
    yield s
    s.close()


DIAMOND = [
    START,
    cond("after_a", [("a", "SUCCEEDED")], ["b", "c"]),
    cond("after_bc", [("b", "SUCCEEDED"), ("c", "SUCCEEDED")], ["d"]),
]


def test_diamond_runs_every_node_and_parallel_actions_overlap(store: WorkflowStore) -> None:
    cfg = workflow(DIAMOND, ["a", "b", "c", "d"])
    ex = FakeExecutor({"b": [("ok", 0.3)], "c": [("ok", 0.3)]})
    res = run_engine(cfg, store, ex).start()
    assert res.state == "COMPLETED" and res.ok
    assert res.nodes == {"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED", "d": "SUCCEEDED"}
    assert res.statistics == {
        "TotalActions": 4, "RunningActions": 0, "SucceededActions": 4, "FailedActions": 0, "TimeoutActions": 0,
        "StoppedActions": 0, "ErroredActions": 0, "WaitingActions": 0,
    }
    assert ex.peak == 2  # b and c ran together
    order = [n for n, _a, _t in ex.starts]
    assert order[0] == "a" and order[-1] == "d"
    rec = store.get_run(res.run_id)
    assert rec["state"] == "COMPLETED" and rec["ended_at"]
    by_node = {n["node"]: n for n in rec["nodes"]}
    assert by_node["d"]["trigger"] == "after_bc" and by_node["d"]["job_run_id"] == "jr_d_1"
    assert by_node["b"]["started_at"] and by_node["b"]["ended_at"] and by_node["b"]["attempts"] == 1
    assert {t["trigger"]: t["state"] for t in rec["triggers"]} == {
        "start": "FIRED", "after_a": "FIRED", "after_bc": "FIRED"}


def test_failure_in_the_middle_stops_downstream_and_run_is_completed(store: WorkflowStore) -> None:
    cfg = workflow(DIAMOND, ["a", "b", "c", "d"])
    ex = FakeExecutor({"b": [("fail", 0)]})
    res = run_engine(cfg, store, ex).start()
    assert res.state == "COMPLETED" and not res.ok
    assert res.nodes == {"a": "SUCCEEDED", "b": "FAILED", "c": "SUCCEEDED", "d": None}
    assert res.statistics["FailedActions"] == 1 and res.statistics["TotalActions"] == 3
    assert ex.attempts("d") == 0
    rec = store.get_run(res.run_id)
    trig = {t["trigger"]: t for t in rec["triggers"]}
    assert trig["after_bc"]["state"] == "NOT_FIRED"
    assert "b ended FAILED (needs SUCCEEDED)" in trig["after_bc"]["reason"]
    node_b = next(n for n in rec["nodes"] if n["node"] == "b")
    assert node_b["error"] == "b fail on attempt 1"


def test_and_needs_all_any_needs_one(store: WorkflowStore) -> None:
    cfg = workflow([
        {"name": "start", "type": "on_demand", "actions": [{"job": "a"}, {"job": "b"}]},
        cond("both", [("a", "SUCCEEDED"), ("b", "SUCCEEDED")], ["x"], "and"),
        cond("either", [("a", "SUCCEEDED"), ("b", "SUCCEEDED")], ["y"], "any"),
    ], ["a", "b", "x", "y"])
    res = run_engine(cfg, store, FakeExecutor({"b": [("fail", 0.1)]})).start()
    assert res.nodes["x"] is None and res.nodes["y"] == "SUCCEEDED"


def test_conditional_trigger_fires_at_most_once(store: WorkflowStore) -> None:
    cfg = workflow([
        {"name": "start", "type": "on_demand", "actions": [{"job": "a"}, {"job": "b"}]},
        cond("either", [("a", "SUCCEEDED"), ("b", "SUCCEEDED")], ["y"], "any"),
    ], ["a", "b", "y"])
    ex = FakeExecutor({"a": [("ok", 0)], "b": [("ok", 0.3)]})
    res = run_engine(cfg, store, ex).start()
    assert res.nodes["y"] == "SUCCEEDED"
    assert ex.attempts("y") == 1  # b's later success does not fire it again
    assert res.statistics["TotalActions"] == 3


def test_condition_on_failure_routes_to_a_handler(store: WorkflowStore) -> None:
    cfg = workflow([
        START,
        cond("on_fail", [("a", "FAILED")], ["alert"]),
        cond("on_ok", [("a", "SUCCEEDED")], ["next"]),
    ], ["a", "alert", "next"])
    res = run_engine(cfg, store, FakeExecutor({"a": [("fail", 0)]})).start()
    assert res.nodes == {"a": "FAILED", "alert": "SUCCEEDED", "next": None}


def test_condition_that_can_never_hold_ends_the_run_and_says_why(store: WorkflowStore) -> None:
    cfg = workflow([START, cond("never", [("a", "TIMEOUT")], ["b"])], ["a", "b"])
    t0 = time.monotonic()
    res = run_engine(cfg, store, FakeExecutor()).start()
    assert time.monotonic() - t0 < 2
    assert res.state == "COMPLETED" and res.ok and res.nodes["b"] is None
    reason = {t["trigger"]: t["reason"] for t in store.get_run(res.run_id)["triggers"]}["never"]
    assert "a ended SUCCEEDED (needs TIMEOUT)" in reason


def test_retries_with_exponential_backoff(store: WorkflowStore) -> None:
    cfg = workflow([START], ["a"])
    ex = FakeExecutor({"a": [("fail", 0), ("fail", 0), ("ok", 0)]})
    sp = specs(cfg, retries={"a": Retries(max_attempts=3, backoff_seconds=0.2, backoff_rate=2.0)})
    res = run_engine(cfg, store, ex, node_specs=sp).start()
    assert res.nodes["a"] == "SUCCEEDED"
    starts = [t for n, _a, t in ex.starts]
    ends = [t for n, _a, t in ex.ends]
    assert len(starts) == 3
    assert starts[1] - ends[0] >= 0.2 - 0.02
    assert starts[2] - ends[1] >= 0.4 - 0.02
    node = store.get_run(res.run_id)["nodes"][0]
    assert node["attempts"] == 3 and node["job_run_ids"] == ["jr_a_1", "jr_a_2", "jr_a_3"]
    assert node["job_run_id"] == "jr_a_3" and node["state"] == "SUCCEEDED"
    assert res.statistics["SucceededActions"] == 1 and res.statistics["TotalActions"] == 1


def test_retries_exhausted_is_failed_with_last_error(store: WorkflowStore) -> None:
    cfg = workflow([START], ["a"])
    sp = specs(cfg, retries={"a": Retries(max_attempts=2, backoff_seconds=0)})
    ex = FakeExecutor({"a": [("fail", 0)]})
    res = run_engine(cfg, store, ex, node_specs=sp).start()
    node = store.get_run(res.run_id)["nodes"][0]
    assert node["state"] == "FAILED" and node["attempts"] == 2 and node["error"] == "a fail on attempt 2"


def test_error_is_not_retried(store: WorkflowStore) -> None:
    cfg = workflow([START, cond("then", [("a", "SUCCEEDED")], ["b"])], ["a", "b"])
    sp = specs(cfg, retries={"a": Retries(max_attempts=3)})
    ex = FakeExecutor({"a": [("error", 0)]})
    res = run_engine(cfg, store, ex, node_specs=sp).start()
    assert res.nodes == {"a": "ERROR", "b": None}
    assert ex.attempts("a") == 1 and res.statistics["ErroredActions"] == 1


def test_timeout_cancels_the_attempt_marks_timeout_and_is_not_retried(
    store: WorkflowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETL_MINUTE_SECONDS", "0.3")
    cfg = workflow([START, cond("late", [("a", "TIMEOUT")], ["cleanup"])], ["a", "cleanup"])
    sp = specs(cfg, retries={"a": Retries(max_attempts=3)}, timeouts={"a": 1})
    ex = FakeExecutor({"a": [("hang",)]})
    t0 = time.monotonic()
    res = run_engine(cfg, store, ex, node_specs=sp).start()
    assert time.monotonic() - t0 < 5
    assert res.nodes == {"a": "TIMEOUT", "cleanup": "SUCCEEDED"}
    assert ex.attempts("a") == 1 and "a" in ex.cancelled
    assert res.statistics["TimeoutActions"] == 1
    node = next(n for n in store.get_run(res.run_id)["nodes"] if n["node"] == "a")
    assert "timed out after 1 min" in node["error"]


def test_timeout_counts_from_running_not_while_starting(
    store: WorkflowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ETL_MINUTE_SECONDS", "0.4")
    cfg = workflow([START], ["a"])
    ex = FakeExecutor({"a": [("ok", 0.1)]})
    ex.start_delay["a"] = 0.6  # e.g. the shared Spark session starting up
    res = run_engine(cfg, store, ex, node_specs=specs(cfg, timeouts={"a": 1})).start()
    assert res.nodes["a"] == "SUCCEEDED"


def test_action_timeout_overrides_job_timeout(store: WorkflowStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_MINUTE_SECONDS", "0.2")
    cfg = workflow([{"name": "start", "type": "on_demand", "actions": [{"job": "a", "timeout_minutes": 1}]}], ["a"])
    ex = FakeExecutor({"a": [("ok", 3)]})
    res = run_engine(cfg, store, ex, node_specs=specs(cfg, timeouts={"a": 100})).start()
    assert res.nodes["a"] == "TIMEOUT"


def test_concurrency_caps_parallel_actions_and_waiting_is_counted(store: WorkflowStore) -> None:
    jobs = [f"j{i}" for i in range(5)]
    cfg = workflow([{"name": "start", "type": "on_demand", "actions": [{"job": j} for j in jobs]}], jobs,
                   concurrency=2)
    ex = FakeExecutor(default=0.15)
    seen: list[dict] = []
    ex.hooks["j0"] = lambda task: (time.sleep(0.08), seen.append(store.get_run(task.run_id)))
    res = run_engine(cfg, store, ex).start()
    assert ex.peak == 2 and res.statistics["SucceededActions"] == 5
    states = [n["state"] for n in seen[0]["nodes"]]
    assert states.count("WAITING") == 3 and states.count("RUNNING") == 2  # two run, three wait for a slot


def test_action_arguments_reach_the_job(store: WorkflowStore) -> None:
    cfg = workflow([{"name": "start", "type": "on_demand",
                     "actions": [{"job": "a", "arguments": {"min_distance": 0.5}}]}], ["a"])
    ex = FakeExecutor()
    res = run_engine(cfg, store, ex).start()
    assert ex.tasks[0].arguments == {"min_distance": 0.5}
    assert store.get_run(res.run_id)["nodes"][0]["arguments"] == {"min_distance": 0.5}


def test_secrets_never_reach_the_run_record(store: WorkflowStore) -> None:
    cfg = workflow([{"name": "start", "type": "on_demand",
                     "actions": [{"job": "a", "arguments": {"conn": "${secret:DB_URL}", "n": 1}}]}], ["a"])
    ex = FakeExecutor({"a": [("fail", 0)]})
    logged: list[str] = []
    res = run_engine(cfg, store, ex, progress=logged.append).start()
    assert ex.tasks[0].arguments == {"conn": "${secret:DB_URL}", "n": 1}  # resolved by the job at the moment of use
    node = store.get_run(res.run_id)["nodes"][0]
    assert node["arguments"] == {"conn": "***", "n": 1}
    assert "DB_URL" not in " ".join(logged)


def test_crawler_failure_and_condition_on_crawler_state(store: WorkflowStore) -> None:
    cfg = workflow([
        {"name": "start", "type": "on_demand", "actions": [{"crawler": "crawl_raw"}]},
        cond("ok", [("crawl_raw", "SUCCEEDED")], ["a"]),
        cond("bad", [("crawl_raw", "FAILED")], ["alert"]),
    ], ["a", "alert"], ["crawl_raw"])
    res = run_engine(cfg, store, FakeExecutor({"crawl_raw": [("fail", 0)]})).start()
    assert res.nodes == {"a": None, "alert": "SUCCEEDED", "crawl_raw": "FAILED"}
    assert res.statistics["FailedActions"] == 1


def test_run_properties_are_shared_between_jobs_and_persisted(store: WorkflowStore) -> None:
    cfg = workflow([START, cond("then", [("a", "SUCCEEDED")], ["b"])], ["a", "b"], run_properties={"region": "eu"})
    ex = FakeExecutor()
    got: dict = {}
    ex.hooks["a"] = lambda task: task.run_properties.put("rows_a", 42)
    ex.hooks["b"] = lambda task: got.update(task.run_properties.run_vars())
    res = run_engine(cfg, store, ex).start(properties={"day": "2026-01-01"})
    assert got["rows_a"] == 42 and got["region"] == "eu" and got["day"] == "2026-01-01"
    assert got["id"] == res.run_id and len(got["date"]) == 10
    assert store.get_run(res.run_id)["properties"] == {"region": "eu", "day": "2026-01-01", "rows_a": 42}


def test_stop_cancels_running_nodes_and_ends_stopped(store: WorkflowStore) -> None:
    cfg = workflow([START, cond("then", [("a", "SUCCEEDED")], ["b"])], ["a", "b"])
    ex = FakeExecutor({"a": [("hang",)]})
    run = run_engine(cfg, store, ex)
    threading.Timer(0.3, run.stop, args=("shutdown",)).start()
    res = run.start()
    assert res.state == "STOPPED" and res.nodes == {"a": "STOPPED", "b": None}
    rec = store.get_run(res.run_id)
    assert rec["error"] == "shutdown" and rec["statistics"]["StoppedActions"] == 1


def test_node_already_run_is_not_started_twice(store: WorkflowStore) -> None:
    cfg = workflow([
        {"name": "start", "type": "on_demand", "actions": [{"job": "a"}, {"job": "b"}]},
        cond("t1", [("a", "SUCCEEDED")], ["c"]),
        cond("t2", [("b", "SUCCEEDED")], ["c"]),
    ], ["a", "b", "c"])
    ex = FakeExecutor({"b": [("ok", 0.2)]})
    run_engine(cfg, store, ex).start()
    assert ex.attempts("c") == 1


def test_no_on_demand_trigger_is_a_clear_error(store: WorkflowStore) -> None:
    cfg = workflow([{"name": "nightly", "type": "scheduled", "schedule": "cron(0 2 * * ? *)",
                     "actions": [{"job": "a"}]}], ["a"])
    with pytest.raises(EtlError, match="no enabled on_demand trigger"):
        run_engine(cfg, store, FakeExecutor()).start()
    res = run_engine(cfg, store, FakeExecutor()).start(trigger_names=["nightly"])
    assert res.nodes["a"] == "SUCCEEDED"
    assert store.get_run(res.run_id)["started_by"] == "nightly"


# ------------------------------------------------------------------------------------------------- resume


CHAIN = [
    {"name": "start", "type": "on_demand", "actions": [{"job": "a"}, {"job": "b", "arguments": {"k": 1}}]},
    cond("after_b", [("b", "SUCCEEDED")], ["c"]),
    cond("after_ac", [("a", "SUCCEEDED"), ("c", "SUCCEEDED")], ["d"]),
    cond("side", [("a", "SUCCEEDED")], ["e"]),
]


def test_resume_reruns_failed_and_downstream_only_and_copies_the_rest(store: WorkflowStore) -> None:
    cfg = workflow(CHAIN, ["a", "b", "c", "d", "e"], run_properties={"p": 1})
    first = run_engine(cfg, store, FakeExecutor({"b": [("fail", 0)]})).start()
    assert first.nodes == {"a": "SUCCEEDED", "b": "FAILED", "c": None, "d": None, "e": "SUCCEEDED"}
    store.put_properties(first.run_id, {"written": "x"})

    ex = FakeExecutor()
    second = run_engine(cfg, store, ex).resume(first.run_id)
    assert second.run_id != first.run_id
    assert [n for n, _a, _t in ex.starts] == ["b", "c", "d"]  # a and e are not re-run
    assert ex.tasks[0].arguments == {"k": 1}  # the failed node restarts with its original arguments
    assert second.nodes == {n: "SUCCEEDED" for n in "abcde"}
    assert second.statistics["TotalActions"] == 3 and second.statistics["SucceededActions"] == 3
    rec = store.get_run(second.run_id)
    assert rec["previous_run_id"] == first.run_id
    assert rec["properties"] == {"p": 1, "written": "x"}
    copied = {n["node"]: n["copied_from"] for n in rec["nodes"]}
    assert copied == {"a": first.run_id, "b": None, "c": None, "d": None, "e": first.run_id}
    assert next(n for n in rec["nodes"] if n["node"] == "a")["job_run_id"] == "jr_a_1"


def test_resume_reruns_downstream_nodes_that_had_run(store: WorkflowStore) -> None:
    cfg = workflow([
        START,
        cond("any_a", [("a", "SUCCEEDED"), ("a", "FAILED")], ["b"], "any"),
        cond("after_b", [("b", "SUCCEEDED")], ["c"]),
    ], ["a", "b", "c"])
    first = run_engine(cfg, store, FakeExecutor({"a": [("fail", 0)]})).start()
    assert first.nodes == {"a": "FAILED", "b": "SUCCEEDED", "c": "SUCCEEDED"}
    ex = FakeExecutor()
    second = run_engine(cfg, store, ex).resume(first.run_id)
    assert [n for n, _a, _t in ex.starts] == ["a", "b", "c"]
    assert second.ok


def test_resume_selected_nodes_only_as_glue_node_ids(store: WorkflowStore) -> None:
    cfg = workflow([
        {"name": "start", "type": "on_demand", "actions": [{"job": "a"}, {"job": "b"}]},
        cond("after_a", [("a", "SUCCEEDED")], ["c"]),
        cond("after_b", [("b", "SUCCEEDED")], ["d"]),
    ], ["a", "b", "c", "d"])
    first = run_engine(cfg, store, FakeExecutor({"a": [("fail", 0)], "b": [("fail", 0)]})).start()
    ex = FakeExecutor()
    second = run_engine(cfg, store, ex).resume(first.run_id, nodes=["a"])
    assert sorted(n for n, _a, _t in ex.starts) == ["a", "c"]
    assert second.nodes == {"a": "SUCCEEDED", "b": "FAILED", "c": "SUCCEEDED", "d": None}  # b copied as it was
    assert second.ok  # every action of this run succeeded
    with pytest.raises(EtlError, match="must have run in"):
        run_engine(cfg, store, FakeExecutor()).resume(first.run_id, nodes=["d"])


def test_resume_of_a_run_without_failures_or_still_running_is_refused(store: WorkflowStore) -> None:
    cfg = workflow([START], ["a"])
    ok = run_engine(cfg, store, FakeExecutor()).start()
    with pytest.raises(EtlError, match="nothing to resume"):
        run_engine(cfg, store, FakeExecutor()).resume(ok.run_id)
    live = store.begin_run("wf", max_concurrent_runs=None, nodes={"a": "job"}, properties={})
    with pytest.raises(EtlError, match="is RUNNING"):
        run_engine(cfg, store, FakeExecutor()).resume(live)
    with pytest.raises(EtlError, match="not found"):
        run_engine(cfg, store, FakeExecutor()).resume("wr_nope")


def test_max_concurrent_runs_in_process(store: WorkflowStore) -> None:
    cfg = workflow([START], ["a"], max_concurrent_runs=1)
    ex = FakeExecutor({"a": [("hang",)]})
    run = run_engine(cfg, store, ex)
    t = threading.Thread(target=run.start)
    t.start()
    while not run.run_id:
        time.sleep(0.01)
    with pytest.raises(EtlError, match=f"max_concurrent_runs is 1 and 1 run\\(s\\) are running: {run.run_id}"):
        run_engine(cfg, store, FakeExecutor()).start()
    run.stop("test over")
    t.join(5)
    assert run_engine(cfg, store, FakeExecutor()).start().ok
