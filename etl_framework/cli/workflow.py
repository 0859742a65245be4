"""`etl workflow run|resume|status`: workflow runs with AWS Glue Workflow semantics (SPEC §7, §9).

Exit codes: 0 every action of the run succeeded; 1 an action failed, timed out, errored or was stopped, or the run
was refused by max_concurrent_runs; 2 bad config or usage.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from etl_framework.cli.common import err, prestart_spark, print_json
from etl_framework.errors import EtlError, UsageError


def parse_properties(items: tuple[str, ...]) -> dict[str, Any]:
    """`--property k=v`: v is parsed as JSON when it is JSON (numbers, true/false, lists), else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--property {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def workflow_file(project: Any, ref: str) -> Path:
    """A workflow given as a file, or by name among the project's jobs/ files."""
    p = Path(ref)
    if p.is_file():
        return p
    if p.suffix in (".yaml", ".yml"):
        raise UsageError(f"workflow file {ref} does not exist")
    from etl_framework.config.loader import load_yaml

    names = []
    for f in sorted(project.jobs_dir.glob("*.y*ml")):
        try:
            data = load_yaml(f).data
        except Exception:  # noqa: BLE001, S112 - a broken neighbour file does not hide this workflow
            continue
        if isinstance(data, dict) and "workflow" in data:
            names.append(str(data["workflow"]))
            if data["workflow"] == ref:
                return f
    raise UsageError(f"no workflow named {ref!r} in {project.jobs_dir}" + (f" (workflows: {', '.join(names)})"
                                                                           if names else ""))


# a workflow (or env) naming the subprocess executor starts no Spark session in this process
PRESTART_VETO = r"\bexecutor\s*:\s*['\"]?subprocess"


def _project(ctx: click.Context, start: Path | None = None) -> Any:
    from etl_framework.config.project import Project, project_for

    if start is not None:
        return project_for(start, ctx.obj.get("project_dir"))
    return Project.discover(ctx.obj.get("project_dir"))


def _store(project: Any, env: str) -> Any:
    from etl_framework.state.workflows import open_workflow_store

    return open_workflow_store(project.env_config(env))


def _executor_name(option: str | None, env_cfg: Any, config: Any) -> str:
    return option or getattr(env_cfg, "executor", None) or config.executor


@contextmanager
def stop_on_signals(run: Any) -> Iterator[None]:
    """SIGTERM/SIGINT stop the run cleanly (running nodes cancelled and marked STOPPED, the run STOPPED with the
    signal as reason: resumable); a second signal aborts at once."""

    def on_signal(signum: int, _frame: Any) -> None:
        # No printing here: the handler interrupts the main thread, which may be inside a write to stderr
        # ("reentrant call inside BufferedWriter"); the engine logs the stop when it takes it from its queue.
        if not run.stopping and run.run_id:
            run.stop(f"received {signal.Signals(signum).name}")
            signal.signal(signum, signal.default_int_handler)
        else:
            raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _execute(ctx: click.Context, wf_path: Path, *, properties: dict[str, Any], executor_opt: str | None,
             triggers: tuple[str, ...] = (), run_id: str | None = None, resume_of: str | None = None,
             resume_nodes: list[str] | None = None, as_json: bool = False, no_report: bool = False) -> None:
    env = ctx.obj.get("env", "local")
    if executor_opt != "subprocess":  # the inline executor's one session; a subprocess one has none here
        prestart_spark(wf_path, ctx.obj.get("project_dir"), env, veto=PRESTART_VETO)
    from etl_framework.config.load import load_workflow
    from etl_framework.engine.executors import make_executor
    from etl_framework.engine.workflow import WorkflowRun, build_node_specs

    project = _project(ctx, wf_path)
    loaded = load_workflow(wf_path, project, env)
    cfg = loaded.config
    env_cfg = project.env_config(env)
    executor = make_executor(_executor_name(executor_opt, env_cfg, cfg), project, env)
    store = _store(project, env)
    run = WorkflowRun(cfg, build_node_specs(cfg, loaded.jobs, loaded.job_paths), store, executor,
                      workflow_path=str(loaded.path), env=env)

    t0 = time.monotonic()
    with stop_on_signals(run):
        if resume_of:
            result = run.resume(resume_of, properties, resume_nodes)
        else:
            result = run.start(properties, list(triggers) or None, run_id=run_id)
        if result.state == "STOPPED" and getattr(executor, "_spark", None) is not None:
            from etl_framework.runtime.spark import drain_tasks

            drain_tasks(executor._spark)  # inline: the stopped jobs' cancelled tasks end before this process does
    record = store.get_run(result.run_id)
    report = None if no_report else _write_report(project, result.run_id, env)
    if report is not None:
        err(f"report: {report}")
    if as_json:
        print_json({**record, "report": str(report)} if report is not None else record)
    else:
        err(f"workflow {cfg.workflow} run {result.run_id} {result.state} in {time.monotonic() - t0:.1f}s"
            f" — details: etl workflow status {result.run_id}")
    if not result.ok:
        bad = [f"{n['node']} {n['state']}" for n in record["nodes"]
               if n["state"] not in (None, "SUCCEEDED") and not n["copied_from"]]
        if result.state == "STOPPED" and run.stopping:  # a signal or `etl stop`: one line, exit 130
            from etl_framework.errors import Stopped

            raise Stopped(f"workflow {cfg.workflow} run {result.run_id} stopped ({record.get('error') or 'stop'})"
                          + (f": {', '.join(bad)}" if bad else "") + f"; resume: etl workflow resume {result.run_id}")
        raise EtlError(
            f"workflow {cfg.workflow} run {result.run_id}: " + (", ".join(bad) or result.state)
            + f"\n  what to do: see `etl workflow status {result.run_id}` (and `etl show JOB_RUN_ID` for a job),"
            f" fix the cause, then `etl workflow resume {result.run_id}`"
        )


def _write_report(project: Any, run_id: str, env: str) -> Path | None:
    """The run's HTML report (etl report); a report problem never changes the run's exit code."""
    try:
        from etl_framework.report import write_report

        return write_report(project, workflow_run_id=run_id, env=env)
    except Exception as e:  # noqa: BLE001
        err(f"note: no report written ({type(e).__name__}: {e})")
        return None


# ------------------------------------------------------------------------------------------------- status


def _duration(node: dict[str, Any]) -> str:
    d = node.get("duration")
    return f"{d:.1f}s" if isinstance(d, int | float) else "-"


def status_hint(run: dict[str, Any]) -> str | None:
    if run["state"] == "RUNNING" and run.get("owner_alive") is False:
        return (f"its process (pid {run['owner_pid']} on {run['owner_host']}) is gone: the run was interrupted and"
                f" will never finish by itself. `etl workflow resume {run['run_id']}` marks it STOPPED and re-runs"
                " its unfinished and failed nodes")
    if run["state"] == "STOPPED" or (run["state"] == "COMPLETED" and any(
            n["state"] not in (None, "SUCCEEDED") for n in run["nodes"])):
        return f"resume it with `etl workflow resume {run['run_id']}` (re-runs failed nodes and what depends on them)"
    return None


def render_status(run: dict[str, Any]) -> str:
    lines = []
    state = run["state"]
    if state == "RUNNING" and run.get("owner_alive") is False:
        state = "RUNNING (orphaned: its process is gone)"
    lines.append(f"workflow {run['workflow']} run {run['run_id']}: {state}")
    lines.append(f"  started {run['started_at']}" + (f", ended {run['ended_at']}" if run["ended_at"] else "")
                 + (f" by {run['started_by']}" if run.get("started_by") else ""))
    if run.get("previous_run_id"):
        lines.append(f"  resumes {run['previous_run_id']}")
    if run.get("error"):
        lines.append(f"  reason: {run['error']}")
    if run.get("properties"):
        lines.append("  run properties: " + json.dumps(run["properties"], default=str))
    rows = [("NODE", "KIND", "STATE", "ATTEMPTS", "DURATION", "JOB RUN / NOTE")]
    for n in run["nodes"]:
        note = n.get("job_run_id") or ""
        if n.get("copied_from"):
            note = (note + " " if note else "") + f"(copied from {n['copied_from']})"
        if n.get("result"):  # a maintain node: what it did
            from etl_framework.report.model import maintain_summary

            note = (note + " " if note else "") + maintain_summary(n["result"])
        if n.get("error") and n["state"] not in ("SUCCEEDED", None):
            first = n["error"].strip().splitlines()[0]
            note = (note + " " if note else "") + first[:200]
        rows.append((n["node"], n["kind"], n["state"] or "not run", str(n["attempts"] or "-"), _duration(n), note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append("  " + "  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5])
    for t in run["triggers"]:
        lines.append(f"  trigger {t['trigger']}: {t['state']}" + (f" — {t['reason']}" if t.get("reason") else ""))
    s = run.get("statistics")
    if s:
        lines.append("  statistics: " + ", ".join(f"{k} {v}" for k, v in s.items()))
    hint = status_hint(run)
    if hint:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines)


def register(group: click.Group) -> None:
    @group.group("workflow")
    def workflow() -> None:
        """Run, resume and inspect workflow runs (AWS Glue Workflow semantics)."""

    @workflow.command("run")
    @click.argument("workflow_ref", metavar="WORKFLOW")
    @click.option("--property", "-p", "props", multiple=True, metavar="K=V",
                  help="run property (overrides run_properties; repeatable)")
    @click.option("--executor", type=click.Choice(["inline", "subprocess"]), default=None,
                  help="inline: one Spark session, jobs in threads; subprocess: one spark-submit per job"
                       " (default: the env config, else the workflow file)")
    @click.option("--trigger", "triggers", multiple=True, metavar="NAME",
                  help="start trigger to fire (default: the on_demand triggers); used by the scheduler")
    @click.option("--run-id", default=None, help="id for the new run (default: generated); used by the scheduler")
    @click.option("--json", "as_json", is_flag=True, help="print the run record as JSON on stdout")
    @click.option("--no-report", is_flag=True, help="do not write the HTML run report")
    @click.pass_context
    def run_cmd(ctx: click.Context, workflow_ref: str, props: tuple[str, ...], executor: str | None,
                triggers: tuple[str, ...], run_id: str | None, as_json: bool, no_report: bool) -> None:
        """Start a run of WORKFLOW (a workflow file, or its name in jobs/) by firing its on-demand trigger(s)."""
        path = workflow_file(_project(ctx), workflow_ref) if not Path(workflow_ref).is_file() else Path(workflow_ref)
        _execute(ctx, path, properties=parse_properties(props), executor_opt=executor, triggers=triggers,
                 run_id=run_id, as_json=as_json, no_report=no_report)

    @workflow.command("resume")
    @click.argument("run_id")
    @click.option("--property", "-p", "props", multiple=True, metavar="K=V", help="override a run property")
    @click.option("--executor", type=click.Choice(["inline", "subprocess"]), default=None)
    @click.option("--node", "nodes", multiple=True, metavar="NAME",
                  help="restart only these nodes (and what is downstream of them); default: every failed node")
    @click.option("--json", "as_json", is_flag=True, help="print the new run record as JSON on stdout")
    @click.option("--no-report", is_flag=True, help="do not write the HTML run report")
    @click.pass_context
    def resume_cmd(ctx: click.Context, run_id: str, props: tuple[str, ...], executor: str | None,
                   nodes: tuple[str, ...], as_json: bool, no_report: bool) -> None:
        """Resume a finished run (Glue ResumeWorkflowRun): a new run that re-runs the failed, timed-out, stopped
        and errored nodes and everything downstream of them, and copies the other nodes' results."""
        project = _project(ctx)
        store = _store(project, ctx.obj.get("env", "local"))
        prev = store.get_run(run_id)
        if prev is None:
            raise UsageError(f"no workflow run {run_id} in {store.path}\n  what to do: `etl workflow status --list`"
                             " shows recent runs")
        path = Path(prev["workflow_path"] or "")
        if not path.is_file():
            path = workflow_file(project, prev["workflow"])
        _execute(ctx, path, properties=parse_properties(props), executor_opt=executor, resume_of=run_id,
                 resume_nodes=list(nodes) or None, as_json=as_json, no_report=no_report)

    @workflow.command("status")
    @click.argument("run_id", required=False)
    @click.option("--workflow", "workflow_name", default=None, help="latest run of this workflow")
    @click.option("--list", "list_runs", is_flag=True, help="list recent runs instead")
    @click.option("--limit", default=20, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output on stdout")
    @click.pass_context
    def status_cmd(ctx: click.Context, run_id: str | None, workflow_name: str | None, list_runs: bool,
                   limit: int, as_json: bool) -> None:
        """Show a workflow run (default: the latest): per-node state, attempts, times, job runs, triggers."""
        project = _project(ctx)
        store = _store(project, ctx.obj.get("env", "local"))
        if list_runs:
            runs = store.list_runs(workflow_name, limit)
            if as_json:
                print_json(runs)
                return
            if not runs:
                err("no workflow runs yet")
            for r in runs:
                s = r.get("statistics") or {}
                st = "RUNNING (orphaned)" if r["state"] == "RUNNING" and r["owner_alive"] is False else r["state"]
                click.echo(f"{r['run_id']}  {r['workflow']}  {st:<9}  {r['started_at']}  "
                           f"{s.get('SucceededActions', '-')}/{s.get('TotalActions', '-')} succeeded"
                           + (f"  (resumes {r['previous_run_id']})" if r.get("previous_run_id") else ""))
            return
        run_id = run_id or store.latest_run_id(workflow_name)
        if run_id is None:
            raise UsageError("no workflow runs yet" + (f" for {workflow_name}" if workflow_name else "")
                             + "\n  what to do: start one with `etl workflow run WORKFLOW`")
        run = store.get_run(run_id)
        if run is None:
            raise UsageError(f"no workflow run {run_id} in {store.path}\n  what to do: `etl workflow status --list`")
        run["hint"] = status_hint(run)
        if as_json:
            print_json(run)
        else:
            click.echo(render_status(run))
