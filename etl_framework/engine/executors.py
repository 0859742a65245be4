"""How workflow nodes run (SPEC §7 executors).

- `inline`: every job of the run shares this process's one SparkSession and runs in its own thread (fastest: one
  JVM start per workflow run). A thread cannot be killed, so a timeout cancels the attempt's Spark job group
  (`setJobGroup(..., interruptOnCancel=True)` + `cancelJobGroup`) and keeps cancelling it until the thread ends.
- `subprocess`: every job attempt is its own `spark-submit scripts/etl_job.py` with Glue-style arguments
  (`--JOB_NAME --JOB_RUN_ID --job_config --env --WORKFLOW_NAME --WORKFLOW_RUN_ID --<param> <value>`), isolated as
  on Glue; a timeout kills its process group. Its output goes to `<state dir>/logs/<run id>/<node>.<attempt>.log`.

Crawlers run in-process in both (they are pure Python and light); so do maintain nodes (`maintain: JOB`:
`engine.maintain.maintain_tables` on the job's tables, with the inline executor's shared SparkSession, or one made in
this process for the subprocess executor; a timeout cancels its Spark job group). Both load the job config at STARTING: a job
whose config does not load at run time (a deleted file, a bad param, an unknown `${run.X}`) is ERROR, not FAILED.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from etl_framework.config.errors import ConfigErrors
from etl_framework.engine.workflow import NodeOutcome, NodeTask
from etl_framework.errors import EtlError
from etl_framework.redaction import copy_redacted

KILL_GRACE_SECONDS = 10.0


def new_job_run_id() -> str:
    """A job run id as the job runtime makes them (Glue's shape, jr_...)."""
    try:
        from etl_framework.engine.job import new_run_id
    except ImportError:
        return "jr_" + secrets.token_hex(32)
    return new_run_id()


class _Base:
    name = "base"

    def __init__(self, project: Any, env: str = "local", *, progress: Any = None) -> None:
        self.project, self.env = project, env
        self.env_config = project.env_config(env)
        self.progress = progress or (lambda _m: None)
        self._spark: Any = None
        self._spark_lock = threading.Lock()

    def spark(self) -> Any:
        """This process's SparkSession, made on first use (a crawler-only run starts no JVM)."""
        with self._spark_lock:
            if self._spark is None:
                from etl_framework.runtime.spark import get_spark

                self._spark = get_spark(self.project.root, self.env_config.spark)
            return self._spark

    def _cancel_spark(self, task: NodeTask) -> None:
        """Cancel the Spark jobs a node runs in this process (an inline job, a maintain node)."""
        if task.kind in ("job", "maintain") and self._spark is not None:
            self._spark.sparkContext.cancelJobGroup(task.group_id)

    # -------------------------------------------------------------------------------------- maintain nodes

    def run_maintain(self, task: NodeTask) -> NodeOutcome:
        """`maintain: JOB`: the job's existing tables through `engine.maintain` (a table not written yet is nothing
        to maintain); a held write lock or a Spark error is FAILED with the table named, not retried."""
        from etl_framework.engine.maintain import job_targets, maintain_tables
        from etl_framework.errors import JobFailed

        path = task.spec.job_path
        if path is None or not Path(path).is_file():
            return NodeOutcome("ERROR", f"{task.node}: job file {path} does not exist", retryable=False)
        task.on_running(None)
        try:
            job, targets = job_targets(Path(path), self.project, self.env)
        except ConfigErrors as e:
            return NodeOutcome("ERROR", f"{task.node} cannot start, the job's config is invalid:\n{e}",
                               retryable=False)
        if not targets:
            note = f"nothing to maintain: no table of job {job} is written yet"
            self.progress(f"{task.node}: {note}")
            return NodeOutcome("SUCCEEDED", result={"job": job, "tables": [], "note": note}, summary=note)
        try:
            spark = self.spark()
        except EtlError as e:
            return NodeOutcome("ERROR", f"{task.node} cannot start: {e}", retryable=False)
        sc = spark.sparkContext
        sc.setJobGroup(task.group_id, f"workflow {task.workflow} run {task.run_id} {task.node}", True)
        opts = task.arguments
        try:
            results = maintain_tables(targets, project=self.project, env=self.env, zorder=opts.get("zorder"),
                                      retain_hours=opts.get("retain_hours"), spark=spark, log=self.progress, job=job)
        except JobFailed as e:
            if task.cancelled.is_set():
                return NodeOutcome("STOPPED", str(e), retryable=False)
            return NodeOutcome("FAILED", str(e), retryable=False)
        finally:
            try:
                sc.setLocalProperty("spark.jobGroup.id", None)
            except Exception:  # noqa: BLE001, S110 - the session may be gone at shutdown
                pass
        tables = [{"table": t.label, **r.metrics()} for t, r in zip(targets, results, strict=True)]
        summary = "; ".join(f"{t['table']}: files {t.get('files_before')} -> {t.get('files_after')}"
                            for t in tables)
        return NodeOutcome("SUCCEEDED", result={"job": job, "tables": tables}, summary=summary)

    # -------------------------------------------------------------------------------------------- crawlers

    def run_crawler(self, task: NodeTask) -> NodeOutcome:
        from etl_framework.catalog import catalog_for
        from etl_framework.catalog.crawler import run_crawler

        spec = task.spec.crawler
        if spec is None:
            return NodeOutcome("FAILED", f"crawler {task.node} has no definition", retryable=False)
        task.on_running(None)
        catalog = catalog_for(self.env_config, self.project.root)
        try:
            res = run_crawler(
                catalog, self.env_config, task.node, spec.path, spec.database, spec.table,
                spec.schema_change, aws=self.env_config.aws, cancel=task.cancelled,
            )
        finally:
            close = getattr(catalog, "close", None)
            if callable(close):
                close()
        return NodeOutcome(res.state, res.message if res.state != "SUCCEEDED" else None)

    # -------------------------------------------------------------------------------------------- jobs

    def preload(self, task: NodeTask) -> NodeOutcome | None:
        """Load the job config as the attempt will (params, `${run.X}`): a problem here is ERROR (not retried)."""
        from etl_framework.config.load import load_job

        path = task.spec.job_path
        if path is None or not Path(path).is_file():
            return NodeOutcome("ERROR", f"job file {path} does not exist", retryable=False)
        run_vars = None
        if task.run_properties is not None:
            run_vars = {**task.run_properties.run_vars(), "workflow": task.workflow, "env": self.env,
                        "job": task.node}
        try:
            # the semantic checks ran when the workflow was loaded (and run again inside the job run)
            load_job(path, self.project, self.env, params=task.arguments, run=run_vars, check=False)
        except ConfigErrors as e:
            return NodeOutcome("ERROR", f"job {task.node} cannot start, its config is invalid:\n{e}", retryable=False)
        except EtlError as e:
            return NodeOutcome("ERROR", f"job {task.node} cannot start: {e}", retryable=False)
        return None

    def run(self, task: NodeTask) -> NodeOutcome:
        if task.kind == "crawler":
            return self.run_crawler(task)
        if task.kind == "maintain":
            return self.run_maintain(task)
        bad = self.preload(task)
        if bad is not None:
            return bad
        return self.run_job(task)

    def run_job(self, task: NodeTask) -> NodeOutcome:
        raise NotImplementedError


def outcome_of(result: Any) -> NodeOutcome:
    """A NodeOutcome from the runtime's JobRunResult(run_id, status, error, exit_code)."""
    status = str(getattr(result, "status", "FAILED")).upper()
    exit_code = getattr(result, "exit_code", None)
    error = getattr(result, "error", None)
    if status not in ("SUCCEEDED", "FAILED", "ERROR", "STOPPED", "TIMEOUT"):
        status = "SUCCEEDED" if exit_code == 0 else "FAILED"
    return NodeOutcome(
        status, None if status == "SUCCEEDED" else (str(error) if error else f"exit code {exit_code}"),
        job_run_id=getattr(result, "run_id", None), exit_code=exit_code,
        # a quality gate (exit 3), a config problem (exit 2) or an analysis/parse/cast error fails the same way on
        # every attempt
        retryable=exit_code not in (2, 3) and getattr(getattr(result, "exception", None), "retryable", True),
    )


class InlineExecutor(_Base):
    """Jobs in threads of this process, sharing one SparkSession (created on the first job, not before: a
    crawler-only run starts no JVM)."""

    name = "inline"

    def __init__(self, project: Any, env: str = "local", *, job_runner: Any = None, progress: Any = None) -> None:
        super().__init__(project, env, progress=progress)
        self.job_runner = job_runner

    def run_job(self, task: NodeTask) -> NodeOutcome:
        runner = self.job_runner
        if runner is None:
            try:
                from etl_framework.engine.job import run_job as runner
            except ImportError as e:
                return NodeOutcome("ERROR", f"the job runtime is not available: {e}", retryable=False)
        try:
            spark = self.spark()
        except EtlError as e:
            return NodeOutcome("ERROR", f"job {task.node} cannot start: {e}", retryable=False)
        job_run_id = new_job_run_id()
        sc = spark.sparkContext
        sc.setJobGroup(task.group_id, f"workflow {task.workflow} run {task.run_id} job {task.node}", True)
        task.on_running(job_run_id)
        try:
            result = runner(
                task.spec.job_path, project=self.project, env=self.env, params=dict(task.arguments),
                run_properties=task.run_properties, workflow_run_id=task.run_id, spark=spark,
                run_id=job_run_id, attempt=task.attempt,
            )
        except ConfigErrors as e:
            return NodeOutcome("ERROR", f"job {task.node} cannot start, its config is invalid:\n{e}",
                               job_run_id=job_run_id, exit_code=2, retryable=False)
        except EtlError as e:
            return NodeOutcome("FAILED", str(e), job_run_id=getattr(e, "run_id", None),
                               exit_code=e.exit_code, retryable=e.exit_code not in (2, 3))
        finally:
            try:
                sc.setLocalProperty("spark.jobGroup.id", None)
            except Exception:  # noqa: BLE001, S110 - the session may be gone at shutdown
                pass
        return outcome_of(result)

    def cancel(self, task: NodeTask) -> None:
        task.cancelled.set()
        self._cancel_spark(task)


class SubprocessExecutor(_Base):
    """Each job attempt is `spark-submit scripts/etl_job.py ...` in its own process group."""

    name = "subprocess"

    def __init__(self, project: Any, env: str = "local", *, progress: Any = None) -> None:
        super().__init__(project, env, progress=progress)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.run_ids: dict[str, str] = {}
        self._lock = threading.Lock()
        self._props_file: Path | None = None

    def entry_script(self) -> Path:
        for base in (self.project.root, Path(__file__).resolve().parents[2]):
            p = base / "scripts" / "etl_job.py"
            if p.is_file():
                return p
        raise EtlError("scripts/etl_job.py not found in the project or the package\n  what to do: run the workflow"
                       " with --executor inline, or restore scripts/etl_job.py")

    def spark_submit(self) -> str:
        cand = Path(sys.executable).parent / "spark-submit"
        found = str(cand) if cand.exists() else shutil.which("spark-submit")
        if not found:
            raise EtlError("spark-submit not found next to python or on PATH\n  what to do: install pyspark in this "
                           "environment (`make install`) or use --executor inline")
        return found

    def properties_file(self) -> Path:
        """The effective Spark conf (spark-defaults.conf + env `spark:` block, JAR paths absolute) as a file."""
        with self._lock:
            if self._props_file is None:
                from etl_framework.runtime.spark import resolve_conf

                conf = resolve_conf(self.project.root, self.env_config.spark)
                d = Path(self.env_config.state.path).parent / "spark"
                d.mkdir(parents=True, exist_ok=True)
                path = d / f"spark-defaults.{os.getpid()}.conf"
                path.write_text("".join(f"{k} {v}\n" for k, v in conf.items()))
                self._props_file = path
            return self._props_file

    def command(self, task: NodeTask, job_run_id: str) -> list[str]:
        from etl_framework.runtime.args import to_glue_arguments

        cmd = [
            self.spark_submit(), "--properties-file", str(self.properties_file()), str(self.entry_script()),
            "--JOB_NAME", task.node, "--JOB_RUN_ID", job_run_id, "--job_config", str(task.spec.job_path),
            "--env", self.env, "--project_dir", str(self.project.root),
            "--WORKFLOW_NAME", task.workflow, "--WORKFLOW_RUN_ID", task.run_id,
        ]
        for k, v in to_glue_arguments(task.arguments).items():
            cmd += [k, v]
        return cmd

    def log_path(self, task: NodeTask) -> Path:
        d = Path(self.env_config.state.path).parent / "logs" / task.run_id
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{task.node}.{task.attempt}.log"

    def run_job(self, task: NodeTask) -> NodeOutcome:
        from etl_framework.runtime.spark import java_home

        job_run_id = new_job_run_id()
        try:
            cmd = self.command(task, job_run_id)
            home = java_home()
        except EtlError as e:
            return NodeOutcome("ERROR", f"job {task.node} cannot start: {e}", retryable=False)
        env = dict(os.environ)
        if home:
            env["JAVA_HOME"] = home
        env.update(spark_env())
        env["ETL_PROJECT_DIR"] = str(self.project.root)
        log = self.log_path(task)
        with open(log, "wb") as out:
            # the child redacts what it prints itself; its output (the JVM's too) is piped through this process's
            # redaction on the way to the log as well
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, cwd=self.project.root)
            assert proc.stdout is not None
            pump = threading.Thread(target=copy_redacted, args=(proc.stdout, out), daemon=True,
                                    name=f"etl-log-{task.node}")
            pump.start()
            with self._lock:
                self.procs[task.group_id] = proc
                self.run_ids[task.group_id] = job_run_id
            task.on_running(job_run_id)
            code = proc.wait()
            pump.join(timeout=30)  # a grandchild that escaped the process group may hold the pipe open
            if not pump.is_alive():
                proc.stdout.close()
        with self._lock:
            self.procs.pop(task.group_id, None)
            self.run_ids.pop(task.group_id, None)
        if code == 0:
            return NodeOutcome("SUCCEEDED", job_run_id=job_run_id, exit_code=0)
        tail = _error_tail(log)
        msg = f"spark-submit exited with {code}" + (f": {tail}" if tail else "") + f" (log: {log})"
        if code == 130:  # the job took a stop (the engine's cancel, `etl stop`, SIGINT) and recorded it STOPPED
            return NodeOutcome("STOPPED", msg, job_run_id=job_run_id, exit_code=code, retryable=False)
        return NodeOutcome("ERROR" if code == 2 else "FAILED", msg, job_run_id=job_run_id, exit_code=code,
                           retryable=code not in (2, 3) and self.retryable(job_run_id))

    def _stop_driver(self, task: NodeTask) -> bool:
        """SIGTERM the job's Python driver alone (its run record's pid): it cancels its Spark jobs, records the run
        STOPPED and exits 130, which spark-submit passes on. Signalling the whole group would also end
        spark-submit's JVM under the driver, whose stop could then not finish. False when the driver is unknown."""
        import socket

        with self._lock:
            job_run_id = self.run_ids.get(task.group_id)
        try:
            from etl_framework.state.db import pid_alive
            from etl_framework.state.runs import open_run_store

            store = open_run_store(self.env_config)
            try:
                rec = store.get_run(job_run_id) if job_run_id else None
            finally:
                store.close()
            if not rec or rec.get("host") != socket.gethostname() or not pid_alive(rec.get("pid")):
                return False
            os.kill(int(rec["pid"]), signal.SIGTERM)
            return True
        except Exception:  # noqa: BLE001 - fall back to the process group
            return False

    def retryable(self, job_run_id: str) -> bool:
        """What the job's own run record says (a deterministic error is not retried); True when it says nothing."""
        try:
            from etl_framework.state.runs import open_run_store

            store = open_run_store(self.env_config)
            try:
                rec = store.get_run(job_run_id) or {}
            finally:
                store.close()
        except Exception:  # noqa: BLE001 - no record (the job died before writing one): retry as before
            return True
        return (rec.get("details") or {}).get("retryable", True) is not False

    def cancel(self, task: NodeTask) -> None:
        task.cancelled.set()
        if task.kind == "maintain":  # in this process, as with the inline executor
            self._cancel_spark(task)
            return
        with self._lock:
            proc = self.procs.get(task.group_id)
        if proc is None or proc.poll() is not None:
            return
        if not self._stop_driver(task):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return

        def hard_kill() -> None:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        t = threading.Timer(KILL_GRACE_SECONDS, hard_kill)
        t.daemon = True
        t.start()


def spark_env() -> dict[str, str]:
    """SPARK_HOME and the driver/worker Python for spark-submit: pyspark's own folder and this interpreter (its
    launcher would otherwise look for `python3` on PATH, which may not be this venv's)."""
    import importlib.util

    out = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    if not os.environ.get("SPARK_HOME"):
        spec = importlib.util.find_spec("pyspark")
        if spec is not None and spec.origin:
            out["SPARK_HOME"] = str(Path(spec.origin).parent)
    return out


def _error_tail(log: Path, lines: int = 6) -> str:
    """The job's own error lines (`error: ...` and what follows), else the last lines of its output."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for i, line in enumerate(text):
        if line.startswith("error:"):
            return "\n".join(text[i:i + lines]).strip()
    return "\n".join(t for t in text[-lines:] if t.strip()).strip()


def make_executor(name: str, project: Any, env: str = "local", **kw: Any) -> InlineExecutor | SubprocessExecutor:
    if name == "subprocess":
        return SubprocessExecutor(project, env, **kw)
    if name == "inline":
        return InlineExecutor(project, env, **kw)
    raise EtlError(f"unknown executor {name!r}: use inline or subprocess")
