"""`etl runs [--job J] [--json]` (run history) and `etl show RUN_ID [--json]` (one run: stages, durations,
metrics, quality results, error)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from etl_framework.cli.common import print_json


def register(group: click.Group) -> None:
    group.add_command(runs)
    group.add_command(show)


def _store(ctx: click.Context) -> Any:
    from etl_framework.config.project import Project
    from etl_framework.state.runs import open_run_store

    project = Project.discover(ctx.obj.get("project_dir") if ctx.obj else None)
    return open_run_store(project.env_config(ctx.obj.get("env", "local") if ctx.obj else "local"))


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=140 if not click.get_text_stream("stdout").isatty()
                   else None)


def _time(ts: str | None) -> str:
    return (ts or "-").replace("T", " ").replace("Z", "")[:19]


STATUS_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "cyan", "SKIPPED": "dim", "STOPPED": "yellow",
                "TIMEOUT": "yellow"}


@click.command()
@click.option("--job", "job", metavar="JOB", help="only runs of this job")
@click.option("--limit", default=20, show_default=True, help="how many runs")
@click.option("--json", "as_json", is_flag=True, help="the run records as a JSON array on stdout")
@click.option("--locks", "show_locks", is_flag=True, help="list the write locks of tables: holder and lease")
@click.option("--metrics", "show_metrics", is_flag=True, help="rows read/written/quarantined, duration, bytes "
              "written and bookmark lag per run (what AWS runs publish to CloudWatch)")
@click.option("--unlock", "unlock", metavar="TARGET", help="release the write lock of a table (and of tables inside "
              "it) by hand; the holding run, if RUNNING, is marked FAILED. Logged in its run record")
@click.pass_context
def runs(ctx: click.Context, job: str | None, limit: int, as_json: bool, show_locks: bool,
         unlock: str | None, show_metrics: bool = False) -> None:
    """List recent job runs, newest first."""
    from rich.markup import escape
    from rich.table import Table

    from etl_framework.log import fmt_duration

    store = _store(ctx)
    try:
        if show_locks or unlock:
            _locks(store, unlock, as_json)
            return
        records = store.list_runs(job=job, limit=limit)
        if show_metrics:
            records = [store.get_run(r["run_id"]) or r for r in records]
    finally:
        store.close()
    if show_metrics:
        _metrics_table(records, as_json)
        return
    if as_json:
        print_json(records)
        return
    if not records:
        click.echo("no runs yet" + (f" of job {job}" if job else "") + " (start one with `etl run JOB.yaml`)")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("run id", "job", "env", "status", "started (UTC)", "duration", "error"):
        table.add_column(col, no_wrap=col != "error", overflow="fold")
    for r in records:
        st = r["status"]
        error = ""
        if r.get("error"):
            error = f"{r.get('error_stage') or ''}: " + r["error"].splitlines()[0].split(": ", 2)[-1][:80]
        table.add_row(r["run_id"], r["job"], r.get("env") or "", f"[{STATUS_STYLE.get(st, '')}]{st}[/]",
                      _time(r["started_at"]), fmt_duration(r.get("duration_s")), escape(error))
    _console().print(table)


def _metrics_table(records: list[dict[str, Any]], as_json: bool) -> None:
    """`etl runs --metrics`: the numbers CloudWatch gets on AWS, from the local run records."""
    from rich.table import Table

    from etl_framework.log import fmt_bytes, fmt_count, fmt_duration
    from etl_framework.metrics import from_record

    rows = [{"run_id": r["run_id"], "job": r["job"], "status": r["status"], **from_record(r)} for r in records]
    if as_json:
        print_json(rows)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    cols = ("run id", "job", "status", "rows read", "rows written", "quarantined", "duration", "bytes written",
            "bookmark lag")
    for col in cols:
        table.add_column(col, no_wrap=True, justify="right" if col not in ("run id", "job", "status") else "left")

    def num(v: Any, f: Any = fmt_count) -> str:
        return "-" if v is None else f(v)

    for r in rows:
        table.add_row(r["run_id"], r["job"], r["status"], num(r.get("rows_read")), num(r.get("rows_written")),
                      num(r.get("rows_quarantined")), num(r.get("duration_s"), fmt_duration),
                      num(r.get("bytes_written"), fmt_bytes), num(r.get("bookmark_lag_s"), fmt_duration))
    _console().print(table)


def _locks(store: Any, unlock: str | None, as_json: bool) -> None:
    """`--locks` and `--unlock TARGET`: what holds which table, and releasing one by hand."""
    from etl_framework.cli.common import err
    from etl_framework.state.locks import unlocker, when
    from etl_framework.tables.fs import target_key

    if unlock is None:
        locks = store.list_locks()
        if as_json:
            print_json(locks)
        elif not locks:
            err("no table is locked")
        for h in [] if as_json else locks:
            click.echo(f"{h['target']}  run {h['run_id']} of job {h['job']} (pid {h.get('pid')} on {h.get('host')}, "
                       f"since {h.get('acquired_at')}, lease until {when(h.get('lease_until'))})")
        return
    key = target_key(unlock)
    by = unlocker()
    released = store.force_unlock(key, by)
    for h in released:
        err(f"released the write lock of {h['target']} held by run {h['run_id']} of job {h['job']} (pid "
            f"{h.get('pid')} on {h.get('host')}); {by}. If that run was still RUNNING it is recorded FAILED")
    if as_json:
        print_json({"target": key, "released": released, "by": by})
    elif not released:
        err(f"no lock held on {key} (see `etl runs --locks`)")


def _metric_text(stage: str, m: dict[str, Any]) -> str:
    from etl_framework.log import fmt_bytes, fmt_count

    if not m:
        return ""
    if m.get("reason"):
        return str(m["reason"])
    parts = []
    if "rows_in" in m and m["rows_in"] is not None:
        parts.append(f"rows in {fmt_count(m['rows_in'])}")
    if "rows_out" in m and m["rows_out"] is not None:
        parts.append(f"rows out {fmt_count(m['rows_out'])}")
    for name, s in (m.get("sources") or {}).items():
        bits = [f"{s.get('format')}"]
        if s.get("rows") is not None:
            bits.append(f"{fmt_count(s['rows'])} rows")
        if s.get("files") is not None:
            bits.append(f"{s['files']} files")
        if s.get("bytes") is not None:
            bits.append(fmt_bytes(s["bytes"]))
        parts.append(f"{name}: " + " ".join(bits))
    if m.get("files_written") is not None:
        parts.append(f"files written {m['files_written']} ({fmt_bytes(m.get('bytes_written', 0))})")
    if m.get("files_removed"):
        parts.append(f"files removed {m['files_removed']}")
    if m.get("partitions_touched") is not None:
        parts.append(f"partitions touched {m['partitions_touched']}")
    if m.get("table_version") is not None:
        parts.append(f"version {m['table_version']}")
    if m.get("rows_inserted") is not None:
        parts.append(f"inserted {fmt_count(m['rows_inserted'])}, updated {fmt_count(m.get('rows_updated'))}")
    if m.get("bad_records"):
        parts.append(f"malformed rows set aside {fmt_count(m['bad_records'])} -> {m.get('bad_records_path')}")
    if m.get("quarantined_rows") is not None:
        parts.append(f"quarantined {fmt_count(m['quarantined_rows'])} -> {m.get('quarantine_path')}")
    if m.get("steps") is not None:
        parts.append(f"{m['steps']} steps")
    return "; ".join(parts)


def print_quality(console: Any, run: dict[str, Any]) -> None:
    """The quality gate's results of a run (the quality stage stores them in details['quality'])."""
    results = (run.get("details") or {}).get("quality")
    if not results:
        return
    try:
        from etl_framework.quality.show import render_quality  # type: ignore[import-not-found]
    except ImportError:
        render_quality = None
    if render_quality is not None:
        render_quality(console, results)
        return
    from rich.table import Table

    rows = results.get("results", results) if isinstance(results, dict) else results
    console.print("\n[bold]quality gate[/bold]")
    if not isinstance(rows, list):
        console.print(str(rows))
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("rule", "on_fail", "success", "observed", "unexpected", "unexpected %", "action"):
        table.add_column(col)
    for r in rows:
        if not isinstance(r, dict):
            continue
        ok = r.get("success")
        table.add_row(str(r.get("rule") or r.get("expectation") or r.get("expect") or "?"),
                      str(r.get("on_fail", "")), "[green]yes[/]" if ok else ("[red]no[/]" if ok is False else "-"),
                      str(r.get("observed_value", r.get("observed", ""))),
                      str(r.get("unexpected_count", "")), str(r.get("unexpected_percent", "")),
                      str(r.get("action", "")))
    console.print(table)


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="the run record as JSON on stdout")
@click.option("--log", "show_log", is_flag=True, help="the run's own log on stdout: progress and the full error")
@click.pass_context
def show(ctx: click.Context, run_id: str, as_json: bool, show_log: bool) -> None:
    """Show one job run: status, params, each stage with its duration and metrics, quality results, error."""
    from rich.markup import escape
    from rich.table import Table

    from etl_framework.errors import UsageError
    from etl_framework.log import fmt_duration

    store = _store(ctx)
    try:
        run = store.get_run(run_id)
        if run is None:
            recent = [r["run_id"] for r in store.list_runs(limit=5)]
            raise UsageError(f"no job run {run_id}" + (f" (recent runs: {', '.join(recent)})" if recent else
                             " (no runs recorded yet)") + "\n  what to do: list runs with `etl runs`")
    finally:
        store.close()
    if show_log:
        log = (run.get("details") or {}).get("log")
        if not log or not Path(log).is_file():
            raise UsageError(f"run {run_id} has no log file here" + (f" ({log} is gone)" if log else "")
                             + "\n  what to do: `etl show RUN_ID --json` holds the full error (details.error_detail);"
                             " on Glue the driver's log is in CloudWatch")
        sys.stdout.write(Path(log).read_text(encoding="utf-8", errors="replace"))
        return
    if as_json:
        print_json(run)
        return
    console = _console()
    st = run["status"]
    console.print(f"[bold]{run['run_id']}[/bold]  job [bold]{run['job']}[/bold]  env {run.get('env')}  "
                  f"[{STATUS_STYLE.get(st, '')}]{st}[/]  attempt {run.get('attempt', 1)}")
    console.print(f"started {_time(run['started_at'])} UTC, ended {_time(run.get('ended_at'))} UTC, "
                  f"took {fmt_duration(run.get('duration_s'))}")
    if run.get("job_path"):
        console.print(f"job file {run['job_path']}")
    if run.get("workflow_run_id"):
        console.print(f"workflow run {run['workflow_run_id']}")
    if run.get("params"):
        console.print("params " + ", ".join(f"{k}={v}" for k, v in run["params"].items()))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("stage", "status", "duration", "metrics"):
        table.add_column(col, overflow="fold")
    for s in run.get("stages", []):
        label = s["stage"] + (f" (attempt {s['attempt']})" if s.get("attempt", 1) != 1 else "")
        table.add_row(label, f"[{STATUS_STYLE.get(s['status'], '')}]{s['status'].lower()}[/]",
                      fmt_duration(s.get("duration_s")),
                      escape(_metric_text(s["stage"], s.get("metrics") or {})))
    console.print()
    console.print(table)
    print_quality(console, run)
    if run.get("error"):
        from etl_framework.errors import shorten

        full = run["error"]
        text = shorten(full)
        if text != full or (run.get("details") or {}).get("error_detail"):
            text += f"\n  (the full error and Spark's cause: etl show {run_id} --log, or --json)"
        console.print(f"\n[red]error[/red] {escape(text)}")
