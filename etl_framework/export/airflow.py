"""`etl export airflow`: a workflow file as one self-contained Airflow DAG file (SPEC §12, for Amazon MWAA).

The DAG file is plain Python that imports only Airflow: no YAML and no Spark at DAG-parse time, so the scheduler
parses it in milliseconds. Everything the workflow says is translated here, at export time, into a pure `DagPlan`
(unit-testable without Airflow), then rendered as text with stable ordering, so that `--check` can compare a
committed file byte for byte.

Translation (Glue Workflow semantics -> Airflow):
- jobs -> `GlueJobOperator` on the Glue job `etl deploy` made (cloud env) or a `BashOperator` running `etl run`
  in the project (local env); crawlers -> `GlueCrawlerRunOperator` (Airflow 3; `GlueCrawlerOperator` for 2.10)
  or `etl crawl`; a `maintain: JOB` action -> a `BashOperator` running `etl maintain <job file>` (local env only:
  a cloud env refuses it, as `etl validate` does);
- start triggers (on-demand, scheduled, event) -> the root tasks; on-demand is Airflow's manual trigger, the
  schedule is the DAG's `CronTriggerTimetable` in UTC, an event trigger is an Asset (Dataset on 2.10);
- a conditional trigger -> trigger rules: `and` of SUCCEEDED -> all_success, `any` -> one_success, `and`/`any` of
  FAILED/TIMEOUT/STOPPED/CANCELLED -> all_failed/one_failed; a trigger that mixes success and failure states, or a
  node that several triggers start, gets one empty "gate" task per trigger (and a `<task>__failed` task per watched
  failure) so that each trigger keeps its own and/any; a condition on a run property is refused (a trigger rule
  tests only the states of upstream tasks).

The graph questions (start triggers, in-run triggers, node conditions, the run order) are asked of `WorkflowGraph`;
what depends on a trigger's type is its `TriggerKind` (`airflow`, `airflow_rule`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl_framework.config.model import Retries, Trigger, WorkflowConfig
from etl_framework.errors import UsageError
from etl_framework.workflow_graph import WorkflowGraph, describe_condition, kind_of, maintained_job

VERSIONS = ("3", "2.10")
FAILURE_STATES = ("FAILED", "TIMEOUT", "STOPPED", "CANCELLED")
START_DATE = "datetime(2024, 1, 1, tzinfo=timezone.utc)"


class ExportError(UsageError):
    """The workflow cannot be exported as asked (exit 2)."""


@dataclass
class Task:
    """One Airflow task: a workflow node (`job`, `crawler`, `maintain`) or a helper (`gate`, `failed`)."""

    task_id: str
    kind: str
    node: str | None = None
    trigger_rule: str = "all_success"
    upstream: list[str] = field(default_factory=list)
    comment: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    timeout_minutes: int | None = None
    retries: Retries | None = None


@dataclass
class DagPlan:
    """Everything the DAG file says, decided at export time."""

    dag_id: str
    description: str
    source: str
    env: str
    mode: str  # "glue" | "local"
    tasks: list[Task] = field(default_factory=list)
    cron: str | None = None  # Airflow (5-field) cron, UTC
    glue_schedule: str | None = None
    end_year: int | None = None
    start_year: int | None = None
    assets: list[tuple[str, str]] = field(default_factory=list)  # (trigger, uri or project-relative path)
    max_active_runs: int | None = None
    max_active_tasks: int = 2
    params: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    never_started: list[str] = field(default_factory=list)
    region: str | None = None
    glue_names: dict[str, str] = field(default_factory=dict)  # node -> Glue job / crawler name
    files: dict[str, str] = field(default_factory=dict)  # local: node -> project-relative job/workflow file
    project_dir: str = "parents[1]"  # local: `Path(__file__).resolve().<this>`, or an absolute path

    def task(self, task_id: str) -> Task:
        return next(t for t in self.tasks if t.task_id == task_id)


def task_id(kind: str, node: str) -> str:
    """Node tasks end with the job or crawler name (what a user searches for in the Airflow UI); a maintain node's
    task is `maintain_<job>`."""
    return f"{kind}_{maintained_job(node) or node}"


def _var(tid: str) -> str:
    return re.sub(r"\W", "_", tid)


# ------------------------------------------------------------------------------------------------ schedule


def airflow_cron(t: Trigger) -> tuple[str, int | None, int | None]:
    """Glue `cron(m h dom mon dow year)` (UTC) -> Airflow's 5-field cron, plus a year range as start/end years."""
    from etl_framework.config.cron import CronError, parse

    try:
        cron = parse(t.schedule or "")
    except CronError as e:
        raise ExportError(f"trigger {t.name}: {e}") from None
    dom = cron.fields[2]
    if "W" in dom:
        raise ExportError(f"trigger {t.name}: schedule {t.schedule} uses '{dom}' (nearest weekday), which Airflow's "
                          "cron cannot express\n  what to do: use a plain day of month or a weekday range")
    start = end = None
    if cron.years is not None:
        years = sorted(cron.years)
        if years != list(range(years[0], years[-1] + 1)):
            raise ExportError(f"trigger {t.name}: schedule {t.schedule} fires in the years {cron.fields[5]}, which "
                              "Airflow's cron cannot express (it has no year field; the DAG can only start and end)"
                              "\n  what to do: use one contiguous range of years, e.g. 2026-2027")
        start, end = years[0], years[-1]
    fields = cron.to_cronsim().split(" ")
    fields[4] = re.sub(r"^(\d)L$", r"L\1", fields[4])  # the last Friday: cronsim's 5L is croniter's L5
    return " ".join(fields), start, end


# ----------------------------------------------------------------------------------------------- the plan


def _walk(config: WorkflowConfig) -> tuple[list[str], list[str]]:
    """(nodes in run order, nodes never started) over the enabled triggers (`WorkflowGraph.levels`, as `etl plan`)."""
    enabled = config.model_copy(update={"triggers": [t for t in config.triggers if t.enabled]})
    order = [n for group in WorkflowGraph(enabled).levels() for n in group]
    never = sorted(set(WorkflowGraph(config).nodes) - set(order))
    return order, never


def _state_class(state: str) -> str:
    return "failed" if state in FAILURE_STATES else "ok"


def plan_dag(loaded: Any, project: Any, env: str, *, mode: str) -> DagPlan:
    """The DAG of a loaded workflow (`LoadedWorkflow`) for an env; `mode` is "glue" or "local"."""
    from etl_framework.config.project import display_path

    wf: WorkflowConfig = loaded.config
    env_cfg = project.env_config(env)
    plan = DagPlan(dag_id=wf.workflow, description=wf.description, env=env, mode=mode,
                   source=_rel(loaded.path, project.root, display_path),
                   max_active_runs=wf.max_concurrent_runs, max_active_tasks=wf.concurrency,
                   params=dict(wf.run_properties), region=env_cfg.aws.region if mode == "glue" else None)
    graph = WorkflowGraph(wf)
    kinds = {**dict.fromkeys(wf.jobs, "job"), **dict.fromkeys(wf.crawlers, "crawler")}
    maintained = graph.maintain_nodes()
    if mode == "glue":
        if maintained:
            node = next(iter(maintained))
            raise ExportError(
                f"{node}: a maintain action cannot be exported for a cloud env (env {env}): maintain actions run in "
                "the local engine and the scheduler, and the DAG's tasks run Glue jobs and crawlers\n  what to do: "
                f"run `etl maintain {_rel(loaded.job_paths[maintained[node]], project.root, display_path)} --env "
                f"{env}` from a machine or scheduled task that reaches the tables, or export for the local env")
        plan.glue_names = {n: env_cfg.deploy.name_prefix + n for n in kinds}
    else:
        plan.files = {n: _rel(loaded.job_paths[n], project.root, display_path) for n in wf.jobs}
        plan.files.update(dict.fromkeys(wf.crawlers, plan.source))
        plan.files.update({n: plan.files[j] for n, j in maintained.items()})
    kinds.update(dict.fromkeys(maintained, "maintain"))
    for t in wf.triggers:
        if not t.enabled:
            plan.warnings.append(f"trigger {t.name} is disabled: it is left out of the DAG, as Glue never fires it")
    starts = graph.starters(enabled_only=True)
    conditional = graph.in_run(enabled_only=True)
    _refuse_property_conditions(graph, conditional)
    order, plan.never_started = _walk(wf)
    roots = _roots(starts)
    _schedule_of(plan, graph.scheduler_triggers(), project.root)
    started_by = _started_by(conditional, roots)
    _condition_warnings(plan, graph, conditional, started_by)
    plan.tasks = _tasks(loaded, graph, kinds, order, starts, roots, started_by)
    plan.warnings = list(dict.fromkeys(plan.warnings))
    return plan


def _refuse_property_conditions(graph: WorkflowGraph, conditional: list[Trigger]) -> None:
    """A trigger rule tests the states of upstream tasks only: a condition on a run property has no Airflow form."""
    for t in conditional:
        props = graph.property_conditions(t)
        if props:
            raise ExportError(
                f"trigger {t.name}: the condition {describe_condition(props[0])} cannot be expressed in Airflow: a "
                "trigger rule tests only the states of upstream tasks, not a run property\n  what to do: run this "
                "workflow locally (`etl run`) or on Step Functions (deploy: {orchestrator: step_functions}), which "
                "test run properties, or drop the condition to export it")


def _same_action(a: Any, b: Any) -> bool:
    return a.arguments == b.arguments and a.timeout_minutes == b.timeout_minutes


def _roots(starts: list[Trigger]) -> dict[str, Any]:
    """node -> action of the start triggers. Every DAG run starts every root task, whatever started the run, so
    the start triggers must all start the same nodes the same way."""
    roots: dict[str, Any] = {}
    if not starts:
        return roots
    first = starts[0]
    for t in starts[1:]:
        if {a.node for a in t.actions} != {a.node for a in first.actions}:
            raise ExportError(
                f"trigger {t.name} starts {', '.join(a.node for a in t.actions)} but trigger {first.name} starts "
                f"{', '.join(a.node for a in first.actions)}: an Airflow DAG run starts every root task whatever "
                "started the run\n  what to do: make the start triggers start the same nodes, or split the "
                "workflow into one workflow per start trigger")
    for t in starts:
        for a in t.actions:
            if a.node in roots and not _same_action(roots[a.node], a):
                raise ExportError(f"trigger {t.name} starts {a.node} with other arguments than another start "
                                  "trigger: an Airflow task has one set of arguments\n  what to do: give both "
                                  "actions the same arguments")
            roots.setdefault(a.node, a)
    return roots


def _schedule_of(plan: DagPlan, fired: list[Trigger], root: Path) -> None:
    """The scheduled trigger -> the DAG's cron; event triggers -> Assets (with what they lose in Airflow). `fired`:
    the enabled triggers a scheduler fires (`WorkflowGraph.scheduler_triggers`)."""
    for t in fired:
        how = kind_of(t).airflow
        if how == "timetable":
            if plan.cron is not None:
                raise ExportError(f"trigger {t.name}: a second schedule ({t.schedule}, after {plan.glue_schedule}); "
                                  "an Airflow DAG has one schedule\n  what to do: keep one scheduled trigger")
            plan.cron, plan.start_year, plan.end_year = airflow_cron(t)
            plan.glue_schedule = t.schedule
        elif how == "asset" and t.watch:
            uri = _asset(t.watch.path, plan.mode, root)
            plan.assets.append((t.name, uri))
            if t.watch.pattern not in ("", "*"):
                plan.warnings.append(f"trigger {t.name}: an Asset has no file pattern; the DAG runs on every event "
                                     f"of {uri}, not only {t.watch.pattern} files (let the producer of the asset "
                                     "event filter them)")
            b = t.batch
            if b and b.size > 1:
                plan.warnings.append(
                    f"trigger {t.name}: event batching by count (batch.size {b.size}, window {b.window_seconds}s) "
                    "cannot be expressed in Airflow: the DAG runs at the first asset event after the previous "
                    "run, and the events that arrive while it runs start the next run together")


def _started_by(conditional: list[Trigger], roots: dict[str, Any]) -> dict[str, list[tuple[Trigger, Any]]]:
    """node -> (trigger, action) of the conditional triggers that start it (a root already ran: as in Glue, a
    trigger does not start a node again in the same run)."""
    started_by: dict[str, list[tuple[Trigger, Any]]] = {}
    for t in conditional:
        for a in t.actions:
            if a.node not in roots:
                started_by.setdefault(a.node, []).append((t, a))
    for node, pairs in started_by.items():
        t0, a0 = pairs[0]
        for t, a in pairs[1:]:
            if not _same_action(a, a0):
                raise ExportError(f"trigger {t.name} starts {node} with other arguments than trigger {t0.name}: an "
                                  "Airflow task has one set of arguments\n  what to do: give both actions the "
                                  "same arguments")
    return started_by


def _condition_warnings(plan: DagPlan, graph: WorkflowGraph, conditional: list[Trigger],
                        started_by: dict[str, list[tuple[Trigger, Any]]]) -> None:
    for t in conditional:
        for c in graph.node_conditions(t):
            if c.state in ("TIMEOUT", "STOPPED", "CANCELLED"):
                plan.warnings.append(f"trigger {t.name}: Airflow has one failed state, so the condition "
                                     f"{c.node} {c.state} holds when {c.node} fails in any way (FAILED, TIMEOUT, "
                                     "STOPPED)")
            if c.state in FAILURE_STATES and c.node in started_by:
                plan.warnings.append(
                    f"trigger {t.name}: Airflow counts a task that never ran because its own upstream failed "
                    f"(upstream_failed) as failed, so {c.node} {c.state} also holds when {c.node} was never started "
                    "for that reason; Glue would not fire")


def _tasks(loaded: Any, graph: WorkflowGraph, kinds: dict[str, str], order: list[str], starts: list[Trigger],
           roots: dict[str, Any], started_by: dict[str, list[tuple[Trigger, Any]]]) -> list[Task]:
    """The tasks with their upstream and trigger rules, each defined after everything it depends on."""
    ids = {n: task_id(kinds[n], n) for n in kinds}
    tasks: dict[str, Task] = {}
    placed = set(order)

    def node_task(n: str, upstream: list[str], rule: str, comment: str) -> Task:
        action = roots.get(n) or started_by[n][0][1]
        retries = timeout = None
        if kinds[n] == "job":
            lj = loaded.jobs.get(n)
            retries = lj.config.retries if lj else Retries()
            timeout = action.timeout_minutes or (lj.config.timeout_minutes if lj else None)
        args = action.maintain_options() if kinds[n] == "maintain" else dict(action.arguments)
        if kinds[n] == "maintain":
            timeout = action.timeout_minutes
        return Task(ids[n], kinds[n], n, rule, upstream, comment, args, timeout, retries)

    def failed_task(n: str) -> str:
        tid = f"{ids[n]}__failed"
        if tid not in tasks:
            tasks[tid] = Task(tid, "failed", n, "all_failed", [ids[n]], f"succeeds when {n} failed")
        return tid

    for n in order:
        if n in roots:
            who = ", ".join(t.name for t in starts if any(a.node == n for a in t.actions))
            tasks[ids[n]] = node_task(n, [], "all_success", f"started by {who}")
            continue
        pairs = [(t, a) for t, a in started_by.get(n, [])
                 if graph.join(t) == "any" or all(c.node in placed for c in graph.node_conditions(t))]
        if not pairs:
            continue
        t = pairs[0][0]
        if len(pairs) == 1 and len({_state_class(c.state) for c in graph.node_conditions(t)}) == 1:
            # one trigger, one kind of state: a trigger rule on the node itself
            conds = [c for c in graph.node_conditions(t) if c.node in placed]
            rule = kind_of(t).airflow_rule(t, _state_class(conds[0].state))
            tasks[ids[n]] = node_task(n, [ids[c.node] for c in conds], rule, f"trigger {t.name}: {_describe(t)}")
            continue
        gates = []  # else a gate per trigger, each keeping its own and/any; the node runs when one gate passes
        for t, _a in pairs:
            gid = f"trigger_{t.name}"
            if gid not in tasks:
                ups = [ids[c.node] if _state_class(c.state) == "ok" else failed_task(c.node)
                       for c in graph.node_conditions(t) if c.node in placed]
                tasks[gid] = Task(gid, "gate", None, kind_of(t).airflow_rule(t, "ok"), ups,
                                  f"trigger {t.name}: {_describe(t)}")
            gates.append(gid)
        tasks[ids[n]] = node_task(n, gates, "one_success" if len(gates) > 1 else "all_success",
                                  "started by " + " or ".join(g.removeprefix("trigger_") for g in gates))
    out: list[Task] = []
    seen: set[str] = set()

    def add(tid: str) -> None:
        if tid not in seen:
            seen.add(tid)
            for u in tasks[tid].upstream:
                add(u)
            out.append(tasks[tid])

    for n in order:
        if ids[n] in tasks:
            add(ids[n])
    return out


def _describe(t: Trigger) -> str:
    """`a SUCCEEDED and b SUCCEEDED` (the trigger's description without its leading `when `)."""
    return kind_of(t).describe(t).removeprefix("when ")


def _rel(path: Path, root: Path, display: Any) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return display(Path(path))


def _asset(path: str, mode: str, root: Path) -> str:
    """An event trigger's folder as an Asset URI: s3:// on AWS; locally a path relative to the project when it is
    inside it (made absolute at parse time, so that the DAG file does not depend on where the project lives)."""
    if mode == "glue":
        from etl_framework.deploy.spec import to_s3

        return to_s3(path).rstrip("/") + "/"
    p = Path(path)
    try:
        return p.resolve().relative_to(Path(root).resolve()).as_posix() + "/"
    except ValueError:
        return p.resolve().as_uri() + "/"


# --------------------------------------------------------------------------------------------- rendering


def _py(value: Any) -> str:
    """A Python literal, dict keys in their given (YAML) order."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    return repr(value)


def _arg_text(v: Any) -> str:
    from etl_framework.runtime.args import to_glue_arguments

    return to_glue_arguments({"x": v})["--x"]


def run_properties_template(params: dict[str, Any]) -> str:
    """The run properties of one DAG run as JSON, rendered by Airflow from the DAG params."""
    def ref(k: str) -> str:
        return f"params.{k}" if k.isidentifier() else f"params[{json.dumps(k)}]"

    inner = ", ".join(f"{json.dumps(str(k))}: {{{{ {ref(str(k))} | tojson }}}}" for k in params)
    return "{" + inner + "}"


def _imports(plan: DagPlan, version: str) -> list[str]:
    kinds = {t.kind for t in plan.tasks}
    lines = ["import os", "from datetime import datetime, timedelta, timezone"]
    lines += ["from pathlib import Path", ""] if plan.mode == "local" else [""]
    if version == "3":
        names = ["DAG"]
        if plan.assets:
            names.append("Asset")
            if plan.cron:
                names.append("AssetOrTimeSchedule")
        if plan.cron:
            names.append("CronTriggerTimetable")
        lines.append(f"from airflow.sdk import {', '.join(sorted(names))}")
        if kinds & {"gate", "failed"}:
            lines.append("from airflow.providers.standard.operators.empty import EmptyOperator")
        if plan.mode == "local":
            lines.append("from airflow.providers.standard.operators.bash import BashOperator")
    else:
        lines.append("from airflow import DAG")
        if plan.assets:
            lines.append("from airflow.datasets import Dataset")
            if plan.cron:
                lines.append("from airflow.timetables.datasets import DatasetOrTimeSchedule")
        if plan.cron:
            lines.append("from airflow.timetables.trigger import CronTriggerTimetable")
        if kinds & {"gate", "failed"}:
            lines.append("from airflow.operators.empty import EmptyOperator")
        if plan.mode == "local":
            lines.append("from airflow.operators.bash import BashOperator")
    if plan.mode == "glue":
        if "crawler" in kinds:
            lines.append("from airflow.providers.amazon.aws.operators.glue_crawler import "
                         + ("GlueCrawlerRunOperator" if version == "3" else "GlueCrawlerOperator"))
        if "job" in kinds:
            lines.append("from airflow.providers.amazon.aws.operators.glue import GlueJobOperator")
    return lines


def _schedule(plan: DagPlan, version: str) -> str:
    asset_cls = "Asset" if version == "3" else "Dataset"

    def asset(uri: str) -> str:
        if plan.mode == "local" and "://" not in uri:
            return f"{asset_cls}((PROJECT_DIR / {uri!r}).as_uri() + '/')"
        return f"{asset_cls}({uri!r})"

    timetable = f"CronTriggerTimetable({plan.cron!r}, timezone='UTC')" if plan.cron else None
    assets = [asset(u) for _, u in plan.assets]
    if timetable and assets:
        if version == "3":
            joined = " | ".join(assets)
            return f"AssetOrTimeSchedule(timetable={timetable}, assets={joined})"
        return f"DatasetOrTimeSchedule(timetable={timetable}, datasets=[{', '.join(assets)}])"
    if timetable:
        return timetable
    if assets:
        return "[" + ", ".join(assets) + "]"
    return "None"


def _node_kwargs(plan: DagPlan, t: Task, version: str) -> tuple[str, list[str]]:
    """(operator class, keyword lines) of a job or crawler task."""
    kw: list[str] = []
    if plan.mode == "glue":
        name = plan.glue_names[t.node or ""]
        if t.kind == "crawler":
            if version == "3":
                kw.append(f"crawler_name={name!r}")
            else:
                kw.append(f"config={{'Name': {name!r}}}")
            kw += ["region_name=REGION", "aws_conn_id=AWS_CONN_ID", "poll_interval=POLL_SECONDS", "deferrable=True"]
            return ("GlueCrawlerRunOperator" if version == "3" else "GlueCrawlerOperator"), kw
        args = {f"--{k}": _arg_text(v) for k, v in t.arguments.items()}
        args["--WORKFLOW_RUN_ID"] = "{{ run_id }}"
        if plan.params:
            args["--RUN_PROPERTIES"] = "RUN_PROPERTIES"
        items = ", ".join(f"{k!r}: {v if v == 'RUN_PROPERTIES' else repr(v)}" for k, v in args.items())
        kw += [f"job_name={name!r}", f"script_args={{{items}}}"]
        if t.timeout_minutes:
            kw.append(f"run_job_kwargs={{'Timeout': {t.timeout_minutes}}}")
        kw += ["region_name=REGION", "aws_conn_id=AWS_CONN_ID", "wait_for_completion=True", "deferrable=True",
               "waiter_delay=POLL_SECONDS", "stop_job_run_on_kill=True"]
        return "GlueJobOperator", kw
    rel = plan.files[t.node or ""]
    if t.kind == "maintain":
        opts = ""
        if t.arguments.get("zorder"):
            opts += " --zorder " + shlex.quote(",".join(t.arguments["zorder"]))
        if t.arguments.get("retain_hours") is not None:
            opts += f" --retain-hours {t.arguments['retain_hours']:g}"
        cmd = f"ETL + {f' --env {plan.env} maintain {shlex.quote(rel)}{opts}'!r}"
        return "BashOperator", [f"bash_command={cmd}", "cwd=str(PROJECT_DIR)"]
    if t.kind == "crawler":
        cmd = f"ETL + {f' --env {plan.env} crawl {shlex.quote(rel)} --name {t.node}'!r}"
        return "BashOperator", [f"bash_command={cmd}", "cwd=str(PROJECT_DIR)"]
    extra = "".join(f" --param {shlex.quote(f'{k}={_arg_text(v)}')}" for k, v in t.arguments.items())
    tail = f" run {shlex.quote(rel)} --no-report --workflow-run-id \"$ETL_WORKFLOW_RUN_ID\""
    if plan.params:
        tail += " --run-properties \"$ETL_RUN_PROPERTIES\""
    cmd = f"ETL + {f' --env {plan.env}' + tail + extra!r}"
    env = "{'ETL_WORKFLOW_RUN_ID': '{{ run_id }}'" + (", 'ETL_RUN_PROPERTIES': RUN_PROPERTIES" if plan.params
                                                      else "") + "}"
    return "BashOperator", [f"bash_command={cmd}", "cwd=str(PROJECT_DIR)", f"env={env}", "append_env=True"]


def _retry_kwargs(t: Task, version: str) -> list[str]:
    kw: list[str] = []
    r = t.retries
    if r is not None:
        kw.append(f"retries={r.max_attempts - 1}")
        if r.max_attempts > 1:
            kw.append(f"retry_delay=timedelta(seconds={r.backoff_seconds:g})")
            if version == "3":
                kw.append(f"retry_exponential_backoff={float(r.backoff_rate)!r}")
            else:
                kw.append(f"retry_exponential_backoff={r.backoff_rate != 1.0}")
    if t.timeout_minutes:
        kw.append(f"execution_timeout=timedelta(minutes={t.timeout_minutes})")
    return kw


def render(plan: DagPlan, version: str = "3") -> str:
    """The DAG file's text (deterministic: same plan, same bytes)."""
    if version not in VERSIONS:
        raise ExportError(f"unknown Airflow version {version!r}: use one of {', '.join(VERSIONS)}")
    where = "AWS Glue (the jobs and crawlers `etl deploy` made)" if plan.mode == "glue" else "this machine (`etl run`)"
    doc = [f"Airflow DAG of the etl_framework workflow `{plan.dag_id}` ({plan.source}), env `{plan.env}`:",
           f"runs on {where}. Generated by `etl export airflow` for Airflow {version}; do not edit:",
           "change the workflow YAML and export again (`etl export airflow --check` fails on a stale file)."]
    if plan.glue_schedule:
        doc.append(f"Schedule: Glue {plan.glue_schedule} = Airflow cron '{plan.cron}' (UTC).")
    if plan.warnings:
        doc += ["", "What Airflow cannot express exactly:"] + [f"- {w}" for w in plan.warnings]
    if plan.never_started:
        doc += ["", "Never started by an enabled trigger (left out): " + ", ".join(plan.never_started)]
    out = ['"""' + "\n".join(doc).replace('"""', "'''") + '\n"""', "", "from __future__ import annotations", ""]
    out += _imports(plan, version)
    out.append("")
    if plan.mode == "glue":
        out += [f"REGION = {plan.region!r}",
                "AWS_CONN_ID = os.environ.get('ETL_AIRFLOW_AWS_CONN_ID', 'aws_default')",
                "# how often Airflow asks Glue about a running job or crawler (seconds)",
                "POLL_SECONDS = int(os.environ.get('ETL_AIRFLOW_POLL_SECONDS', '60'))"]
    else:
        where = (repr(plan.project_dir) if plan.project_dir.startswith("/")
                 else f"Path(__file__).resolve().{plan.project_dir}")
        out += ["# the etl project (where this file was exported, unless ETL_PROJECT_DIR says otherwise) and its CLI",
                f"PROJECT_DIR = Path(os.environ.get('ETL_PROJECT_DIR') or {where})",
                "ETL = os.environ.get('ETL_BIN', 'etl')"]
    if plan.params:
        out.append("# the workflow run properties of a DAG run, as JSON, from its params")
        out.append(f"RUN_PROPERTIES = {run_properties_template(plan.params)!r}")
    out.append("")
    dag_kw = [f"dag_id={plan.dag_id!r}"]
    if plan.description:
        dag_kw.append(f"description={plan.description!r}")
    dag_kw.append(f"schedule={_schedule(plan, version)}")
    start = f"datetime({plan.start_year}, 1, 1, tzinfo=timezone.utc)" if plan.start_year else START_DATE
    dag_kw.append(f"start_date={start}")
    if plan.end_year:
        dag_kw.append(f"end_date=datetime({plan.end_year}, 12, 31, 23, 59, tzinfo=timezone.utc)")
    dag_kw.append("catchup=False")
    if plan.max_active_runs:
        dag_kw.append(f"max_active_runs={plan.max_active_runs}")
    dag_kw.append(f"max_active_tasks={plan.max_active_tasks}")
    if plan.params:
        dag_kw.append(f"params={_py(plan.params)}")
    dag_kw.append(f"tags={_py(['etl_framework', plan.env])}")
    out.append("with DAG(")
    out += [f"    {k}," for k in dag_kw]
    out.append("):")
    for t in plan.tasks:
        out.append(f"    # {t.comment}")
        if t.kind in ("gate", "failed"):
            cls, kw = "EmptyOperator", []
        else:
            cls, kw = _node_kwargs(plan, t, version)
            kw += _retry_kwargs(t, version)
        kw = [f"task_id={t.task_id!r}"] + kw + [f"trigger_rule={t.trigger_rule!r}"]
        out.append(f"    {_var(t.task_id)} = {cls}(")
        out += [f"        {k}," for k in kw]
        out.append("    )")
        if t.upstream:
            ups = [_var(u) for u in t.upstream]
            out.append(f"    {ups[0] if len(ups) == 1 else '[' + ', '.join(ups) + ']'} >> {_var(t.task_id)}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------ export


def mode_of(env_cfg: Any, env: str, file: str) -> str:
    """"glue" for a cloud env (a deploy block, Glue catalog or DynamoDB state), else "local"."""
    cloud = env_cfg.catalog.backend == "glue" or env_cfg.state.backend == "dynamodb" or env_cfg.deploy is not None
    if not cloud:
        return "local"
    if env_cfg.deploy is None:
        raise ExportError(f"env {env} ({file}) is a cloud env but has no deploy: block: the DAG starts the Glue jobs "
                          "and crawlers that `etl deploy` made, whose names come from deploy.name_prefix\n  what to "
                          "do: add a deploy: block (s3_prefix, role, name_prefix) and run `etl deploy --env "
                          f"{env}`, or export for the local env")
    return "glue"


@dataclass
class Exported:
    path: Path
    text: str
    plan: DagPlan


def export(workflow_files: list[Path], project: Any, env: str, out_dir: Path, version: str = "3") -> list[Exported]:
    """Plan and render one DAG file per workflow file (nothing is written here)."""
    from etl_framework.config.load import load_workflow
    from etl_framework.config.project import display_path

    env_cfg = project.env_config(env)
    mode = mode_of(env_cfg, env, display_path(project.env_file(env)))
    results = []
    for f in workflow_files:
        loaded = load_workflow(f, project, env)
        plan = plan_dag(loaded, project, env, mode=mode)
        try:
            plan.project_dir = f"parents[{len(out_dir.resolve().relative_to(project.root.resolve()).parts)}]"
        except ValueError:
            plan.project_dir = str(project.root.resolve())
        results.append(Exported(out_dir / f"{plan.dag_id}.py", render(plan, version), plan))
    names = [r.path.name for r in results]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ExportError(f"two workflow files name the same workflow ({', '.join(dup)}): DAG ids must be unique")
    return results


def stale(results: list[Exported]) -> list[str]:
    """The DAG files that differ from what the YAML gives now (missing ones included)."""
    bad = []
    for r in results:
        if not r.path.is_file() or r.path.read_text() != r.text:
            bad.append(os.path.relpath(r.path) if not os.path.relpath(r.path).startswith("..") else str(r.path))
    return bad
