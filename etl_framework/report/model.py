"""A normalized, store-independent view of a job run or a workflow run: what the HTML report shows.

The stores (runs, workflows, bookmarks) change shape as the framework evolves; the renderer must not. The
`*_from_dict` builders below accept any record shape a store ever wrote: every field is optional, synonyms are
accepted, and whatever is missing is rendered as "unknown" instead of failing. A report of a run from an older
version of the framework therefore always renders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# States that mean "still going": the report says so and shows what is known.
RUNNING_STATES = {"STARTING", "RUNNING", "STOPPING", "WAITING", "PENDING", "QUEUED"}

# Preferred order of stage metrics; any other metric follows in its own order.
METRIC_ORDER = ("rows_in", "rows_out", "bytes", "bytes_written", "files", "files_written", "partitions")

STAGE_ORDER = ("crawl", "extract", "transform", "quality", "write", "register")


@dataclass
class Stage:
    name: str
    status: str = "UNKNOWN"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    attempt: int | None = None
    seq: int | None = None

    @property
    def duration(self) -> float | None:
        return _duration(self.started_at, self.ended_at, self.duration_s)

    # The headline numbers of a stage, whatever the stage called them (extract counts per source).
    def _sources(self, key: str) -> int | None:
        srcs = self.metrics.get("sources")
        if not isinstance(srcs, dict):
            return None
        vals = [_int(v.get(key)) for v in srcs.values() if isinstance(v, dict)]
        vals = [v for v in vals if v is not None]
        return sum(vals) if vals else None

    @property
    def rows_in(self) -> int | None:
        return _int(self.metrics.get("rows_in"))

    @property
    def rows_out(self) -> int | None:
        m = self.metrics
        v = _int(_get(m, "rows_out", "rows_written", "rows"))
        return v if v is not None else self._sources("rows")

    @property
    def bytes(self) -> int | None:
        v = _int(_get(self.metrics, "bytes", "bytes_written", "bytes_read"))
        return v if v is not None else self._sources("bytes")

    @property
    def files(self) -> int | None:
        v = _int(_get(self.metrics, "files", "files_written", "files_read"))
        return v if v is not None else self._sources("files")

    @property
    def partitions(self) -> int | None:
        v = _get(self.metrics, "partitions_touched", "partitions_added", "partitions")
        if isinstance(v, list):
            return len(v)
        return _int(v)

    @property
    def other_metrics(self) -> dict[str, Any]:
        """Metrics beyond the headline numbers (shown as details)."""
        shown = {
            "rows_in",
            "rows_out",
            "rows_written",
            "bytes",
            "bytes_written",
            "bytes_read",
            "files",
            "files_written",
            "files_read",
            "duration_s",
        }
        if self.name == "quality":
            shown.add("results")  # per-expectation results have their own table
        if (
            self.rows_out is not None
            and "rows_out" not in self.metrics
            and "rows_written" not in self.metrics
        ):
            shown.add("rows")
        if isinstance(_get(self.metrics, "partitions_touched"), int | float):
            shown.add("partitions_touched")
        elif not isinstance(self.metrics.get("partitions"), list):
            shown.add("partitions")
        return {k: v for k, v in self.metrics.items() if k not in shown}


@dataclass
class ExpectationResult:
    name: str
    expect: str = ""
    column: str | None = None
    success: bool | None = None
    observed_value: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    action: str | None = None  # on_fail: fail | quarantine | warn


@dataclass
class BookmarkState:
    source: str
    before: Any = None
    after: Any = None


@dataclass
class JobRun:
    run_id: str
    job: str = "?"
    env: str | None = None
    status: str = "UNKNOWN"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    attempt: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)
    quality: list[ExpectationResult] = field(default_factory=list)
    quarantine: dict[str, int] = field(default_factory=dict)  # reason/rule -> rows (or "rows" -> total)
    quarantine_path: str | None = None
    bad_records: int | None = None  # malformed input rows set aside (bad_records: quarantine)
    bad_records_path: str | None = None
    bookmarks: list[BookmarkState] = field(default_factory=list)
    error_stage: str | None = None
    error: str | None = None
    workflow_run_id: str | None = None
    node: str | None = None
    message: str | None = None  # e.g. "no new input"
    notes: list[str] = field(default_factory=list)  # what could not be read from the record

    @property
    def duration(self) -> float | None:
        return _duration(self.started_at, self.ended_at, self.duration_s)

    @property
    def running(self) -> bool:
        return self.status.upper() in RUNNING_STATES


@dataclass
class Attempt:
    number: int
    state: str = "UNKNOWN"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    job_run_id: str | None = None
    error: str | None = None


def maintained_tables(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    tables = (result or {}).get("tables")
    return [t for t in tables if isinstance(t, dict)] if isinstance(tables, list) else []


def maintain_summary(result: dict[str, Any] | None) -> str:
    """One line of what a maintain node did (`etl workflow status`, the report): `load target: files 6 -> 1, 6 rows,
    5 file(s) deleted; ...`, or its note (nothing to maintain)."""
    if not result:
        return ""
    parts = []
    for t in maintained_tables(result):
        text = f"{t.get('table', '?')}: files {t.get('files_before', '?')} -> {t.get('files_after', '?')}"
        if t.get("rows") is not None:
            text += f", {t['rows']:,} rows"
        if t.get("files_deleted"):
            text += f", {t['files_deleted']} file(s) deleted"
        if t.get("snapshots_expired"):
            text += f", {t['snapshots_expired']} snapshot(s) expired"
        parts.append(text)
    return "; ".join(parts) or str(result.get("note") or "")


@dataclass
class Node:
    name: str
    kind: str = "job"  # job | crawler | maintain | trigger
    state: str = "NOT_RUN"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)
    job_run_ids: list[str] = field(default_factory=list)
    error: str | None = None
    detail: str = ""  # triggers: "conditional (and)"; nodes: e.g. "copied from wr_..."
    key: str = ""  # id in edges, when it differs from the name (triggers: "trigger:NAME")
    result: dict[str, Any] | None = None  # maintain nodes: {"job", "tables": [MaintainResult.metrics() + "table"]}

    @property
    def maintained(self) -> list[dict[str, Any]]:
        """A maintain node's tables, each with files_before/files_after/rows/files_deleted/snapshots_expired."""
        return maintained_tables(self.result)

    def result_summary(self) -> str:
        return maintain_summary(self.result)

    def __post_init__(self) -> None:
        self.key = self.key or self.name

    @property
    def duration(self) -> float | None:
        return _duration(self.started_at, self.ended_at, None)


@dataclass
class Edge:
    src: str
    dst: str
    label: str = ""


@dataclass
class CrawlerRun:
    """A crawler's run as the catalog's crawler records it: what it found and changed."""

    crawler: str
    state: str = "UNKNOWN"
    database: str | None = None
    table: str | None = None
    path: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    message: str = ""
    changes: list[Any] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkflowRun:
    run_id: str
    workflow: str = "?"
    status: str = "UNKNOWN"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    statistics: dict[str, int] = field(default_factory=dict)
    run_properties: dict[str, Any] = field(default_factory=dict)
    resumed_from: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    crawler_runs: list[CrawlerRun] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.status.upper() in RUNNING_STATES

    @property
    def duration(self) -> float | None:
        return _duration(self.started_at, self.ended_at, None)


@dataclass
class Report:
    """What one HTML page shows: a workflow run with its job runs, or one job run."""

    title: str
    job_runs: list[JobRun] = field(default_factory=list)
    workflow: WorkflowRun | None = None
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    project: str | None = None

    @property
    def running(self) -> bool:
        if self.workflow is not None:
            return self.workflow.running
        return any(j.running for j in self.job_runs)


# ------------------------------------------------------------------------------------------- tolerant readers


def parse_time(value: Any) -> datetime | None:
    """ISO text, epoch seconds or milliseconds, or a datetime; naive times are taken as UTC. Bad input ->
    None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        secs = float(value) / 1000 if value > 1e11 else float(value)
        try:
            return datetime.fromtimestamp(secs, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            try:
                return parse_time(float(text))
            except ValueError:
                return None
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return None


def _duration(start: datetime | None, end: datetime | None, stored: float | None) -> float | None:
    if stored is not None:
        return stored
    if start and end:
        return max(0.0, (end - start).total_seconds())
    return None


def _get(d: dict[str, Any], *keys: str, default: Any = None) -> Any:
    """The first present, non-None value among synonyms (records of different versions name things
    differently)."""
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return default


def _as_dict(value: Any) -> dict[str, Any]:
    """A dict from a dict, a JSON text, or anything else (-> {})."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            loaded = json.loads(value)
        except ValueError:
            return []
        return loaded if isinstance(loaded, list) else []
    if isinstance(value, dict):
        # {name: {...}} -> [{name: name, ...}]
        return [
            {"name": k, **v} if isinstance(v, dict) else {"name": k, "value": v} for k, v in value.items()
        ]
    return []


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    f = _float(value)
    return None if f is None else int(f)


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "success", "succeeded", "passed", "pass", "1"):
            return True
        if low in ("false", "failure", "failed", "fail", "0"):
            return False
    if isinstance(value, int):
        return bool(value)
    return None


def _error_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        msg = _get(value, "message", "msg", "error", "text")
        return str(msg) if msg is not None else json.dumps(value, default=str)
    return str(value)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _state(value: Any, default: str = "UNKNOWN") -> str:
    return str(value).upper() if value not in (None, "") else default


# ------------------------------------------------------------------------------------------------- builders


def stage_from_dict(d: dict[str, Any], fallback_name: str = "?") -> Stage:
    metrics = dict(_as_dict(_get(d, "metrics", default={})))
    # Older/flat records keep metrics beside the stage fields.
    for k in METRIC_ORDER:
        if k in d and k not in metrics and d[k] is not None:
            metrics[k] = d[k]
    return Stage(
        name=str(_get(d, "stage", "name", default=fallback_name)),
        status=_state(_get(d, "status", "state")),
        started_at=parse_time(_get(d, "started_at", "start", "start_time", "started")),
        ended_at=parse_time(_get(d, "ended_at", "end", "end_time", "finished_at", "completed_at")),
        duration_s=_float(_get(d, "duration_s", "duration_seconds", "duration", "execution_time")),
        metrics=metrics,
        error=_error_text(_get(d, "error", "error_message")),
        attempt=_int(_get(d, "attempt")),
        seq=_int(_get(d, "seq")),
    )


def expectation_from_dict(d: dict[str, Any]) -> ExpectationResult:
    kwargs = _as_dict(_get(d, "kwargs", default={}))
    result = _as_dict(_get(d, "result", default={}))
    expect = str(_get(d, "expect", "expectation", "expectation_type", "type", default=""))
    column = _get(d, "column", default=kwargs.get("column"))
    name = _get(d, "rule", "name", "rule_name")
    if name is None:
        name = f"{expect}({column})" if column else (expect or "?")
    return ExpectationResult(
        name=str(name),
        expect=expect,
        column=column,
        success=_bool(_get(d, "success", "outcome", "passed")),
        observed_value=_get(d, "observed_value", default=result.get("observed_value")),
        unexpected_count=_int(_get(d, "unexpected_count", default=result.get("unexpected_count"))),
        unexpected_percent=_float(_get(d, "unexpected_percent", default=result.get("unexpected_percent"))),
        action=_get(d, "action", "on_fail"),
    )


def _quarantine(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float):
        return {"rows": int(value)}
    d = _as_dict(value)
    out: dict[str, int] = {}
    for k, v in d.items():
        n = _int(v) if not isinstance(v, dict) else _int(_get(v, "rows", "count"))
        if n is not None:
            out[str(k)] = n
    return out


def _bookmarks(d: dict[str, Any]) -> list[BookmarkState]:
    """Bookmarks before/after, from `{"before": {...}, "after": {...}}` or `bookmark_before`/`bookmark_after`;
    either side may be a whole Bookmark JSON ({"sources": {src: cursor}}) or a plain {src: cursor} map."""
    bm = _as_dict(_get(d, "bookmarks", "bookmark", default={}))
    before = _as_dict(_get(bm, "before", default=_get(d, "bookmark_before", "bookmarks_before", default={})))
    after = _as_dict(_get(bm, "after", default=_get(d, "bookmark_after", "bookmarks_after", default={})))
    if "sources" in before and isinstance(before["sources"], dict):
        before = before["sources"]
    if "sources" in after and isinstance(after["sources"], dict):
        after = after["sources"]
    names = list(dict.fromkeys([*before.keys(), *after.keys()]))
    return [BookmarkState(source=n, before=before.get(n), after=after.get(n)) for n in names]


def _stage_metric(stages: list[Stage], key: str) -> Any:
    """The last value a stage recorded under `key` (write and quality both note quarantine paths)."""
    for s in reversed(stages):
        v = s.metrics.get(key)
        if v is not None and not isinstance(v, bool):
            return v
    return None


def job_run_from_dict(d: dict[str, Any]) -> JobRun:
    """Build a JobRun from a run record of any version; never raises on missing or odd fields."""
    d = dict(_as_dict(d))
    # concerns keep their JSON under `details` (quality, bookmarks, ...): lift it beside the run's own fields
    for k, v in _as_dict(d.get("details")).items():
        d.setdefault(k, v)
    notes: list[str] = []
    stages_raw = _as_list(_get(d, "stages", default=[]))
    stages = [
        stage_from_dict(s, fallback_name=f"stage {i + 1}")
        for i, s in enumerate(stages_raw)
        if isinstance(s, dict)
    ]
    if "stages" not in d:
        notes.append("this run record has no stage records (written by an older version?)")
    quality_raw = _get(d, "quality", "quality_results", "expectations", default=[])
    if isinstance(quality_raw, dict):
        if "results" in quality_raw:
            quality_raw = quality_raw["results"]
        elif not all(isinstance(v, dict) for v in quality_raw.values()):
            quality_raw = []  # a summary without per-expectation results
    quality = [expectation_from_dict(q) for q in _as_list(quality_raw) if isinstance(q, dict)]
    qstage = next((s for s in reversed(stages) if s.name == "quality"), None)
    if not quality and qstage is not None:
        # the gate may keep its results in its stage metrics only
        raw = _get(qstage.metrics, "results", "expectations", default=[])
        quality = [expectation_from_dict(q) for q in _as_list(raw) if isinstance(q, dict)]
    quarantine = _quarantine(_get(d, "quarantine", "quarantine_counts", "quarantined"))
    if not quarantine:
        # the quality block may keep the counts itself
        qb = _as_dict(_get(d, "quality", default={}))
        quarantine = _quarantine(_get(qb, "quarantine", "quarantine_counts", "quarantined"))
        qm = qstage.metrics if qstage is not None else {}
        total = _int(
            _get(
                qb,
                "quarantined_rows",
                default=_get(
                    d,
                    "quarantined_rows",
                    default=_get(qm, "quarantined_rows", "quarantined", "rows_quarantined"),
                ),
            )
        )
        if total:
            quarantine = {"rows": total, **{k: v for k, v in quarantine.items() if k != "rows"}}
    if quarantine and set(quarantine) <= {"rows", "total"}:
        # per rule: the rows each quarantine rule set aside (a row breaking two rules counts in both)
        for q in quality:
            if q.unexpected_count and str(q.action or "").startswith("quarantine"):
                quarantine[q.name] = q.unexpected_count
    err = _get(d, "error")
    err_stage = _get(d, "error_stage", "failed_stage")
    if isinstance(err, dict):
        err_stage = err_stage or _get(err, "stage")
    error = _error_text(err) or _error_text(_get(d, "error_message"))
    if error and not err_stage:
        failed = [s for s in stages if s.status in ("FAILED", "ERROR", "TIMEOUT")]
        if failed:
            err_stage = failed[-1].name
    run_id = str(_get(d, "run_id", "id", "job_run_id", default="?"))
    if run_id == "?":
        notes.append("this run record has no run id")
    return JobRun(
        run_id=run_id,
        job=str(_get(d, "job", "job_name", "name", default="?")),
        env=_get(d, "env", "environment"),
        status=_state(_get(d, "status", "state")),
        started_at=parse_time(_get(d, "started_at", "start", "start_time", "started")),
        ended_at=parse_time(_get(d, "ended_at", "end", "end_time", "finished_at", "completed_at")),
        duration_s=_float(_get(d, "duration_s", "duration_seconds", "duration", "execution_time")),
        attempt=_int(_get(d, "attempt")),
        params=_as_dict(_get(d, "params", "arguments", default={})),
        stages=stages,
        quality=quality,
        quarantine=quarantine,
        bookmarks=_bookmarks(d),
        error_stage=err_stage,
        error=error,
        workflow_run_id=_get(d, "workflow_run_id"),
        node=_get(d, "node"),
        message=_text_or_none(_get(d, "no_new_input", "message", "summary", "outcome")),
        quarantine_path=_text_or_none(_stage_metric(stages, "quarantine_path")),
        bad_records=_int(_stage_metric(stages, "bad_records")),
        bad_records_path=_text_or_none(_stage_metric(stages, "bad_records_path")),
        notes=notes,
    )


def node_from_dict(name: str, d: dict[str, Any], kind: str | None = None) -> Node:
    d = _as_dict(d)
    attempts: list[Attempt] = []
    for i, a in enumerate(_as_list(_get(d, "attempts", "attempt_history", default=[]))):
        if not isinstance(a, dict):
            continue
        attempts.append(
            Attempt(
                number=_int(_get(a, "attempt", "number")) or i + 1,
                state=_state(_get(a, "state", "status")),
                started_at=parse_time(_get(a, "started_at", "start", "start_time")),
                ended_at=parse_time(_get(a, "ended_at", "end", "end_time", "finished_at")),
                job_run_id=_get(a, "job_run_id", "run_id"),
                error=_error_text(_get(a, "error", "error_message")),
            )
        )
    run_ids = _get(d, "job_run_ids", "run_ids", default=None)
    if run_ids is None:
        single = _get(d, "job_run_id", "run_id")
        run_ids = [single] if single else []
    run_ids = [str(r) for r in _as_list(run_ids) if r] if not isinstance(run_ids, str) else [run_ids]
    for a in attempts:
        if a.job_run_id and a.job_run_id not in run_ids:
            run_ids.append(a.job_run_id)
    n_attempts = _get(d, "attempts")
    if not attempts and isinstance(n_attempts, int | float) and not isinstance(n_attempts, bool):
        # only a count was kept: show that many attempts, the last with the node's own times
        for i in range(int(n_attempts)):
            last = i == int(n_attempts) - 1
            attempts.append(
                Attempt(number=i + 1, state=_state(_get(d, "state", "status")) if last else "FAILED")
            )
    return Node(
        name=name,
        kind=str(_get(d, "kind", "type", default=kind or "job")).lower(),
        state=_state(_get(d, "state", "status"), default="NOT_RUN"),
        started_at=parse_time(_get(d, "started_at", "start", "start_time")),
        ended_at=parse_time(_get(d, "ended_at", "end", "end_time", "finished_at")),
        attempts=attempts,
        job_run_ids=run_ids,
        error=_error_text(_get(d, "error", "error_message")),
        result=_as_dict(_get(d, "result")) or None,
    )


def workflow_run_from_dict(d: dict[str, Any]) -> WorkflowRun:
    """Build a WorkflowRun (nodes with states and attempts; edges if the record keeps the graph)."""
    d = _as_dict(d)
    nodes_raw = _get(d, "nodes", "node_states", default={})
    nodes: list[Node] = []
    if isinstance(nodes_raw, dict):
        nodes = [node_from_dict(k, v if isinstance(v, dict) else {"state": v}) for k, v in nodes_raw.items()]
    else:
        for i, v in enumerate(_as_list(nodes_raw)):
            if isinstance(v, dict):
                nodes.append(node_from_dict(str(_get(v, "name", "node", default=f"node {i + 1}")), v))
    edges = []
    for e in _as_list(_get(d, "edges", default=[])):
        if isinstance(e, dict) and _get(e, "src", "from", "source") and _get(e, "dst", "to", "target"):
            edges.append(
                Edge(
                    str(_get(e, "src", "from", "source")),
                    str(_get(e, "dst", "to", "target")),
                    str(_get(e, "label", "state", default="")),
                )
            )
        elif isinstance(e, list | tuple) and len(e) >= 2:
            edges.append(Edge(str(e[0]), str(e[1]), str(e[2]) if len(e) > 2 else ""))
    stats = {}
    for k, v in _as_dict(_get(d, "statistics", "stats", "counts", default={})).items():
        iv = _int(v)
        if iv is not None:
            stats[str(k)] = iv
    return WorkflowRun(
        run_id=str(_get(d, "run_id", "id", "workflow_run_id", default="?")),
        workflow=str(_get(d, "workflow", "workflow_name", "name", default="?")),
        status=_state(_get(d, "status", "state")),
        started_at=parse_time(_get(d, "started_at", "start", "start_time", "started")),
        ended_at=parse_time(_get(d, "ended_at", "end", "end_time", "completed_at", "finished_at")),
        nodes=nodes,
        edges=edges,
        statistics=stats,
        run_properties=_as_dict(_get(d, "run_properties", "properties", default={})),
        resumed_from=_get(d, "resumed_from", "resume_of", "previous_run_id"),
        error=_error_text(_get(d, "error", "error_message")),
    )


def sort_stages(stages: list[Stage]) -> list[Stage]:
    """Stages in the order they ran: by attempt, then by the recorded sequence number when every stage has
    one,
    else in the fixed chain order (then by start time)."""

    def rank(s: Stage) -> int:
        return STAGE_ORDER.index(s.name) if s.name in STAGE_ORDER else len(STAGE_ORDER)

    if stages and all(s.seq is not None for s in stages):
        return sorted(stages, key=lambda s: (s.attempt or 0, s.seq or 0, rank(s)))

    def key(s: Stage) -> tuple[int, int, float]:
        return (s.attempt or 0, rank(s), s.started_at.timestamp() if s.started_at else 0.0)

    return sorted(stages, key=key)


def graph_from_config(cfg: Any) -> tuple[list[Node], list[Edge]]:
    """Nodes and edges of a `WorkflowConfig` as Glue draws a workflow: triggers are nodes too; an edge goes
    from a trigger to each node it starts, and from each watched node to the conditional trigger (labelled with the
    state it waits for). The graph is `WorkflowGraph`'s."""
    from etl_framework.workflow_graph import WorkflowGraph, kind_of

    graph = WorkflowGraph(cfg)
    nodes: list[Node] = []
    for t in graph.triggers:
        detail = kind_of(t).detail(t) + ("" if t.enabled else ", disabled")
        nodes.append(Node(name=t.name, kind="trigger", state="NOT_FIRED", detail=detail, key=f"trigger:{t.name}"))
    edges = [Edge(src, dst, label) for src, dst, label in graph.display_edges()]
    for name in list(cfg.crawlers) + [n for n in cfg.jobs if n not in cfg.crawlers] + list(graph.maintain_nodes()):
        nodes.append(Node(name=name, kind=graph.kind(name)))
    return nodes, edges


def crawler_run_from_dict(d: dict[str, Any]) -> CrawlerRun:
    d = _as_dict(d)
    changes = _get(d, "changes", default=[])
    return CrawlerRun(
        crawler=str(_get(d, "crawler", "name", default="?")),
        state=_state(_get(d, "state", "status")),
        database=_get(d, "database"),
        table=_get(d, "table_name", "table"),
        path=_get(d, "path"),
        started_at=parse_time(_get(d, "started", "started_at", "start_time")),
        ended_at=parse_time(_get(d, "ended", "ended_at", "end_time")),
        message=str(_get(d, "message", default="")),
        changes=_as_list(changes) if not isinstance(changes, list) else changes,
        stats=_as_dict(_get(d, "stats", default={})),
    )
