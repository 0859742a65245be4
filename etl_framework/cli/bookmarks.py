"""`etl bookmarks show|reset JOB`: what an incremental job has already written, and an explicit, logged reset."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from etl_framework.cli.common import err, print_json
from etl_framework.errors import UsageError


def _job_file(project: object, job: str) -> Path:
    """A job given as a file, or by name among the project's jobs/ files."""
    from etl_framework.config.loader import load_yaml

    p = Path(job)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    names = []
    for f in sorted(project.jobs_dir.glob("*.y*ml")):  # type: ignore[attr-defined]
        try:
            data = load_yaml(f).data
        except Exception:  # noqa: BLE001 - a broken neighbour file does not hide this job
            data = None
        if isinstance(data, dict) and "job" in data:
            names.append(str(data["job"]))
            if data["job"] == job:
                return f
    raise UsageError(f"no job named {job!r} in {project.jobs_dir}"  # type: ignore[attr-defined]
                     + (f" (jobs: {', '.join(names)})" if names else ""))


def _context(ctx: click.Context, job: str) -> tuple:
    from etl_framework.config.load import load_job
    from etl_framework.config.project import Project, project_for
    from etl_framework.state.bookmarks import open_bookmark_store

    project = Project.discover(ctx.obj.get("project_dir"))
    path = _job_file(project, job)
    project = project_for(path, ctx.obj.get("project_dir"))
    loaded = load_job(path, project, env=ctx.obj.get("env", "local"))
    env_cfg = project.env_config(ctx.obj.get("env", "local"))
    from etl_framework.tables import storage_for

    store = open_bookmark_store(env_cfg)
    return loaded, storage_for(env_cfg, project.root), store


def register(group: click.Group) -> None:
    @group.group("bookmarks")
    def bookmarks() -> None:
        """Bookmarks of incremental sources (files processed, watermarks)."""

    @bookmarks.command("show")
    @click.argument("job")
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output on stdout")
    @click.pass_context
    def show(ctx: click.Context, job: str, as_json: bool) -> None:
        """Show JOB's bookmark (JOB: a name or a job file), reconciled with its target table."""
        from etl_framework.incremental import current_bookmark

        loaded, storage, store = _context(ctx, job)
        cfg = loaded.config
        bm = current_bookmark(store, cfg.job, cfg.target.format, cfg.target.path, storage)
        data = bm.to_json()
        data["history"] = store.history(cfg.job)
        if as_json:
            print_json(data)
            return
        click.echo(f"job {cfg.job}: bookmark version {bm.version}, last run {bm.run_id or '-'}")
        incremental = {k: s for k, s in cfg.sources.items() if s.incremental}
        if not incremental:
            click.echo("  (no incremental sources: every run reads its sources whole)")
        for name, src in incremental.items():
            cur = bm.sources.get(name)
            if src.incremental and src.incremental.mode == "files":
                n = len(cur.files) if cur else 0
                click.echo(f"  {name}: files mode, {n} file(s) processed")
            else:
                wm = cur.watermark if cur else None
                click.echo(f"  {name}: watermark on {src.incremental.column if src.incremental else '?'} = {wm}")

    @bookmarks.command("reset")
    @click.argument("job")
    @click.option("--to", "to_run", default=None, help="reset to the bookmark right after this run committed")
    @click.pass_context
    def reset(ctx: click.Context, job: str, to_run: str | None) -> None:
        """Reset JOB's bookmark (all input is new again, or back to --to RUN_ID). Logged in the history."""
        from etl_framework.incremental import Bookmark, current_bookmark

        loaded, storage, store = _context(ctx, job)
        cfg = loaded.config
        now = current_bookmark(store, cfg.job, cfg.target.format, cfg.target.path, storage)
        if to_run:
            past = store.at_run(cfg.job, to_run)
            if past is None:
                runs = sorted({h["run_id"] for h in store.history(cfg.job) if h["run_id"]})
                raise UsageError(f"job {cfg.job} has no bookmark committed by run {to_run}"
                                 + (f" (runs with bookmarks: {', '.join(runs[-5:])})" if runs else ""))
            new = Bookmark(job=cfg.job, version=now.version, run_id=to_run, sources=past.sources)
        else:
            new = Bookmark(job=cfg.job, version=now.version, run_id=None)
        # The version counter is kept: commits already in the table stay behind the reset point.
        store.put(new, action="reset")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        err(f"{stamp} bookmark of job {cfg.job} reset" + (f" to run {to_run}" if to_run else " (all input is new)")
            + f"; previous version {now.version}, last run {now.run_id or '-'}")
