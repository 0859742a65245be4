"""Build a `Report` from the state (job runs, workflow runs, bookmarks, crawler runs — through `StateView`, so
every backend gives one) and the workflow file.

Every read is defensive: a store that does not exist yet, a table an older version did not have, a workflow
file
that changed or vanished since the run — each becomes a note on the page, never an exception, because a report
is most wanted exactly when something went wrong.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from etl_framework.errors import UsageError
from etl_framework.report.model import (
    Attempt,
    BookmarkState,
    CrawlerRun,
    Edge,
    JobRun,
    Node,
    Report,
    WorkflowRun,
    crawler_run_from_dict,
    graph_from_config,
    job_run_from_dict,
    parse_time,
    workflow_run_from_dict,
)
from etl_framework.state.view import StateView

RECENT = 5


# ----------------------------------------------------------------------------------------------- readers


def job_run_record(view: StateView, run_id: str) -> dict[str, Any] | None:
    try:
        return view.job_run(run_id)
    except Exception:  # noqa: BLE001 - a store that cannot read this run still gives a report of the rest
        return None


def workflow_run_record(view: StateView, run_id: str) -> dict[str, Any] | None:
    return view.workflow_run(run_id)


def bookmarks_around(view: StateView, job: str, run_id: str, started: datetime | None) -> list[BookmarkState]:
    """Bookmarks before and after a run from the bookmark history: after = what this run committed (if it
    committed), before = the entry preceding it (or, if the run committed nothing, the last one before it)."""
    rows = [{**r, "id": i} for i, r in enumerate(view.bookmark_entries(job))]
    if not rows:
        return []
    mine = [r for r in rows if r["run_id"] == run_id and r["action"] in ("commit", "reconcile")]
    if mine:
        after_row = mine[-1]
        prior = [r for r in rows if r["id"] < mine[0]["id"]]
        before_row = prior[-1] if prior else None
    else:
        prior = [r for r in rows if started is None or (parse_time(r["at"]) or started) <= started]
        before_row = prior[-1] if prior else None
        after_row = before_row  # nothing committed: unchanged

    def sources(row: dict[str, Any] | None) -> dict[str, Any]:
        if row is None:
            return {}
        data = row["data"]
        return (data.get("sources") or {}) if isinstance(data, dict) else {}

    b, a = sources(before_row), sources(after_row)
    names = list(dict.fromkeys([*b, *a]))
    return [BookmarkState(source=n, before=b.get(n), after=a.get(n)) for n in names]


def crawler_runs_of(view: StateView, nodes: list[Node]) -> list[CrawlerRun]:
    """The crawler's own record of each crawler node's run: the crawler run of that crawler whose start falls
    within the node's run (the crawler does not know the workflow run id)."""
    out: list[CrawlerRun] = []
    for n in nodes:
        if n.kind != "crawler" or n.started_at is None:
            continue
        lo = n.started_at - timedelta(seconds=5)
        hi = (n.ended_at or datetime.now(UTC)) + timedelta(seconds=5)
        for r in reversed(view.crawler_runs(n.name)):  # oldest first
            cr = crawler_run_from_dict(r)
            if cr.started_at is not None and lo <= cr.started_at <= hi:
                out.append(cr)
    return out


# ---------------------------------------------------------------------------------------------- job runs


def load_job_run(view: StateView, run_id: str) -> JobRun | None:
    rec = job_run_record(view, run_id)
    if rec is None:
        return None
    run = job_run_from_dict(rec)
    if not run.bookmarks and run.job != "?":
        try:
            run.bookmarks = bookmarks_around(view, run.job, run.run_id, run.started_at)
        except Exception as e:  # noqa: BLE001 - the rest of the report still renders
            run.notes.append(f"bookmarks could not be read: {e}")
    return run


# ------------------------------------------------------------------------------------------ workflow runs


def _workflow_graph(project: Any, env: str, rec: dict[str, Any]) -> tuple[list[Node], list[Edge], str | None]:
    """The graph of the workflow file the run used (its path is in the record); the file may have changed
    since."""
    path = rec.get("workflow_path")
    if not path:
        return [], [], "the run record does not name its workflow file: the graph shows nodes without edges"
    p = Path(path)
    if not p.is_file():
        return [], [], f"the workflow file {path} no longer exists: the graph shows nodes without edges"
    cfg = None
    problem = None
    try:
        from etl_framework.config.load import load_workflow

        cfg = load_workflow(p, project, env=rec.get("env") or env, check=False).config
    except Exception as e:  # noqa: BLE001 - fall back to the raw file below
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
    if cfg is None:
        try:
            from ruamel.yaml import YAML

            from etl_framework.config.model import WorkflowConfig

            cfg = WorkflowConfig.model_validate(YAML(typ="safe").load(p.read_text()))
        except Exception:  # noqa: BLE001
            return [], [], f"the workflow file {path} does not load any more ({problem}): no edges shown"
    nodes, edges = graph_from_config(cfg)
    return nodes, edges, None


def load_workflow_run(project: Any, env: str, view: StateView, run_id: str) -> tuple[WorkflowRun, list[JobRun]]:
    rec = workflow_run_record(view, run_id)
    if rec is None:
        raise LookupError(run_id)
    wf = workflow_run_from_dict(rec)
    if wf.status == "RUNNING" and rec.get("owner_alive") is False:
        wf.notes.append("the process running this workflow run is gone; `etl workflow resume` can resume it")
    cfg_nodes, edges, note = _workflow_graph(project, env, rec)
    if note:
        wf.notes.append(note)
    # nodes in config order (triggers first, as Glue draws them), states from the record
    by_name = {n.name: n for n in wf.nodes}
    ordered: list[Node] = []
    for n in cfg_nodes:
        if n.kind == "trigger":
            ordered.append(n)
        elif n.name in by_name:
            ordered.append(by_name.pop(n.name))
        else:
            ordered.append(n)
    ordered += list(by_name.values())
    fired = {t.get("trigger"): t for t in rec.get("triggers") or [] if isinstance(t, dict)}
    for n in ordered:
        if n.kind == "trigger" and n.name in fired:
            t = fired[n.name]
            n.state = str(t.get("state") or "FIRED").upper()
            n.started_at = parse_time(t.get("at"))
    for raw in rec.get("nodes") or []:
        if isinstance(raw, dict) and raw.get("copied_from"):
            node = next((n for n in ordered if n.name == raw.get("node")), None)
            if node is not None:
                node.detail = f"copied from {raw['copied_from']}"
    for n in ordered:
        summary = n.result_summary()
        if summary:  # a maintain node: what it did, next to its state
            n.detail = f"{n.detail}; {summary}" if n.detail else summary
    wf.nodes = ordered
    wf.edges = edges

    job_runs: list[JobRun] = []
    for n in wf.nodes:
        if n.kind == "trigger":
            continue
        attempts: list[Attempt] = []
        for i, rid in enumerate(n.job_run_ids):
            jr = load_job_run(view, rid)
            if jr is None:
                attempts.append(Attempt(number=i + 1, state="UNKNOWN", job_run_id=rid))
                continue
            jr.node = n.name
            job_runs.append(jr)
            attempts.append(
                Attempt(
                    number=jr.attempt or i + 1,
                    state=jr.status,
                    started_at=jr.started_at,
                    ended_at=jr.ended_at,
                    job_run_id=rid,
                    error=jr.error,
                )
            )
        if attempts:
            n.attempts = attempts
        elif n.started_at and not n.attempts:
            n.attempts = [
                Attempt(number=1, state=n.state, started_at=n.started_at, ended_at=n.ended_at, error=n.error)
            ]
    wf.crawler_runs = crawler_runs_of(view, wf.nodes)
    return wf, job_runs


# ------------------------------------------------------------------------------------------------ entry


def _not_found(kind: str, run_id: str, view: StateView) -> UsageError:
    recent = view.recent_runs()
    if recent:
        listing = "\n".join(
            f"    {rid}  ({k}, {desc}, started {start or '?'})" for start, k, rid, desc in recent
        )
        more = f"\n  recent runs:\n{listing}"
    else:
        more = f"\n  (no run recorded yet in {view.where})"
    return UsageError(
        f"no {kind} with id {run_id}{more}\n  what to do: pass one of these ids, e.g. "
        f"`etl report {recent[0][2] if recent else 'RUN_ID'}`, or list runs with `etl runs`"
    )


def latest_run(view: StateView) -> tuple[str, str] | None:
    """(kind, run_id) of the most recently started run: a workflow run, or a job run of its own (a job run
    inside a workflow run is shown on its workflow run's page)."""
    recent = view.recent_runs(1, top_level=True)
    if not recent:
        return None
    return ("workflow" if recent[0][1] == "workflow run" else "job", recent[0][2])


def build_report(
    project: Any, env: str, run_id: str | None = None, workflow_run_id: str | None = None
) -> Report:
    """The Report of a job run or workflow run (default: the most recent run); UsageError (exit 2) naming
    recent runs when the id is unknown."""
    from etl_framework.state import open_state

    view = open_state(project.env_config(env)).view()
    try:
        return _build(project, env, view, run_id, workflow_run_id)
    finally:
        view.close()


def _build(project: Any, env: str, view: StateView, run_id: str | None, workflow_run_id: str | None) -> Report:
    root = str(getattr(project, "root", ""))
    if run_id is None and workflow_run_id is None:
        found = latest_run(view)
        if found is None:
            raise UsageError(
                f"no run recorded yet in {view.where}\n  what to do: run a job (`etl run JOB.yaml`) "
                "or a workflow (`etl workflow run WORKFLOW.yaml`) first"
            )
        kind, rid = found
        run_id, workflow_run_id = (None, rid) if kind == "workflow" else (rid, None)
    if workflow_run_id is None and run_id is not None:
        job = load_job_run(view, run_id)
        if job is not None:
            return Report(title=f"job run {job.job}", job_runs=[job], project=root)
        # an id given without --workflow-run may be a workflow run's
        if workflow_run_record(view, run_id) is not None:
            workflow_run_id = run_id
        else:
            raise _not_found("job run", run_id, view)
    assert workflow_run_id is not None
    try:
        wf, jobs = load_workflow_run(project, env, view, workflow_run_id)
    except LookupError:
        raise _not_found("workflow run", workflow_run_id, view) from None
    return Report(title=f"workflow run {wf.workflow}", workflow=wf, job_runs=jobs, project=root)
