"""Build a `Report` from the state stores (job runs, workflow runs, bookmarks) and the workflow file.

Every read is defensive: a store that does not exist yet, a table an older version did not have, a workflow
file
that changed or vanished since the run — each becomes a note on the page, never an exception, because a report
is most wanted exactly when something went wrong.
"""

from __future__ import annotations

import json
import sqlite3
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
from etl_framework.state.db import connect

RECENT = 5


# ----------------------------------------------------------------------------------------------- raw readers


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _open(state_path: Path) -> sqlite3.Connection | None:
    return connect(state_path) if Path(state_path).is_file() else None


def job_run_record(state_path: Path, run_id: str) -> dict[str, Any] | None:
    """The job run record as the runs store returns it (its own API, so its JSON decoding applies); None when
    the store cannot read it (e.g. a state file of an older version), and the caller falls back to raw
    rows."""
    if not Path(state_path).is_file():
        return None
    try:
        from etl_framework.state.runs import SqliteRunStore

        store = SqliteRunStore(state_path)
    except Exception:  # noqa: BLE001 - an old or odd state file must still give a report
        return None
    try:
        rec = store.get_run(run_id)
    except Exception:  # noqa: BLE001
        return None
    finally:
        store.close()
    if rec is None:
        return None
    return rec if isinstance(rec, dict) else _to_dict(rec)


def _to_dict(obj: Any) -> dict[str, Any]:
    for meth in ("to_dict", "to_json", "model_dump", "as_dict"):
        fn = getattr(obj, meth, None)
        if callable(fn):
            out = fn()
            return out if isinstance(out, dict) else json.loads(out)
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)  # type: ignore[arg-type]
    return dict(vars(obj))


def recent_runs(
    state_path: Path, limit: int = RECENT, top_level: bool = False
) -> list[tuple[str, str, str, str]]:
    """(started_at, kind, run_id, name+state) of the most recent job and workflow runs, newest first;
    `top_level`: leave out job runs that are part of a workflow run."""
    conn = _open(state_path)
    if conn is None:
        return []
    out: list[tuple[str, str, str, str]] = []
    try:
        tables = _tables(conn)
        if "workflow_runs" in tables:
            for r in conn.execute(
                "SELECT run_id, workflow, state, started_at FROM workflow_runs "
                "ORDER BY started_at DESC LIMIT ?",
                (limit,),
            ):
                out.append(
                    (str(r["started_at"] or ""), "workflow run", r["run_id"], f"{r['workflow']} {r['state']}")
                )
        table = _job_runs_table(tables)
        if table:
            cols = _columns(conn, table)
            idc = "run_id" if "run_id" in cols else "id"
            jobc = "job" if "job" in cols else ("job_name" if "job_name" in cols else "NULL")
            stc = "status" if "status" in cols else ("state" if "state" in cols else "NULL")
            tc = "started_at" if "started_at" in cols else ("start_time" if "start_time" in cols else "NULL")
            where = "WHERE workflow_run_id IS NULL" if top_level and "workflow_run_id" in cols else ""
            for r in conn.execute(
                f"SELECT {idc} AS run_id, {jobc} AS job, {stc} AS status, {tc} AS started_at "
                f"FROM {table} {where} ORDER BY {tc} DESC LIMIT ?",
                (limit,),
            ):
                out.append(
                    (str(r["started_at"] or ""), "job run", str(r["run_id"]), f"{r['job']} {r['status']}")
                )
    finally:
        conn.close()
    out.sort(key=lambda t: t[0], reverse=True)
    return out[:limit]


def _job_runs_table(tables: set[str]) -> str | None:
    for name in ("job_runs", "runs"):
        if name in tables:
            return name
    return None


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _job_run_raw(state_path: Path, run_id: str) -> dict[str, Any] | None:
    """Fallback when the runs store's API is absent or changed: the row of the job runs table, with JSON
    columns
    decoded, plus stage rows if a stage table exists."""
    conn = _open(state_path)
    if conn is None:
        return None
    try:
        tables = _tables(conn)
        table = _job_runs_table(tables)
        if not table:
            return None
        idc = "run_id" if "run_id" in _columns(conn, table) else "id"
        row = conn.execute(f"SELECT * FROM {table} WHERE {idc} = ?", (run_id,)).fetchone()
        if row is None:
            return None
        rec = {k: _maybe_json(v) for k, v in dict(row).items()}
        for st in ("job_run_stages", "stages", "job_stages", "run_stages", "stage_runs"):
            if st in tables and "stages" not in rec:
                scol = "run_id" if "run_id" in _columns(conn, st) else None
                if scol:
                    rec["stages"] = [
                        {k: _maybe_json(v) for k, v in dict(r).items()}
                        for r in conn.execute(
                            f"SELECT * FROM {st} WHERE run_id = ? ORDER BY rowid", (run_id,)
                        )
                    ]
        return rec
    finally:
        conn.close()


def _maybe_json(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def workflow_run_record(state_path: Path, run_id: str) -> dict[str, Any] | None:
    if not Path(state_path).is_file():
        return None
    from etl_framework.state.workflows import WorkflowStore

    store = WorkflowStore(state_path)
    try:
        return store.get_run(run_id)
    finally:
        store.close()


def bookmarks_around(
    state_path: Path, job: str, run_id: str, started: datetime | None
) -> list[BookmarkState]:
    """Bookmarks before and after a run from the bookmark history: after = what this run committed (if it
    committed), before = the entry preceding it (or, if the run committed nothing, the last one before it)."""
    conn = _open(state_path)
    if conn is None:
        return []
    try:
        if "bookmark_history" not in _tables(conn):
            return []
        rows = conn.execute(
            "SELECT id, run_id, action, data, at FROM bookmark_history WHERE job = ? ORDER BY id", (job,)
        ).fetchall()
    finally:
        conn.close()
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

    def sources(row: sqlite3.Row | None) -> dict[str, Any]:
        if row is None:
            return {}
        data = _maybe_json(row["data"])
        return (data.get("sources") or {}) if isinstance(data, dict) else {}

    b, a = sources(before_row), sources(after_row)
    names = list(dict.fromkeys([*b, *a]))
    return [BookmarkState(source=n, before=b.get(n), after=a.get(n)) for n in names]


def crawler_runs_of(state_path: Path, nodes: list[Node]) -> list[CrawlerRun]:
    """The crawler's own record of each crawler node's run: the crawler_runs row of that crawler whose start
    falls within the node's run (the crawler does not know the workflow run id)."""
    crawlers = [n for n in nodes if n.kind == "crawler" and n.started_at is not None]
    if not crawlers:
        return []
    conn = _open(state_path)
    if conn is None:
        return []
    out: list[CrawlerRun] = []
    try:
        if "crawler_runs" not in _tables(conn):
            return []
        for n in crawlers:
            rows = conn.execute(
                "SELECT * FROM crawler_runs WHERE crawler = ? ORDER BY rowid", (n.name,)
            ).fetchall()
            lo = n.started_at - timedelta(seconds=5)
            hi = (n.ended_at or datetime.now(UTC)) + timedelta(seconds=5)
            for r in rows:
                cr = crawler_run_from_dict({k: _maybe_json(v) for k, v in dict(r).items()})
                if cr.started_at is not None and lo <= cr.started_at <= hi:
                    out.append(cr)
    except sqlite3.Error:
        return out
    finally:
        conn.close()
    return out


# ---------------------------------------------------------------------------------------------- job runs


def load_job_run(state_path: Path, run_id: str) -> JobRun | None:
    rec = job_run_record(state_path, run_id) or _job_run_raw(state_path, run_id)
    if rec is None:
        return None
    run = job_run_from_dict(rec)
    if not run.bookmarks and run.job != "?":
        try:
            run.bookmarks = bookmarks_around(state_path, run.job, run.run_id, run.started_at)
        except sqlite3.Error as e:
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


def load_workflow_run(
    project: Any, env: str, state_path: Path, run_id: str
) -> tuple[WorkflowRun, list[JobRun]]:
    rec = workflow_run_record(state_path, run_id)
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
    wf.nodes = ordered
    wf.edges = edges

    job_runs: list[JobRun] = []
    for n in wf.nodes:
        if n.kind == "trigger":
            continue
        attempts: list[Attempt] = []
        for i, rid in enumerate(n.job_run_ids):
            jr = load_job_run(state_path, rid)
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
    wf.crawler_runs = crawler_runs_of(state_path, wf.nodes)
    return wf, job_runs


# ------------------------------------------------------------------------------------------------ entry


def _not_found(kind: str, run_id: str, state_path: Path) -> UsageError:
    recent = recent_runs(state_path)
    if recent:
        listing = "\n".join(
            f"    {rid}  ({k}, {desc}, started {start or '?'})" for start, k, rid, desc in recent
        )
        more = f"\n  recent runs:\n{listing}"
    else:
        more = f"\n  (no run recorded yet in {state_path})"
    return UsageError(
        f"no {kind} with id {run_id}{more}\n  what to do: pass one of these ids, e.g. "
        f"`etl report {recent[0][2] if recent else 'RUN_ID'}`, or list runs with `etl runs`"
    )


def latest_run(state_path: Path) -> tuple[str, str] | None:
    """(kind, run_id) of the most recently started run: a workflow run, or a job run of its own (a job run
    inside a workflow run is shown on its workflow run's page)."""
    recent = recent_runs(state_path, 1, top_level=True)
    if not recent:
        return None
    return ("workflow" if recent[0][1] == "workflow run" else "job", recent[0][2])


def build_report(
    project: Any, env: str, run_id: str | None = None, workflow_run_id: str | None = None
) -> Report:
    """The Report of a job run or workflow run (default: the most recent run); UsageError (exit 2) naming
    recent
    runs when the id is unknown."""
    state_path = Path(project.env_config(env).state.path)
    root = str(getattr(project, "root", ""))
    if run_id is None and workflow_run_id is None:
        found = latest_run(state_path)
        if found is None:
            raise UsageError(
                f"no run recorded yet in {state_path}\n  what to do: run a job (`etl run JOB.yaml`) "
                "or a workflow (`etl workflow run WORKFLOW.yaml`) first"
            )
        kind, rid = found
        run_id, workflow_run_id = (None, rid) if kind == "workflow" else (rid, None)
    if workflow_run_id is None and run_id is not None:
        job = load_job_run(state_path, run_id)
        if job is not None:
            return Report(title=f"job run {job.job}", job_runs=[job], project=root)
        # an id given without --workflow-run may be a workflow run's
        if workflow_run_record(state_path, run_id) is not None:
            workflow_run_id = run_id
        else:
            raise _not_found("job run", run_id, state_path)
    assert workflow_run_id is not None
    try:
        wf, jobs = load_workflow_run(project, env, state_path, workflow_run_id)
    except LookupError:
        raise _not_found("workflow run", workflow_run_id, state_path) from None
    return Report(title=f"workflow run {wf.workflow}", workflow=wf, job_runs=jobs, project=root)
