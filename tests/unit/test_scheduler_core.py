"""The scheduler's logic with a fake clock and a fake starter: real SQLite store, real files, no Spark."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from etl_framework.scheduler.events import EVENT_FILES
from etl_framework.scheduler.service import RunEnded, Scheduler, SchedulerLog, StaticWorkflows, WorkflowEntry
from etl_framework.scheduler.store import SchedulerLock, SchedulerStore, StoreLocked

T0 = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)


class Clock:
    def __init__(self, t: datetime = T0) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


RECORDS: dict[Path, set[str]] = {}  # per test: run ids the fake engine has on record, across "restarts"


class FakeStarter:
    """Starts nothing: records what would run and enforces max_concurrent_runs like the engine does."""

    def __init__(self, records: set[str] | None = None) -> None:
        self.records = records if records is not None else set()  # the engine's run records (durable)
        self.started: list[dict[str, Any]] = []
        self.running: dict[str, tuple[str, str]] = {}
        self.ended: list[RunEnded] = []

    def start(self, wf: WorkflowEntry, trigger: str, properties: dict[str, Any], run_id: str) -> str | None:
        limit = wf.config.max_concurrent_runs
        if limit and sum(1 for w, _ in self.running.values() if w == wf.name) >= limit:
            return None
        self.started.append({"workflow": wf.name, "trigger": trigger, "properties": properties, "run_id": run_id})
        self.running[run_id] = (wf.name, trigger)
        self.records.add(run_id)
        return run_id

    def finish(self, run_id: str, outcome: str = "COMPLETED") -> None:
        wf, trig = self.running.pop(run_id)
        self.ended.append(RunEnded(run_id, wf, trig, outcome))

    def poll(self) -> list[RunEnded]:
        out, self.ended = self.ended, []
        return out

    def active(self) -> list[str]:
        return list(self.running)

    def run_exists(self, run_id: str) -> bool:
        return run_id in self.records

    def recover(self) -> list[str]:
        return []

    def stop(self, grace_seconds: float, log: SchedulerLog) -> list[str]:
        out = list(self.running)
        for r in out:
            self.finish(r, "STOPPED")
        return out


def workflow(name: str = "wf", *, limit: int | None = None, triggers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"workflow": name, "max_concurrent_runs": limit, "crawlers": {"c": {"path": "/x", "database": "raw"}},
            "triggers": [{**t, "actions": [{"crawler": "c"}]} for t in triggers]}


def make(tmp_path: Path, wfs: StaticWorkflows, clock: Clock, starter: FakeStarter | None = None,
         settle: float = 2.0, backfill: bool = True) -> tuple[Scheduler, FakeStarter, SchedulerLog]:
    """`backfill`: files landed before the first pass are events (the tests below land, then look)."""
    log = SchedulerLog(stream=io.StringIO(), clock=clock)
    starter = starter or FakeStarter(RECORDS.setdefault(tmp_path, set()))
    sched = Scheduler(SchedulerStore(tmp_path / "state.db"), starter, wfs, clock=clock, log=log,
                      settle_seconds=settle, wall=lambda: 0.0,
                      use_notifications=False, backfill=backfill)
    sched.recover()
    return sched, starter, log


def land(folder: Path, *names: str, content: str = "a,b\n1,2\n") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names:
        p = folder / n
        p.write_text(content)
        out.append(p)
    return out


def messages(log: SchedulerLog) -> list[str]:
    return [line["message"] for line in log.lines]


# ------------------------------------------------------------------------------------------------- schedules


def test_schedule_fires_each_tick_once_and_not_for_the_past(tmp_path: Path) -> None:
    clock = Clock()
    wfs = StaticWorkflows.of(workflow(triggers=[{"name": "minutely", "type": "scheduled",
                                                 "schedule": "cron(* * * * ? *)"}]))
    sched, starter, log = make(tmp_path, wfs, clock)
    sched.tick()
    assert starter.started == []  # armed at 10:00:30: the 10:00 tick is in the past, nothing fires
    assert any("schedule armed" in m and "10:01:00" in m for m in messages(log))
    clock.advance(20)  # 10:00:50
    sched.tick()
    assert starter.started == []
    clock.advance(15)  # 10:01:05
    sched.tick()
    sched.tick()
    assert [s["trigger"] for s in starter.started] == ["minutely"]
    clock.advance(60)  # 10:02:05
    sched.tick()
    assert len(starter.started) == 2
    assert not any("missed" in m for m in messages(log))


def test_missed_ticks_while_down_start_one_run_on_restart(tmp_path: Path) -> None:
    clock = Clock()
    wfs = StaticWorkflows.of(workflow(triggers=[{"name": "hourly", "type": "scheduled",
                                                 "schedule": "cron(0 * * * ? *)"}]))
    sched, _, _ = make(tmp_path, wfs, clock)
    sched.tick()
    sched.store.close()
    # The scheduler is down from 10:00:30 until 15:20: the 11:00 .. 15:00 ticks (5 of them) are missed.
    clock.t = datetime(2026, 3, 2, 15, 20, tzinfo=UTC)
    sched2, starter2, log2 = make(tmp_path, wfs, clock)
    sched2.tick()
    sched2.tick()
    assert len(starter2.started) == 1
    warn = [line for line in log2.lines if "catch-up" in line["message"]]
    assert len(warn) == 1 and warn[0]["missed"] == 5 and "while the scheduler was down" in warn[0]["message"]
    assert warn[0]["workflow"] == "wf" and warn[0]["trigger"] == "hourly"
    # and a third incarnation does not fire the same tick again
    sched2.store.close()
    sched3, starter3, _ = make(tmp_path, wfs, clock)
    sched3.tick()
    assert starter3.started == []
    clock.t = datetime(2026, 3, 2, 16, 0, 1, tzinfo=UTC)
    sched3.tick()
    assert len(starter3.started) == 1


def test_changed_cron_expression_rearms_without_firing(tmp_path: Path) -> None:
    clock = Clock()
    wfs = StaticWorkflows.of(workflow(triggers=[{"name": "t", "type": "scheduled", "schedule": "cron(0 * * * ? *)"}]))
    sched, starter, log = make(tmp_path, wfs, clock)
    sched.tick()
    clock.advance(3 * 3600)
    sched.source = StaticWorkflows.of(workflow(triggers=[{"name": "t", "type": "scheduled",
                                                          "schedule": "cron(30 * * * ? *)"}]))
    sched.tick()
    assert starter.started == []
    assert any("schedule changed" in m for m in messages(log))


# ---------------------------------------------------------------------------------------------------- events


def event_wf(folder: Path, size: int, window: int, limit: int | None = None, pattern: str = "*.csv") -> StaticWorkflows:
    return StaticWorkflows.of(workflow(limit=limit, triggers=[{
        "name": "files", "type": "event", "watch": {"path": str(folder), "pattern": pattern},
        "batch": {"size": size, "window_seconds": window}}]))


def settle(sched: Scheduler, clock: Clock, seconds: float = 2.5) -> None:
    """First look (a poll interval after the last pass), then a second look after the settle time: what was
    stable becomes events."""
    clock.advance(1)
    sched.tick()
    clock.advance(seconds)
    sched.tick()


def test_25_files_in_bursts_batch_like_glue_10_10_then_5_after_the_window(tmp_path: Path) -> None:
    clock, inbox = Clock(), tmp_path / "inbox"
    sched, starter, log = make(tmp_path, event_wf(inbox, size=10, window=5), clock)
    first = land(inbox, *[f"a{i:02}.csv" for i in range(12)])
    settle(sched, clock)
    assert len(starter.started) == 1  # 12 events: one batch of 10 at once, 2 wait for the window
    second = land(inbox, *[f"b{i:02}.csv" for i in range(13)])
    settle(sched, clock)  # taken at 10:00:37.5: 2 + 13 = 15 pending -> one more full batch, 5 left
    assert len(starter.started) == 2
    clock.advance(4.9)
    sched.tick()
    assert len(starter.started) == 2  # the window of the 5 left (from 10:00:37.5) has not passed yet
    clock.advance(0.1)
    sched.tick()
    assert len(starter.started) == 3
    sizes = [len(s["properties"][EVENT_FILES]) for s in starter.started]
    assert sizes == [10, 10, 5]
    files = [f for s in starter.started for f in s["properties"][EVENT_FILES]]
    assert sorted(files) == sorted(str(p) for p in first + second)  # every file once, none twice
    assert len(set(files)) == 25
    assert [b["reason"] for b in sched.store.batches()] == ["size", "size", "window"]
    clock.advance(100)
    sched.tick()
    assert len(starter.started) == 3
    assert any("window of 5s passed" in m for m in messages(log))


def test_batch_by_window_only(tmp_path: Path) -> None:
    clock, inbox = Clock(), tmp_path / "inbox"
    sched, starter, _ = make(tmp_path, event_wf(inbox, size=10, window=30), clock)
    land(inbox, "x.csv", "y.csv", "ignored.txt", "_SUCCESS", ".x.csv.crc")
    settle(sched, clock)  # the 2 files are taken at the second look: the window starts there
    clock.advance(29.9)
    sched.tick()
    assert starter.started == []
    clock.advance(0.1)
    sched.tick()
    assert len(starter.started) == 1
    props = starter.started[0]["properties"]
    assert [Path(p).name for p in props[EVENT_FILES]] == ["x.csv", "y.csv"]
    assert props["event_trigger"] == "files" and isinstance(props["event_batch_id"], int)


def test_file_still_being_written_is_taken_only_when_stable(tmp_path: Path) -> None:
    clock, inbox = Clock(), tmp_path / "inbox"
    sched, starter, _ = make(tmp_path, event_wf(inbox, size=1, window=1), clock)
    (p,) = land(inbox, "big.csv", content="a,b\n")
    sched.tick()
    for i in range(4):  # the writer keeps appending: size changes between looks
        clock.advance(3)
        with p.open("a") as f:
            f.write(f"{i},{i}\n")
        os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 1_000_000))
        sched.tick()
        assert starter.started == []
    clock.advance(3)
    sched.tick()
    assert len(starter.started) == 1
    (event,) = sched.store.events()
    assert event.size == p.stat().st_size  # recorded with its final size


def test_first_start_takes_existing_files_as_the_baseline_and_backfill_fires_them(tmp_path: Path) -> None:
    """As an EventBridge rule, which sees only objects created after it exists: files already there when an event
    trigger is first served fire nothing (said in the log); files landing later do; --backfill fires the rest."""
    clock, inbox = Clock(), tmp_path / "inbox"
    wfs = event_wf(inbox, size=10, window=5)
    land(inbox, "old1.csv", "old2.csv", "old3.csv")
    sched, starter, log = make(tmp_path, wfs, clock, backfill=False)
    settle(sched, clock)
    clock.advance(10)
    sched.tick()
    assert starter.started == []
    assert any("3 file(s) already in" in m and "are the baseline" in m and "--backfill" in m for m in messages(log))
    land(inbox, "new.csv")
    settle(sched, clock)
    clock.advance(10)
    sched.tick()
    assert [[Path(f).name for f in s["properties"][EVENT_FILES]] for s in starter.started] == [["new.csv"]]
    sched.store.close()
    again, starter2, _ = make(tmp_path, wfs, clock, backfill=False)  # a restart: still the baseline
    settle(again, clock)
    clock.advance(10)
    again.tick()
    assert starter2.started == []
    again.store.close()
    back, starter3, log3 = make(tmp_path, wfs, clock, backfill=True)
    settle(back, clock)
    clock.advance(10)
    back.tick()
    assert [sorted(Path(f).name for f in s["properties"][EVENT_FILES]) for s in starter3.started] == [
        ["old1.csv", "old2.csv", "old3.csv"]]
    assert any("--backfill: 3 file(s)" in m for m in messages(log3))


def test_watched_path_created_later_is_picked_up(tmp_path: Path) -> None:
    clock, inbox = Clock(), tmp_path / "later" / "inbox"
    sched, starter, log = make(tmp_path, event_wf(inbox, size=1, window=1), clock)
    sched.tick()
    sched.tick()
    assert sum("does not exist" in m for m in messages(log)) == 1  # said once, not every pass
    land(inbox, "f.csv")
    settle(sched, clock)
    assert len(starter.started) == 1


def test_events_exactly_once_across_restart(tmp_path: Path) -> None:
    clock, inbox = Clock(), tmp_path / "inbox"
    wfs = event_wf(inbox, size=3, window=60)
    sched, starter, _ = make(tmp_path, wfs, clock)
    land(inbox, "1.csv", "2.csv")
    settle(sched, clock)
    assert starter.started == [] and len(sched.store.pending_events("wf", "files")) == 2
    sched.store.close()  # "crash": a new store object on the same file
    land(inbox, "3.csv", "4.csv")  # landed while the scheduler was down
    sched2, starter2, _ = make(tmp_path, wfs, clock)
    settle(sched2, clock)
    assert len(starter2.started) == 1
    assert [Path(f).name for f in starter2.started[0]["properties"][EVENT_FILES]] == ["1.csv", "2.csv", "3.csv"]
    sched2.store.close()
    sched3, starter3, _ = make(tmp_path, wfs, clock)
    settle(sched3, clock)
    clock.advance(61)
    sched3.tick()
    assert [[Path(f).name for f in s["properties"][EVENT_FILES]] for s in starter3.started] == [["4.csv"]]
    assert sorted(Path(e.path).name for e in sched3.store.events()) == ["1.csv", "2.csv", "3.csv", "4.csv"]


def test_crash_between_recording_and_starting_starts_the_run_exactly_once(tmp_path: Path) -> None:
    clock, inbox = Clock(), tmp_path / "inbox"
    wfs = event_wf(inbox, size=1, window=60)
    sched, _, _ = make(tmp_path, wfs, clock)
    land(inbox, "a.csv", "b.csv")
    # simulate a crash after run ids were stored but before/after the runs were really started
    sched.workflows = wfs.entries
    sched.scanner.scan("wf", "files", inbox, "*.csv", clock())
    clock.advance(3)
    sched.scanner.scan("wf", "files", inbox, "*.csv", clock())
    from etl_framework.scheduler.events import close_batches

    closed = close_batches(sched.store, "wf", "files", 1, 60, clock())
    assert len(closed) == 2
    sched.store.mark_starting(closed[0].firing_id, "wr_started_before_crash")
    sched.store.mark_starting(closed[1].firing_id, "wr_never_started")
    sched.store.close()
    starter = FakeStarter({"wr_started_before_crash"})  # the engine has this run on record
    sched2, starter2, _ = make(tmp_path, wfs, clock, starter=starter)
    sched2.tick()
    (started_now,) = starter2.started  # only the never-started one is started now
    assert [Path(f).name for f in started_now["properties"][EVENT_FILES]] == ["b.csv"]
    assert [f.state for f in sched2.store.firings()] == ["done", "started"]
    sched2.tick()
    assert len(starter2.started) == 1


# ------------------------------------------------------------------------------------------ concurrency limit


def test_limit_reached_waits_is_logged_once_and_fires_when_a_slot_frees(tmp_path: Path) -> None:
    clock, inbox = Clock(), tmp_path / "inbox"
    sched, starter, log = make(tmp_path, event_wf(inbox, size=1, window=60, limit=1), clock)
    land(inbox, "1.csv", "2.csv", "3.csv")
    settle(sched, clock)
    assert len(starter.started) == 1
    for _ in range(3):
        clock.advance(1)
        sched.tick()
    assert len(starter.started) == 1
    waits = [line for line in log.lines if "max_concurrent_runs (1) is reached" in line["message"]]
    assert len(waits) == 1 and waits[0]["trigger"] == "files"  # logged once, not every pass
    assert len(sched.store.firings(("waiting",))) == 2  # not dropped
    starter.finish(starter.started[0]["run_id"])
    sched.tick()
    assert len(starter.started) == 2
    starter.finish(starter.started[1]["run_id"])
    sched.tick()
    names = [Path(s["properties"][EVENT_FILES][0]).name for s in starter.started]
    assert names == ["1.csv", "2.csv", "3.csv"]  # in arrival order
    assert sum("after waiting for a free slot" in m for m in messages(log)) == 2
    assert any(line["message"].startswith("run ended: COMPLETED") and line["run_id"] for line in log.lines)


def test_stop_requested_starts_nothing_new(tmp_path: Path) -> None:
    clock, inbox = Clock(), tmp_path / "inbox"
    sched, starter, log = make(tmp_path, event_wf(inbox, size=1, window=60), clock)
    land(inbox, "1.csv")
    sched.stop_requested.set()
    settle(sched, clock)
    assert starter.started == []
    assert len(sched.store.firings(("waiting",))) == 1  # kept for the next start
    sched.shutdown(0)
    assert messages(log)[-1] == "scheduler stopped"


def test_invalid_workflow_is_skipped_and_others_keep_running(tmp_path: Path) -> None:
    clock, a, b = Clock(), tmp_path / "a", tmp_path / "b"
    wfs = StaticWorkflows.of(
        workflow("wa", triggers=[{"name": "fa", "type": "event", "watch": {"path": str(a)}, "batch": {"size": 1}}]),
        workflow("wb", triggers=[{"name": "fb", "type": "event", "watch": {"path": str(b)}, "batch": {"size": 1}}]),
    )
    sched, starter, _ = make(tmp_path, wfs, clock)
    del wfs.entries["wa"]  # its file became invalid: the source leaves it out
    land(a, "x.csv")
    land(b, "y.csv")
    settle(sched, clock)
    assert [s["workflow"] for s in starter.started] == ["wb"]


# ------------------------------------------------------------------------------------------------------ lock


def test_second_scheduler_on_the_same_store_refuses_and_names_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    with SchedulerLock(state):
        with pytest.raises(StoreLocked) as e:
            SchedulerLock(state).acquire()
        assert f"pid {os.getpid()}" in str(e.value) and str(state) in str(e.value)
    SchedulerLock(state).acquire()  # released: a restart gets it


def test_lock_holder_is_reported_only_while_held(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    lock = SchedulerLock(state)
    assert lock.holder() is None
    lock.acquire()
    holder = SchedulerLock(state).holder()
    assert holder is not None and holder.startswith(f"pid {os.getpid()} on ")
    lock.release()
    assert SchedulerLock(state).holder() is None


def test_an_unreadable_watched_folder_is_reported_once_and_the_other_triggers_keep_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, a, b = Clock(), tmp_path / "a", tmp_path / "b"
    wfs = StaticWorkflows.of(
        workflow("wa", triggers=[{"name": "fa", "type": "event", "watch": {"path": str(a)}, "batch": {"size": 1}}]),
        workflow("wb", triggers=[{"name": "fb", "type": "event", "watch": {"path": str(b)}, "batch": {"size": 1}}]),
    )
    sched, starter, log = make(tmp_path, wfs, clock)
    land(a, "x.csv")
    land(b, "y.csv")
    from etl_framework.scheduler import events

    real = events.list_files

    def broken(root: Path, pattern: str, skip: set[str]):
        if Path(root) == a:
            raise PermissionError(13, "Permission denied", str(a))
        return real(root, pattern, skip)

    monkeypatch.setattr(events, "list_files", broken)
    settle(sched, clock)
    settle(sched, clock)
    assert [s["workflow"] for s in starter.started] == ["wb"]
    errors = [line for line in log.lines if line["level"] == "error"]
    assert len(errors) == 1 and errors[0]["workflow"] == "wa" and "Permission denied" in errors[0]["message"]
    monkeypatch.setattr(events, "list_files", real)
    settle(sched, clock)
    assert sorted(s["workflow"] for s in starter.started) == ["wa", "wb"]


def test_crash_right_after_spawning_a_run_that_never_registered_queues_it_again(tmp_path: Path) -> None:
    clock, inbox = Clock(), tmp_path / "inbox"
    wfs = event_wf(inbox, size=1, window=60)
    sched, starter, _ = make(tmp_path, wfs, clock)
    land(inbox, "a.csv", "b.csv")
    settle(sched, clock)
    assert len(starter.started) == 2
    starter.records.discard(starter.started[1]["run_id"])  # its process died before registering the run
    sched.store.close()
    sched2, starter2, log = make(tmp_path, wfs, clock, starter=starter)
    assert any("queued again" in m for m in messages(log))
    sched2.tick()
    runs = [s for s in starter2.started if s["run_id"] in starter2.records]  # the runs the engine has
    assert [Path(s["properties"][EVENT_FILES][0]).name for s in runs] == ["a.csv", "b.csv"]
    assert [f.state for f in sched2.store.firings()] == ["done", "started"]
    assert sched2.store.firings()[1].run_id == runs[1]["run_id"]
    sched2.tick()
    assert len(starter2.started) == 3  # the lost start once more, nothing else


def test_os_notifications_mark_the_folder_and_wake_the_loop_also_after_it_was_recreated(tmp_path: Path) -> None:
    import shutil
    import threading
    import time

    from etl_framework.scheduler.events import Notifier

    wake = threading.Event()
    n = Notifier(wake)
    if not n.active:
        pytest.skip(f"no OS notifications here: {n.error}")
    folder = tmp_path / "inbox"
    folder.mkdir()
    try:
        for round_ in range(2):
            assert n.watch(str(folder))
            wake.clear()
            n.take_dirty()
            (folder / f"f{round_}.csv").write_text("x\n")
            assert wake.wait(5), "no notification"
            time.sleep(0.1)
            assert n.take_dirty() == {str(folder)}
            shutil.rmtree(folder)
            n.unwatch_missing()
            folder.mkdir()
    finally:
        n.stop()
