"""The scheduler loop: load workflows, fire schedules and event batches, start runs within max_concurrent_runs,
recover after a crash, stop cleanly.

The loop never starts a run directly: every trigger that fires first becomes a durable *firing* (store.py), and
`dispatch` hands waiting firings, oldest first, to a `Starter`. A starter that refuses (limit reached) leaves the
firing waiting — logged once — and it is retried every pass until a slot frees. Unit tests drive `tick()` with a
fake clock and a fake starter; the CLI runs `run_forever()` with `SubprocessStarter` (one `etl workflow run`
process per run, killed with the scheduler if the scheduler dies, so that its run is marked and resumable).
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from etl_framework.config.model import Batch, Trigger, WorkflowConfig
from etl_framework.scheduler.events import EVENT_FILES, EventScanner, Notifier, close_batches
from etl_framework.scheduler.schedules import (
    MAX_COUNTED_TICKS,
    NextFire,
    ScheduleFire,
    ScheduleInit,
    check_schedule,
    default_next_fire,
)
from etl_framework.scheduler.store import Firing, SchedulerStore
from etl_framework.workflow_graph import WorkflowGraph, kind_of

ORPHAN_CHECK_SECONDS = 10.0
MAX_FILE_LINES = 25  # more new files than this in one pass are logged as one line


def utcnow() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------------------------- log


class SchedulerLog:
    """Structured log lines on stderr: `time level message key=value...`, or one JSON object per line with
    `json=True`. Every line about a run names workflow, trigger and run id."""

    def __init__(self, json_lines: bool = False, stream: Any = None, clock: Callable[[], datetime] = utcnow) -> None:
        self.json_lines = json_lines
        self.stream = stream
        self.clock = clock
        self.lines: list[dict[str, Any]] = []  # kept for tests and `--once` summaries
        self._lock = threading.Lock()

    def __call__(self, message: str, level: str = "info", **fields: Any) -> None:
        record = {"time": self.clock().strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z", "level": level,
                  "message": message}
        record.update({k: v for k, v in fields.items() if v is not None})
        with self._lock:
            self.lines.append(record)
            stream = self.stream or sys.stderr
            if self.json_lines:
                text = json.dumps(record, default=str)
            else:
                extra = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("time", "level", "message"))
                text = f"{record['time']} {level:<5} scheduler: {message}" + (f"  [{extra}]" if extra else "")
            try:
                stream.write(text + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass


# ------------------------------------------------------------------------------------------------- workflows


@dataclass
class WorkflowEntry:
    """A workflow the scheduler serves: its validated config and where it came from."""

    name: str
    config: WorkflowConfig
    path: Path | None = None

    def trigger(self, name: str) -> Trigger | None:
        return next((t for t in self.config.triggers if t.name == name), None)


class WorkflowSource(Protocol):
    def refresh(self, log: SchedulerLog) -> dict[str, WorkflowEntry]:
        """The currently valid workflows (a broken file is reported by the source and left out)."""
        ...


@dataclass
class StaticWorkflows:
    """Workflows given in memory (tests); change `entries` to simulate an edit."""

    entries: dict[str, WorkflowEntry] = field(default_factory=dict)

    @classmethod
    def of(cls, *configs: WorkflowConfig | dict[str, Any]) -> StaticWorkflows:
        out = {}
        for c in configs:
            cfg = c if isinstance(c, WorkflowConfig) else WorkflowConfig.model_validate(c)
            out[cfg.workflow] = WorkflowEntry(cfg.workflow, cfg)
        return cls(out)

    def refresh(self, log: SchedulerLog) -> dict[str, WorkflowEntry]:
        return dict(self.entries)


WORKFLOW_KEY = re.compile(r"^workflow\s*:", re.MULTILINE)


class ProjectWorkflows:
    """Every workflow file under a folder (default: the project's jobs/), reloaded when any YAML file there, a job
    file a workflow names, or the env config changes. A file that fails to load is reported (each error as
    file:line:col) and skipped; the other workflows keep running, and the last report is not repeated."""

    def __init__(self, project: Any, env: str, folder: Path) -> None:
        self.project, self.env, self.folder = project, env, Path(folder)
        self._signature: tuple | None = None
        self._entries: dict[str, WorkflowEntry] = {}
        self._errors: dict[str, str] = {}
        self._job_paths: set[Path] = set()

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())

    def _sig(self, files: list[Path]) -> tuple:
        out = []
        for p in [*files, *sorted(self._job_paths), self.project.env_file(self.env)]:
            try:
                st = p.stat()
                out.append((str(p), st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((str(p), None, None))
        return tuple(out)

    def refresh(self, log: SchedulerLog) -> dict[str, WorkflowEntry]:
        from etl_framework.config.errors import ConfigErrors
        from etl_framework.config.load import load_workflow

        files = self._files()
        sig = self._sig(files)
        if sig == self._signature:
            return dict(self._entries)
        first = self._signature is None
        self._signature = sig
        self.project = type(self.project)(self.project.root)  # a fresh Project: no cached env config
        entries: dict[str, WorkflowEntry] = {}
        errors: dict[str, str] = {}
        job_paths: set[Path] = set()
        for f in files:
            try:
                if not WORKFLOW_KEY.search(f.read_text(errors="replace")):
                    continue
                loaded = load_workflow(f, self.project, self.env)
            except ConfigErrors as e:
                errors[str(f)] = "\n".join(str(x) for x in e.errors)
                continue
            except Exception as e:  # noqa: BLE001 - one broken file must not stop the others
                errors[str(f)] = f"{f}: {e}"
                continue
            job_paths.update(loaded.job_paths.values())
            name = loaded.config.workflow
            if name in entries:
                errors[str(f)] = f"{f}:1:1: workflow '{name}' is also defined in {entries[name].path}; skipped"
                continue
            entries[name] = WorkflowEntry(name, loaded.config, f)
        for f, text in errors.items():
            if self._errors.get(f) != text:
                log(f"workflow file {f} is invalid; it is skipped until fixed (the other workflows keep running):\n"
                    + text, level="error", file=f)
        for f in set(self._errors) - set(errors):
            log(f"workflow file {f} is valid again", file=f)
        for name in sorted(set(entries) - set(self._entries)):
            if not first:
                log("workflow loaded", workflow=name, file=str(entries[name].path))
        for name in sorted(set(self._entries) - set(entries)):
            log("workflow no longer served (file removed or invalid)", level="warn", workflow=name)
        self._errors, self._entries = errors, entries
        self._job_paths = job_paths
        self._signature = self._sig(files)
        return dict(entries)


# --------------------------------------------------------------------------------------------------- starter


@dataclass(frozen=True)
class RunEnded:
    run_id: str
    workflow: str
    trigger: str
    outcome: str  # the run's final state (COMPLETED, STOPPED, ...), or 'refused' / 'not started'
    detail: str = ""


class Starter(Protocol):
    """How the scheduler starts workflow runs. `start` returns the run id, or None when max_concurrent_runs is
    reached (the firing then waits)."""

    def start(self, wf: WorkflowEntry, trigger: str, properties: dict[str, Any], run_id: str) -> str | None: ...

    def poll(self) -> list[RunEnded]:
        """Runs that ended since the last call; outcome 'refused' sends the firing back to the queue."""
        ...

    def active(self) -> list[str]: ...

    def run_exists(self, run_id: str) -> bool: ...

    def recover(self) -> list[str]:
        """Mark runs left RUNNING by a dead process as STOPPED; return their ids."""
        ...

    def stop(self, grace_seconds: float, log: SchedulerLog) -> list[str]:
        """Let active runs finish for up to `grace_seconds`, then stop and mark the rest; return those ids."""
        ...


# ------------------------------------------------------------------------------------------------- scheduler


class Scheduler:
    """One scheduler over one state store. `tick()` is one pass; `run_forever()` and `run_once()` drive it."""

    def __init__(
        self,
        store: SchedulerStore,
        starter: Starter,
        source: WorkflowSource,
        *,
        clock: Callable[[], datetime] = utcnow,
        log: SchedulerLog | None = None,
        next_fire: NextFire = default_next_fire,
        settle_seconds: float = 2.0,
        poll_seconds: float = 5.0,
        tick_seconds: float = 1.0,
        wall: Callable[[], float] = time.time,
        use_notifications: bool = True,
        backfill: bool = False,
    ) -> None:
        self.store, self.starter, self.source = store, starter, source
        self.clock = clock
        self.log = log or SchedulerLog(clock=clock)
        self.next_fire = next_fire
        self.scanner = EventScanner(store, settle_seconds, wall=wall, backfill=backfill,
                                    on_baseline=self._log_baseline)
        self.settle_seconds = settle_seconds
        self.poll_seconds = poll_seconds
        self.tick_seconds = tick_seconds
        self.wake = threading.Event()
        self.stop_requested = threading.Event()
        self.notifier = Notifier(self.wake) if use_notifications else None
        self.workflows: dict[str, WorkflowEntry] = {}
        self._last_poll: dict[tuple[str, str], float] = {}
        self._waiting_logged: set[int] = set()
        self._run_firing: dict[str, Firing] = {}
        self._last_orphan_check = 0.0
        self._remote_reported: set[tuple[str, str]] = set()
        self._trigger_errors: dict[tuple[str, str], str] = {}

    def _log_baseline(self, workflow: str, trigger: str, root: str, baselined: int, released: int) -> None:
        if released:
            self.log(f"--backfill: {released} file(s) of the baseline of {root} are events now", workflow=workflow,
                     trigger=trigger, files=released)
        elif baselined:
            self.log(f"first start of this event trigger: {baselined} file(s) already in {root} are the baseline, "
                     "not events (an EventBridge rule sees only objects created after it exists); `etl scheduler "
                     "--backfill` fires for them", workflow=workflow, trigger=trigger, files=baselined)

    # ------------------------------------------------------------------------------------------- recovery

    def mark_orphans(self) -> None:
        """Runs left RUNNING by a process that died (the scheduler's own, killed with it, or any other)."""
        self._last_orphan_check = time.monotonic()
        for run_id in self.starter.recover():
            f = self.store.firing_of_run(run_id)
            self.log(f"run {run_id} was RUNNING when its process (or the scheduler) died: marked STOPPED; resume "
                     f"it with `etl workflow resume {run_id}`", level="warn", run_id=run_id,
                     workflow=f.workflow if f else None, trigger=f.trigger if f else None)

    def recover(self) -> None:
        """After a (re)start: mark orphaned runs, settle firings whose start was interrupted."""
        self.mark_orphans()
        for f in self.store.firings(("starting", "started")):
            if f.run_id and self.starter.run_exists(f.run_id):
                self.store.mark_done(f.firing_id, note=f"{f.note or ''}; its run is on record (seen after restart)")
                self.log("firing had started its run before the scheduler stopped", workflow=f.workflow,
                         trigger=f.trigger, run_id=f.run_id, firing=f.firing_id)
            else:
                self.store.mark_waiting(f.firing_id, note="its run never registered (the scheduler stopped while "
                                                          "starting it); queued again")
                self.log("firing's run never started (the scheduler stopped while starting it): queued again",
                         level="warn", workflow=f.workflow, trigger=f.trigger, firing=f.firing_id)
        waiting = self.store.firings(("waiting",))
        if waiting:
            self.log(f"{len(waiting)} firing(s) waiting from before the restart", count=len(waiting))

    # ----------------------------------------------------------------------------------------------- pass

    def tick(self, force_scan: bool = False) -> None:
        """One pass: reload workflows, fire due schedules, take new files, close batches, start runs, reap."""
        self.workflows = self.source.refresh(self.log)
        now = self.clock()
        dirty: set[str] = set()
        if self.notifier:
            self.notifier.unwatch_missing()  # a removed folder is watched again once it is back
            dirty = self.notifier.take_dirty()
        for wf in self.workflows.values():
            for trig in WorkflowGraph(wf.config).scheduler_triggers():
                try:
                    source = kind_of(trig).scheduler_source
                    if source == "schedule" and trig.schedule:
                        self._schedule(wf, trig, now)
                    elif source == "event" and trig.watch:
                        self._events(wf, trig, now, dirty, force_scan)
                except Exception as e:  # noqa: BLE001 - one trigger's trouble (e.g. an unreadable folder) must
                    # not stop the others; said once per distinct problem, retried every pass
                    problem = f"{type(e).__name__}: {e}"
                    if self._trigger_errors.get((wf.name, trig.name)) != problem:
                        self._trigger_errors[(wf.name, trig.name)] = problem
                        self.log(f"trigger failed this pass (retrying every pass): {problem}", level="error",
                                 workflow=wf.name, trigger=trig.name)
                else:
                    self._trigger_errors.pop((wf.name, trig.name), None)
        if time.monotonic() - self._last_orphan_check >= ORPHAN_CHECK_SECONDS:
            self.mark_orphans()
        self.reap()
        self.dispatch()

    def _schedule(self, wf: WorkflowEntry, trig: Trigger, now: datetime) -> None:
        assert trig.schedule
        res = check_schedule(self.store, wf.name, trig.name, trig.schedule, now, self.next_fire)
        if isinstance(res, ScheduleInit):
            what = "schedule changed" if res.changed else "schedule armed"
            self.log(f"{what}: {res.expr}, next run at {res.next_tick.isoformat() if res.next_tick else 'never'}",
                     workflow=wf.name, trigger=trig.name)
        elif isinstance(res, ScheduleFire):
            if res.catch_up:
                self.log(f"missed run(s) while the scheduler was down: the tick at {res.tick.isoformat()}"
                         + (f" and {'at least ' if res.missed + 1 >= MAX_COUNTED_TICKS else ''}{res.missed} earlier"
                            " tick(s)" if res.missed else "")
                         + " did not fire on time; starting ONE catch-up run now", level="warn",
                         workflow=wf.name, trigger=trig.name, firing=res.firing_id, missed=res.missed + 1)
            else:
                self.log(f"schedule fired for {res.tick.isoformat()}", workflow=wf.name, trigger=trig.name,
                         firing=res.firing_id)

    def _events(self, wf: WorkflowEntry, trig: Trigger, now: datetime, dirty: set[str], force: bool) -> None:
        assert trig.watch
        root = trig.watch.path.rstrip("/") or "/"
        key = (wf.name, trig.name)
        if "://" in root:
            if key not in self._remote_reported:
                self._remote_reported.add(key)
                self.log(f"watch path {root} is remote: event triggers on object stores are EventBridge's (deployed "
                         "by `etl deploy`); this trigger is not watched locally", level="warn", workflow=wf.name,
                         trigger=trig.name)
            return
        mono = now.timestamp()
        watched = self.notifier.watch(root) if self.notifier else False
        interval = self.poll_seconds if watched else self.tick_seconds
        due = (force or root in dirty or self.scanner.has_candidates(*key)
               or mono - self._last_poll.get(key, -1e9) >= interval * 0.9)  # 0.9: passes jitter around `interval`
        if due:
            self._last_poll[key] = mono
            new = self.scanner.scan(
                wf.name, trig.name, root, trig.watch.pattern, now,
                on_missing=lambda p: self.log(f"watched path {p} does not exist (yet); it is picked up when created",
                                              level="warn", workflow=wf.name, trigger=trig.name),
            )
            if len(new) > MAX_FILE_LINES:
                self.log(f"{len(new)} new files ({new[0].path} ... {new[-1].path})", workflow=wf.name,
                         trigger=trig.name, files=len(new))
            else:
                for ev in new:
                    self.log(f"new file {ev.path} ({ev.size} bytes)", workflow=wf.name, trigger=trig.name)
        batch = trig.batch or Batch()
        for b in close_batches(self.store, wf.name, trig.name, batch.size, batch.window_seconds, now):
            why = f"{batch.size} events" if b.reason == "size" else f"window of {batch.window_seconds}s passed"
            self.log(f"event batch {b.batch_id} closed ({why}): {len(b.files)} file(s)", workflow=wf.name,
                     trigger=trig.name, batch=b.batch_id, firing=b.firing_id, files=len(b.files))

    # ------------------------------------------------------------------------------------------- dispatch

    def dispatch(self) -> int:
        """Start waiting firings, oldest first; a workflow at its limit keeps its firings (and their order)."""
        if self.stop_requested.is_set():
            return 0
        started, blocked = 0, set()
        for f in self.store.firings(("waiting",)):
            if f.workflow in blocked:
                continue
            wf = self.workflows.get(f.workflow)
            if wf is None or wf.trigger(f.trigger) is None:
                if f.firing_id not in self._waiting_logged:
                    self._waiting_logged.add(f.firing_id)
                    self.log("firing waits: its workflow or trigger is not currently valid", level="warn",
                             workflow=f.workflow, trigger=f.trigger, firing=f.firing_id)
                continue
            run_id = new_run_id()
            if not self.store.mark_starting(f.firing_id, run_id):
                continue
            try:
                got = self.starter.start(wf, f.trigger, f.properties, run_id)
            except Exception as e:  # noqa: BLE001 - a start that blew up is retried, never lost
                self.store.mark_waiting(f.firing_id)
                if f.firing_id not in self._waiting_logged:
                    self._waiting_logged.add(f.firing_id)
                    self.log(f"could not start the run: {type(e).__name__}: {e}; retrying every pass",
                             level="error", workflow=f.workflow, trigger=f.trigger, firing=f.firing_id)
                blocked.add(f.workflow)
                continue
            if got is None:
                self.store.mark_waiting(f.firing_id)
                blocked.add(f.workflow)
                if f.firing_id not in self._waiting_logged:
                    self._waiting_logged.add(f.firing_id)
                    self.log(f"trigger fired but max_concurrent_runs ({wf.config.max_concurrent_runs}) is reached: "
                             "waiting for a run to finish", level="warn", workflow=f.workflow, trigger=f.trigger,
                             firing=f.firing_id)
                continue
            self.store.mark_started(f.firing_id, self.clock())
            waited = f.firing_id in self._waiting_logged
            self._waiting_logged.discard(f.firing_id)
            self._run_firing[got] = f
            started += 1
            extra: dict[str, Any] = {}
            if f.kind == "event":
                extra["files"] = len(f.properties.get(EVENT_FILES, []))
                what = f"event batch {f.batch_id}"
            else:
                what = f"scheduled tick {f.due_at.isoformat()}"
            self.log(f"run started for {what}" + (" (after waiting for a free slot)" if waited else ""),
                     workflow=f.workflow, trigger=f.trigger, run_id=got, firing=f.firing_id, **extra)
        return started

    def reap(self) -> list[RunEnded]:
        ended = self.starter.poll()
        for e in ended:
            f = self._run_firing.pop(e.run_id, None)
            if e.outcome == "refused" and f is not None:
                self.store.mark_waiting(f.firing_id, note="refused by max_concurrent_runs")
                self.log("run refused by max_concurrent_runs (another process started one): waiting",
                         level="warn", workflow=e.workflow, trigger=e.trigger, run_id=e.run_id)
                continue
            if e.outcome == "not started" and f is not None:
                self.store.mark_failed(f.firing_id, f"run did not start: {e.detail}")
                self.log(f"run did not start: {e.detail}", level="error", workflow=e.workflow, trigger=e.trigger,
                         run_id=e.run_id)
                continue
            if f is not None:
                self.store.mark_done(f.firing_id)
            level = "info" if e.outcome == "COMPLETED" else "warn"
            self.log(f"run ended: {e.outcome}{' — ' + e.detail if e.detail else ''}", level=level,
                     workflow=e.workflow, trigger=e.trigger, run_id=e.run_id)
        return ended

    def dispatchable(self) -> list[Firing]:
        return [f for f in self.store.firings(("waiting",))
                if f.workflow in self.workflows and self.workflows[f.workflow].trigger(f.trigger)]

    # --------------------------------------------------------------------------------------------- drivers

    def run_forever(self, grace_seconds: float) -> None:
        self.recover()
        self._announce()
        while not self.stop_requested.is_set():
            try:
                self.tick()
            except Exception as e:  # noqa: BLE001 - the loop outlives one bad pass; everything is durable
                self.log(f"pass failed: {type(e).__name__}: {e}", level="error")
            self.wake.wait(self.tick_seconds)
            self.wake.clear()
        self.shutdown(grace_seconds)

    def _announce(self) -> None:
        wfs = self.source.refresh(self.log)
        served = []
        for w in wfs.values():
            for trig in WorkflowGraph(w.config).scheduler_triggers():
                root = trig.watch.path.rstrip("/") or "/" if trig.watch else ""
                if trig.watch and "://" not in root:  # the baseline is what is there *before* "started"
                    self.scanner.first_start(w.name, trig.name, Path(root), trig.watch.pattern, self.clock())
            names = [t.name for t in WorkflowGraph(w.config).scheduler_triggers()]
            served.append(f"{w.name} ({', '.join(names) or 'no scheduled or event trigger'})")
        self.log("scheduler started", workflows=len(wfs), serving="; ".join(served) or None,
                 notifications="watchdog" if self.notifier and self.notifier.active else "polling only")
        if not wfs:
            self.log("no valid workflow file found: nothing to schedule until one is added", level="warn")

    def run_once(self, grace_seconds: float | None = None) -> None:
        """One pass (with a second look after `settle_seconds` so fresh files can be taken), then wait for the
        started runs — and for firings that waited on max_concurrent_runs — and return."""
        self.recover()
        self.tick(force_scan=True)
        if not self.stop_requested.is_set():
            time.sleep(self.settle_seconds)
            self.tick(force_scan=True)
        while not self.stop_requested.is_set() and (self.starter.active() or self.dispatchable()):
            self.stop_requested.wait(0.2)
            self.reap()
            self.dispatch()
        self.reap()
        if self.stop_requested.is_set():
            self.shutdown(grace_seconds or 0.0)
        elif self.notifier:
            self.notifier.stop()

    def shutdown(self, grace_seconds: float) -> None:
        """No new runs; active ones get `grace_seconds` to finish, then are stopped and marked."""
        self.stop_requested.set()
        active = self.starter.active()
        if active:
            self.log(f"stopping: waiting up to {grace_seconds:g}s for {len(active)} running run(s)",
                     runs=",".join(active))
        stopped = self.starter.stop(grace_seconds, self.log)
        for run_id in stopped:
            f = self._run_firing.get(run_id)
            self.log(f"run stopped after the grace period ({grace_seconds:g}s); resume it with "
                     f"`etl workflow resume {run_id}`", level="warn", run_id=run_id,
                     workflow=f.workflow if f else None, trigger=f.trigger if f else None)
        self.reap()
        if self.notifier:
            self.notifier.stop()
        self.log("scheduler stopped")

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            # The handler interrupts the main thread, possibly while it holds the lock of `wake` or of stderr:
            # log and set the events from a short-lived thread instead (no deadlock, no reentrant write).
            threading.Thread(target=on_signal, args=(signum,), name=f"signal-{signum}", daemon=True).start()

        def on_signal(signum: int) -> None:
            name = signal.Signals(signum).name
            if not self.stop_requested.is_set():
                self.log(f"received {name}: no new runs; finishing (send it again to stop running runs now)",
                         signal=signum)
            else:
                self.log(f"received {name} again: stopping running runs now", level="warn", signal=signum)
                abort = getattr(self.starter, "abort", None)
                if abort is not None:
                    abort.set()
            self.stop_requested.set()
            self.wake.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def new_run_id() -> str:
    from etl_framework.state.workflows import new_run_id as engine_run_id

    return engine_run_id()
