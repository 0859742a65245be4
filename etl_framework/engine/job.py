"""The stage chain of one job run: crawl -> extract -> transform -> quality -> write -> register (SPEC §1, §5).

Every stage is a function `run_<stage>(state: JobRunState) -> None` in `etl_framework.stages.<stage>` that reads
and sets fields of the shared `JobRunState` and puts its numbers into `state.metrics[<stage>]`. The chain runs a
stage only when the job configures it (crawl, quality, register are optional blocks); a stage whose module is not
installed is recorded as skipped. Each stage's start, end, duration, status and metrics land in the run store as
they happen, so `etl show` (and `etl resume`) see exactly how far a run got.

`run_job` is the one entry point (CLI, spark-submit script, Glue, workflow engine): it never raises for a failed
run; it records it and returns a `JobRunResult` with the exit code of SPEC §9.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_framework.engine.context import JobContext, LocalRunProperties, properties_dict
from etl_framework.errors import EtlError, JobFailed
from etl_framework.faults import fault
from etl_framework.log import JobLog, fmt_bytes, fmt_count, python_logger
from etl_framework.quality import native

if TYPE_CHECKING:
    from etl_framework.config.model import EnvConfig, JobConfig
    from etl_framework.config.project import Project
    from etl_framework.state.base import RunStore
    from etl_framework.tables import Storage, WriteResult


def new_run_id() -> str:
    """Glue-like job run id: jr_<utc yyyymmddThhmmss>_<6 hex>."""
    return f"jr_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}_{secrets.token_hex(3)}"


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


CANCELLED = ("cancelled part of cancelled job group", "cancelled as part of cancellation of all jobs",
             "SPARK_JOB_CANCELLED", "because SparkContext was shut down")


def was_cancelled(e: BaseException) -> bool:
    """Did this exception come from Spark cancelling the run's jobs (a stop), rather than from the data?"""
    from etl_framework.engine.errors import error_text

    text = error_text(e)
    return any(c in text for c in CANCELLED) or bool(re.search(r"Job \d+ cancelled", text))


class RunStopped(KeyboardInterrupt):
    """Raised out of `run_loaded` (main thread) once a stopped run is recorded; the CLI prints it as one line."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


def _in_py4j(frame: Any) -> bool:
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith("py4j"):
            return True
        frame = frame.f_back
    return False


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (a stopped Glue run, `kill`, `etl stop`, the scheduler's stop) end a run
    STOPPED, its locks released, with one line on the terminal.

    While the main thread waits inside a Spark call the handler must not touch the JVM itself: py4j's connection
    belongs to the thread, so a call from the handler re-enters the blocked read ("reentrant call inside
    BufferedReader", ~40 lines of tracebacks, the run recorded FAILED) — that is PySpark's own SIGINT handler. This
    one cancels the run's Spark job group from another thread instead; the blocked call then fails with Spark's
    cancellation, which `execute` records as STOPPED. Outside a Spark call it raises KeyboardInterrupt at once.
    During the run's clean-up a signal is held back and raised after it. Only the main thread owns handlers."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.old: dict[int, Any] = {}
        self.pending = False
        self.requested: str | None = None  # the signal's name once a stop was asked for
        self.holding = False
        self.spark: Any = None
        self.group: str | None = None
        self.active = threading.current_thread() is threading.main_thread()
        self.install()

    def install(self) -> None:
        """(Re)take both signals; called again once Spark started, whose SparkContext installs its own SIGINT."""
        if self.active:
            for s in self.SIGNALS:
                prev = signal.signal(s, self._on_signal)
                self.old.setdefault(s, prev)

    def attach(self, spark: Any, group: str) -> None:
        self.spark, self.group = spark, group
        self.install()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.holding:
            self.pending = True
            return
        if self.requested is not None or self.spark is None or not _in_py4j(frame):
            self.requested = self.requested or signal.Signals(signum).name
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        threading.Thread(target=self._cancel, daemon=True, name="etl-stop").start()

    def _cancel(self) -> None:
        """Cancel the group until the main thread takes the stop (a job started meanwhile is cancelled too); if it
        never does (a long call that is no Spark job), interrupt it as a last resort."""
        import _thread

        deadline = time.monotonic() + 20
        while not self.holding and time.monotonic() < deadline:
            try:
                self.spark.sparkContext.cancelJobGroup(self.group)
            except Exception:  # noqa: BLE001 - the JVM may be going down already
                return
            time.sleep(0.5)
        if not self.holding:
            _thread.interrupt_main()

    def check(self) -> None:
        """Between stages: a stop asked for during a call that was no Spark job takes effect here."""
        if self.requested is not None and not self.holding:
            raise KeyboardInterrupt

    def hold(self) -> None:
        self.holding = True

    def restore(self) -> bool:
        """Put the caller's handlers back; True when a signal came during the clean-up."""
        if self.active:
            for s, h in self.old.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)
        return self.pending


@dataclass
class JobRunState:
    """Everything the stages of one run share. Other stages add what they need to `extras`."""

    config: JobConfig
    run_id: str
    spark: Any  # this run's SparkSession (its own temp views and SQL conf, the shared SparkContext)
    log: JobLog
    ctx: JobContext
    store: RunStore | None = None
    env: str = "local"
    env_config: EnvConfig | None = None
    project_root: Path | None = None
    job_path: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    workflow_run_id: str | None = None
    views: dict[str, Any] = field(default_factory=dict)  # source key -> DataFrame
    source_paths: dict[str, list[str]] = field(default_factory=dict)  # set before extract: read exactly these
    input_files: dict[str, list[str]] = field(default_factory=dict)  # source key -> files the read covers
    bad_records: dict[str, Any] = field(default_factory=dict)  # source key -> malformed rows (quarantine)
    df: Any = None  # the data to write (transform output; the quality gate may narrow it)
    quarantine_df: Any = None  # rows the quality gate set aside (written by the write stage)
    quality_result: Any = None
    write_result: dict[str, Any] | None = None  # the write stage's metrics
    committed: WriteResult | None = None  # what the target's format says the write committed
    write_options: dict[str, Any] = field(default_factory=dict)  # extra writer options (e.g. Delta txnAppId)
    commit_metadata: dict[str, Any] = field(default_factory=dict)  # rides in the target's commit with the run id
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    observations: dict[str, Any] = field(default_factory=dict)  # rows counted while Spark runs the plan
    stage: str = "start"
    extras: dict[str, Any] = field(default_factory=dict)
    lock: Any = None  # the run's `state.locks.HeldLock`: a write checks it still holds its tables before committing
    _catalog: Any = None
    _storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        """How this env reaches its tables without Spark (built once per run)."""
        if self._storage is None:
            from etl_framework.tables import storage_for

            self._storage = storage_for(self.env_config, self.project_root)
        return self._storage

    @property
    def job(self) -> str:
        return self.config.job

    @property
    def catalog(self) -> Any:
        """The env's catalog (local SQLite or Glue), opened on first use."""
        if self._catalog is None:
            from etl_framework.catalog import catalog_for

            if self.env_config is None:
                raise EtlError("no env config: the catalog is unknown")
            self._catalog = catalog_for(self.env_config, self.project_root)
        return self._catalog

    def fail(self, message: str, hint: str = "") -> JobFailed:
        return JobFailed(self.job, self.stage, message, hint, run_id=self.run_id)


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    function: str
    applies: Callable[[JobConfig], bool]

    def resolve(self) -> Callable[[JobRunState], None] | None:
        if importlib.util.find_spec(self.module) is None:
            return None
        fn = getattr(importlib.import_module(self.module), self.function, None)
        return fn if callable(fn) else None


STAGES: tuple[Stage, ...] = (
    Stage("crawl", "etl_framework.stages.crawl", "run_crawl", lambda c: bool(c.crawl)),
    Stage("extract", "etl_framework.stages.extract", "run_extract", lambda c: True),
    Stage("transform", "etl_framework.stages.transform", "run_transform", lambda c: True),
    Stage("quality", "etl_framework.stages.quality", "run_quality", lambda c: bool(c.quality)),
    Stage("write", "etl_framework.stages.write", "run_write", lambda c: True),
    Stage("register", "etl_framework.stages.register", "run_register", lambda c: c.register is not None),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


@dataclass
class JobRunResult:
    run_id: str
    job: str
    status: str  # SUCCEEDED | FAILED | STOPPED
    exit_code: int
    error: str | None = None
    error_stage: str | None = None
    hint: str | None = None
    duration_s: float = 0.0
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    exception: JobFailed | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "SUCCEEDED"

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "job": self.job, "status": self.status, "exit_code": self.exit_code,
                "error": self.error, "error_stage": self.error_stage, "hint": self.hint,
                "duration_s": round(self.duration_s, 3), "metrics": self.metrics}


def observed(obs: Any, wait: float = 0.0) -> int | None:
    """Rows counted by a Spark Observation, or None when the plan it sits on never ran. Spark delivers the metrics
    from its listener bus after the action returns, so a caller that knows the plan ran passes `wait` (seconds)
    to ride out that delay on a loaded machine; otherwise this never blocks."""
    jo = getattr(obs, "_jo", None)
    if jo is None:
        return None
    try:
        field_ = jo.getClass().getDeclaredField("metrics")
        field_.setAccessible(True)
        deadline = time.monotonic() + wait
        while not field_.get(jo).isDefined():
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)
        value = obs.get.get("rows")
        return int(value) if value is not None else None
    except Exception:  # noqa: BLE001 - counting must never fail a run
        return None


def _summary(stage: str, m: dict[str, Any]) -> str:
    parts = []
    if stage == "extract" and m.get("sources"):
        files = sum(int(s.get("files", 0)) for s in m["sources"].values())
        parts.append(f"{len(m['sources'])} source(s), {files} file(s)")
    if m.get("rows_written") is not None:
        parts.append(f"{fmt_count(m['rows_written'])} rows")
    if m.get("files_written") is not None:
        parts.append(f"{m['files_written']} file(s), {fmt_bytes(m.get('bytes_written', 0))}")
    if m.get("partitions_touched"):
        parts.append(f"{m['partitions_touched']} partition(s)")
    if m.get("reason"):
        parts.append(str(m["reason"]))
    return ", ".join(parts)


def _finalize_counts(state: JobRunState) -> None:
    """Rows per source and out of the transform are known once Spark ran the plan; put them on the stages."""
    ext = state.metrics.get("extract")
    if ext is not None:
        total = 0
        known = False
        for name, info in ext.get("sources", {}).items():
            obs = state.observations.get(f"extract.{name}")
            n = observed(obs, wait=0.2) if obs is not None else None  # same listener event as the write's
            if n is not None:
                info["rows"] = n
                total += n
                known = True
        if known:
            ext["rows_out"] = total
        if state.store is not None:
            state.store.update_stage_metrics(state.run_id, "extract", ext, attempt=state.attempt)
    tr = state.metrics.get("transform")
    if tr is not None and "transform" in state.observations:
        n = observed(state.observations["transform"])
        if n is not None:
            tr["rows_out"] = n
            if ext is not None and ext.get("rows_out") is not None:
                tr["rows_in"] = ext["rows_out"]
            if state.store is not None:
                state.store.update_stage_metrics(state.run_id, "transform", tr, attempt=state.attempt)


def execute(state: JobRunState, stages: Iterable[Stage] = STAGES, skip: Iterable[str] = ()) -> None:
    """Run the chain on `state`; raises JobFailed (already recorded on the stage) when a stage fails."""
    from etl_framework.engine.errors import explain

    skip = set(skip)
    store = state.store
    for seq, stage in enumerate(stages, 1):
        name = stage.name
        reason = None
        fn = None
        if not stage.applies(state.config):
            reason = "not configured"
        elif name in skip:
            reason = "checkpointed by an earlier attempt"
        else:
            fn = stage.resolve()
            if fn is None:
                reason = "not available"
        if reason is not None:
            if name == "write" and name in skip and state.config.quality:
                from etl_framework.stages.quality import write_quarantine

                state.stage = name
                write_quarantine(state)  # the target committed before a crash: finish its staged quarantine
            if store is not None:
                store.finish_stage(state.run_id, name, status="SKIPPED", duration_s=0.0,
                                   metrics={"reason": reason}, attempt=state.attempt, seq=seq)
            continue
        assert fn is not None
        stop = state.extras.get("stop")
        if stop is not None:
            stop.check()
        state.stage = name
        state.metrics[name] = {}
        started, t0 = utcnow(), time.monotonic()
        if store is not None:
            store.start_stage(state.run_id, name, seq, started, attempt=state.attempt)
        state.log.stage_start(name)
        try:
            with state.log.heartbeat(name, state.spark):
                fn(state)
                for hook in state.extras.get(f"after_{name}", ()):
                    hook(state)  # e.g. watermark filtering after extract (engine/bookmarking.py)
            if name == "write":
                _finalize_counts(state)
        except BaseException as e:
            dur = time.monotonic() - t0
            stopped = isinstance(e, KeyboardInterrupt | SystemExit) or was_cancelled(e) or bool(
                stop is not None and stop.requested)
            if stopped:
                why = (stop.requested if stop is not None else None) or "its Spark jobs were cancelled"
                failure = JobFailed(state.job, name, f"stopped ({why})", run_id=state.run_id)
                status = "STOPPED"
            else:
                failure = e if isinstance(e, JobFailed) else explain(e, state, name)
                status = "FAILED"
            failure.run_id = state.run_id
            scrub(failure)
            if store is not None:
                store.finish_stage(state.run_id, name, status=status, duration_s=round(dur, 3),
                                   metrics=state.metrics.get(name), error=failure.render(),
                                   attempt=state.attempt, seq=seq)
            state.log.stage_end(name, status, dur)
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
            if stopped:
                raise KeyboardInterrupt from None
            raise failure from (None if isinstance(e, JobFailed) else e)
        dur = time.monotonic() - t0
        state.metrics[name]["duration_s"] = round(dur, 3)
        if store is not None:
            store.finish_stage(state.run_id, name, status="SUCCEEDED", duration_s=round(dur, 3),
                               metrics=state.metrics[name], attempt=state.attempt, seq=seq)
        state.log.stage_end(name, "SUCCEEDED", dur, _summary(name, state.metrics[name]))


def run_log_path(store: Any, run_id: str) -> Path | None:
    """`<state dir>/logs/jobs/<run id>.log` beside a local state file (on Glue, CloudWatch has the driver's log)."""
    db = getattr(store, "path", None)
    return Path(db).parent / "logs" / "jobs" / f"{run_id}.log" if db is not None else None


def scrub(failure: JobFailed) -> JobFailed:
    """Hide resolved secrets in a failure's message and hint (a `python:` step's exception may quote one), before
    it reaches any store (SQLite or DynamoDB), the run result or the CLI."""
    from etl_framework.redaction import known, redact_text

    if known():
        failure.message, failure.hint = redact_text(failure.message), redact_text(failure.hint or "")
        failure.detail = redact_text(failure.detail or "")
        failure.args = (failure.render(),)
    return failure


class _NothingNew(Exception):
    """Every incremental source is fully bookmarked: the run ends successfully before Spark starts."""


def run_loaded(
    config: JobConfig,
    *,
    spark: Any = None,
    store: RunStore | None = None,
    env: str = "local",
    env_config: EnvConfig | None = None,
    project_root: Path | None = None,
    job_path: Path | None = None,
    params: dict[str, Any] | None = None,
    run_properties: Any = None,
    workflow_run_id: str | None = None,
    run_id: str | None = None,
    attempt: int = 1,
    skip_stages: Iterable[str] = (),
    prepare: Callable[[JobRunState], None] | None = None,
    quiet: bool | None = None,
) -> JobRunResult:
    """Run an already loaded job config (tests and engines that load jobs themselves use this directly)."""
    from etl_framework.config.interpolate import redact
    from etl_framework.stages.extract import preflight as extract_preflight
    from etl_framework.stages.write import preflight
    from etl_framework.tables import storage_for
    from etl_framework.tables.fs import target_key

    run_id = run_id or new_run_id()
    params = dict(params if params is not None else config.params)
    props = run_properties if run_properties is not None else LocalRunProperties()
    log = JobLog(config.job, run_id, quiet=quiet)
    log_file = run_log_path(store, run_id)
    if log_file is not None:
        log.open_file(log_file)
    t0 = time.monotonic()
    if store is not None:
        store.create_run({
            "run_id": run_id, "job": config.job, "env": env, "job_path": str(job_path) if job_path else None,
            "params": redact(params), "status": "RUNNING", "attempt": attempt, "started_at": utcnow(),
            "workflow_run_id": workflow_run_id,
        })
    log.info(f"run {run_id} started (env {env})")
    lock_keys = list(dict.fromkeys(target_key(p) for p in config.tables_written()))
    held: Any = None
    state: JobRunState | None = None
    plan: Any = None
    bookmarks: Any = None
    failure: JobFailed | None = None
    interrupted = False
    stage = "start"
    stop = StopSignals()
    own_group = False
    try:
        if store is not None:
            from etl_framework.state.base import TargetLocked
            from etl_framework.state.locks import HeldLock, when

            try:
                store.acquire_target_lock(lock_keys, run_id, config.job)
                held = HeldLock(store, lock_keys, run_id)
            except TargetLocked as e:
                h = e.holder
                raise JobFailed(config.job, "write", f"another run is writing the same table: run "
                                f"{h.get('run_id')} of job {h.get('job')} (pid {h.get('pid')} on {h.get('host')}, "
                                f"since {h.get('acquired_at')}, lease until {when(h.get('lease_until'))}) holds "
                                f"{e.target}",
                                f"wait for run {h.get('run_id')} to finish (etl show {h.get('run_id')}); if its "
                                "process is gone, the next run takes the lock over by itself once its lease "
                                f"expires, or release it by hand: etl runs --unlock {e.target}") from None
        stage = "write"
        storage = storage_for(env_config, project_root)
        preflight(config, storage)
        stage = "extract"
        if not skip_stages:
            extract_preflight(config)
        if env_config is not None and "write" not in skip_stages and any(
                s.incremental for s in config.sources.values()):
            from etl_framework.engine.bookmarking import plan_incremental
            from etl_framework.state.bookmarks import open_bookmark_store

            bookmarks = open_bookmark_store(env_config)
            plan = plan_incremental(config, env_config, bookmarks, run_id, log, storage)
            fault("bookmark.planned")
            if plan is not None and plan.nothing_new:
                log.info(plan.message)
                if store is not None:
                    store.set_detail(run_id, "no_new_input", plan.message)
                raise _NothingNew
        stage = "start"
        if config.quality and not native.covers(config.quality):
            # Great Expectations' ~4 s import overlaps Spark's start-up and the extract; rules Spark checks alone
            # (quality.native) never import it
            from etl_framework.quality.gate import preload_gx

            preload_gx()
        if spark is None:
            from etl_framework.runtime.spark import get_spark
            from etl_framework.stages.jdbc import source_jars

            spark = get_spark(project_root, (env_config.spark if env_config else None) or None,
                              extra_jars=source_jars(config, project_root))
        if env_config is not None and env_config.aws.endpoint_url:
            # s3a:// paths follow the env's endpoint override (a moto server locally), like every AWS client
            from etl_framework.catalog.source import configure_s3a

            configure_s3a(spark, env_config.aws.endpoint_url, env_config.aws.region)
        session = spark.newSession()
        from etl_framework.runtime.spark import apply_run_confs

        apply_run_confs(session, env_config.spark if env_config is not None else None)
        sc = spark.sparkContext
        group = sc.getLocalProperty("spark.jobGroup.id")  # a workflow's inline executor set one already
        if group is None:
            group, own_group = run_id, True
            sc.setJobGroup(group, f"job {config.job} run {run_id}", True)
        stop.attach(spark, group)
        ctx = JobContext(job=config.job, run_id=run_id, env=env, params=params, spark=session,
                         logger=python_logger(log), run_properties=props, workflow_run_id=workflow_run_id,
                         project_root=project_root, job_path=job_path)
        state = JobRunState(config=config, run_id=run_id, spark=session, log=log, ctx=ctx, store=store, env=env,
                            env_config=env_config, project_root=project_root, job_path=job_path, params=params,
                            attempt=attempt, workflow_run_id=workflow_run_id)
        state._storage = storage
        state.lock = held
        state.extras["stop"] = stop
        if plan is not None:
            plan.apply(state)
        if prepare is not None:
            prepare(state)
        execute(state, skip=skip_stages)
        if plan is not None:
            fault("bookmark.before_cache")
            plan.commit(bookmarks, state)
            fault("bookmark.cached")
            if store is not None:
                store.set_detail(run_id, "bookmarks", {"before": state.extras.get("bookmark_before"),
                                                       "after": state.extras.get("bookmark_after")})
    except _NothingNew:
        pass
    except JobFailed as e:
        failure = e
    except EtlError as e:
        failure = JobFailed(config.job, state.stage if state else stage, str(e))
    except (KeyboardInterrupt, SystemExit):
        interrupted = True
        failure = JobFailed(config.job, state.stage if state else stage, f"stopped ({stop.requested or 'interrupted'})")
    except Exception as e:  # noqa: BLE001 - a run records its failure, it never crashes the caller
        from etl_framework.engine.errors import explain

        failure = explain(e, state, state.stage if state else stage)
    finally:
        stop.hold()
        if own_group:
            try:
                spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
            except Exception:  # noqa: BLE001, S110 - the JVM may be gone
                pass
        duration = time.monotonic() - t0
        status = "SUCCEEDED" if failure is None else ("STOPPED" if interrupted else "FAILED")
        exit_code = 0 if failure is None else (130 if interrupted else failure.exit_code)
        if failure is not None:
            failure.run_id = run_id
            scrub(failure)
        if failure is not None:
            log.write_file(f"error: {failure.render()}" + (f"\n--- full error ---\n{failure.detail}"
                                                          if failure.detail else ""))
        if store is not None:
            try:
                if failure is not None:
                    store.set_detail(run_id, "error_detail", failure.detail or failure.message)
                    store.set_detail(run_id, "retryable", bool(failure.retryable) and not interrupted)
                if log.file is not None:
                    store.set_detail(run_id, "log", str(log_file))
                store.update_run(run_id, status=status, ended_at=utcnow(), duration_s=round(duration, 3),
                                 error=failure.render() if failure else None,
                                 error_stage=failure.stage if failure else None, exit_code=exit_code)
            finally:  # the locks go even when the record cannot be written
                if held is not None:
                    held.release()
        if failure is None:
            log.info(f"run {run_id} succeeded in {duration:.1f}s")
        else:
            log.info(f"run {run_id} {status.lower()} in {duration:.1f}s")
        if env_config is not None and not interrupted:
            _notify(config, env_config, env, run_id, status, exit_code, failure, duration,
                    state.metrics if state else {}, log, store,
                    bookmark=state.extras.get("bookmark_after") if state else None)
        log.close()
        if interrupted and spark is not None and stop.active:  # a process-wide stop (inline: the CLI drains)
            from etl_framework.runtime.spark import drain_tasks

            drain_tasks(spark)  # the cancelled tasks end before the caller may exit the process
        if stop.restore() or (interrupted and stop.active):
            why = stop.requested or "interrupted"
            raise RunStopped(f"run {run_id} of job {config.job} stopped ({why}) in stage {failure.stage}; its locks "
                             f"are released; details: etl show {run_id}" if failure is not None else
                             f"run {run_id} of job {config.job} {status.lower()}; a stop ({why}) came during its "
                             f"clean-up; details: etl show {run_id}", run_id)
    return JobRunResult(
        run_id=run_id, job=config.job, status=status, exit_code=exit_code,
        error=failure.message if failure else None, error_stage=failure.stage if failure else None,
        hint=failure.hint if failure else None, duration_s=duration,
        metrics=state.metrics if state else {}, exception=failure,
    )


def _notify(config: JobConfig, env_config: Any, env: str, run_id: str, status: str, exit_code: int,
            failure: Any, duration: float, metrics: dict[str, Any], log: Any, store: Any,
            bookmark: Any = None) -> None:
    """Alerting (notify.py) once the run's record is final; never changes the result."""
    from etl_framework.metrics import on_aws
    from etl_framework.notify import effective, notify_run

    n = effective(env_config.notifications, config.notifications)
    if on_aws(env_config):
        _publish_aws(config, env_config, env, run_id, n, duration, metrics, log, bookmark)
    if n is None:
        return
    error = failure.message if failure is not None else None
    notify_run(n, job=config.job, run_id=run_id, env=env, status=status, exit_code=exit_code, error=error,
               duration_s=duration, metrics=metrics, report=f"etl report --env {env} (run {run_id})",
               log=log, store=store)


def _publish_aws(config: JobConfig, env_config: Any, env: str, run_id: str, n: Any, duration: float,
                 metrics: dict[str, Any], log: Any, bookmark: Any = None) -> None:
    """On AWS: the run's CloudWatch metrics, and its quality verdict as an EventBridge event (routed to SNS by the
    rules deploy made). Best effort: a failure is a warning, never the run's result."""
    from etl_framework.metrics import publish, run_numbers
    from etl_framework.notify import publish_quality_event

    try:
        publish(env_config, config.job, env, run_numbers(metrics, duration, bookmark))
    except Exception as e:  # noqa: BLE001 - metrics never fail a run
        log.warning(f"CloudWatch metrics not published: {e}")
    q = metrics.get("quality")
    if n is not None and n.sns and q:
        from etl_framework.notify import events_of

        ok = not q.get("failed")
        raised = events_of(n, "SUCCEEDED" if ok else "FAILED", 0 if ok else 3, None, duration, metrics)
        try:
            publish_quality_event(env_config, config.job, run_id, env, metrics, ok=ok,
                                  notify=bool(set(raised) & {"quality_failed", "quarantine_above"}))
        except Exception as e:  # noqa: BLE001 - alerting never fails a run
            log.warning(f"quality event not published: {e}")


def run_job(
    job_path: Path | str,
    *,
    project: Project,
    env: str = "local",
    params: dict[str, Any] | None = None,
    run_properties: Any = None,
    workflow_run_id: str | None = None,
    spark: Any = None,
    run_id: str | None = None,
    attempt: int = 1,
    skip_stages: Iterable[str] = (),
    prepare: Callable[[JobRunState], None] | None = None,
    quiet: bool | None = None,
) -> JobRunResult:
    """Load and run one job file. Config errors raise `ConfigErrors` (exit 2) before any run is recorded; a
    failure of the run itself is recorded and returned, never raised."""
    from etl_framework.config.load import load_job
    from etl_framework.state.runs import open_run_store

    run_id = run_id or new_run_id()
    props = run_properties if run_properties is not None else LocalRunProperties()
    run_vars = {"id": workflow_run_id or run_id, "job_run_id": run_id,
                "date": datetime.now(UTC).strftime("%Y-%m-%d"), **properties_dict(props)}
    loaded = load_job(Path(job_path), project, env=env, params=params, run=run_vars)
    env_config = project.env_config(env)
    store = open_run_store(env_config)
    try:
        return run_loaded(
            loaded.config, spark=spark, store=store, env=env, env_config=env_config, project_root=project.root,
            job_path=loaded.path, params=loaded.params, run_properties=props, workflow_run_id=workflow_run_id,
            run_id=run_id, attempt=attempt, skip_stages=skip_stages, prepare=prepare, quiet=quiet,
        )
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


def debug() -> bool:
    return bool(os.environ.get("ETL_DEBUG"))
