"""`etl scheduler`: start workflow runs on schedule and on file arrival, until SIGTERM/SIGINT (SPEC §7)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from etl_framework.errors import UsageError


def register(group: click.Group) -> None:
    @group.command("scheduler")
    @click.option("--workflows", "workflows_dir", type=click.Path(file_okay=False), default=None,
                  help="folder of workflow files, searched recursively (default: the project's jobs/)")
    @click.option("--once", is_flag=True,
                  help="one pass: fire what is due or batched now, wait for the runs it started, exit")
    @click.option("--grace-seconds", type=float, default=60.0, show_default=True,
                  help="on SIGTERM, how long running runs may finish before they are stopped (and marked)")
    @click.option("--log-json", is_flag=True, help="one JSON object per log line (stderr)")
    @click.option("--poll-seconds", type=float, default=5.0, show_default=True,
                  help="listing poll of watched folders (each pass when OS notifications are unavailable)")
    @click.option("--settle-seconds", type=float, default=2.0, show_default=True,
                  help="a new file is taken once its size and mtime have not changed for this long")
    @click.option("--no-notifications", is_flag=True, help="listing poll only (no watchdog/inotify)")
    @click.option("--backfill", is_flag=True, help="files already in a watched folder when its event trigger is "
                  "first served fire too (default: they are the baseline, as for an EventBridge rule)")
    @click.option("--status", "show_status", is_flag=True,
                  help="print the scheduler's state (schedules, pending events, waiting firings) and exit")
    @click.option("--json", "as_json", is_flag=True, help="with --status: JSON on stdout")
    @click.pass_context
    def scheduler_cmd(ctx: click.Context, workflows_dir: str | None, once: bool, grace_seconds: float,
                      log_json: bool, poll_seconds: float, settle_seconds: float, no_notifications: bool,
                      show_status: bool, as_json: bool, backfill: bool) -> None:
        """Run the local scheduler (EventBridge + Glue triggers): scheduled triggers fire on time (UTC), event
        triggers on new files (Glue event batching); state survives restarts, nothing fires twice."""
        from etl_framework.config.project import Project
        from etl_framework.scheduler.service import ProjectWorkflows, Scheduler, SchedulerLog
        from etl_framework.scheduler.starter import SubprocessStarter
        from etl_framework.scheduler.store import SchedulerLock, SchedulerStore

        env = ctx.obj.get("env", "local")
        project = Project.discover(ctx.obj.get("project_dir"))
        env_cfg = project.env_config(env)
        if env_cfg.state.backend != "sqlite":
            raise UsageError(
                f"env {env}: the local scheduler keeps its state in a SQLite state store, but state.backend is "
                f"{env_cfg.state.backend}\n  what to do: run it with a local env; on AWS, the triggers that "
                "`etl deploy` creates are scheduled by Glue and EventBridge"
            )
        folder = Path(workflows_dir).resolve() if workflows_dir else project.jobs_dir
        if not folder.is_dir():
            raise UsageError(f"workflow folder {folder} does not exist\n  what to do: pass --workflows DIR")
        state_path = Path(env_cfg.state.path)
        if show_status:
            _status(state_path, as_json)
            return
        log = SchedulerLog(json_lines=log_json)
        lock = SchedulerLock(state_path)
        lock.acquire()
        try:
            store = SchedulerStore(state_path)
            starter = SubprocessStarter(project.root, env, state_path)
            source = ProjectWorkflows(project, env, folder)
            sched = Scheduler(store, starter, source, log=log, settle_seconds=settle_seconds,
                              poll_seconds=poll_seconds, use_notifications=not no_notifications, backfill=backfill)
            sched.install_signal_handlers()
            log(f"scheduler for {folder} (state {state_path})" + (" — one pass" if once else ""),
                env=env, pid=os.getpid())
            if once:
                sched.run_once(grace_seconds)
            else:
                sched.run_forever(grace_seconds)
            store.close()
        finally:
            lock.release()


def _status(state_path: Path, as_json: bool) -> None:
    """What the scheduler has on record: which lock holder, each schedule's last tick, pending events per trigger,
    firings not yet started, and the latest batches."""
    from etl_framework.cli.common import print_json
    from etl_framework.scheduler.store import SchedulerLock, SchedulerStore

    holder = SchedulerLock(state_path).holder()
    store = SchedulerStore(state_path)
    try:
        conn = store.conn
        data = {
            "state_path": str(state_path),
            "lock_holder": holder or None,
            "schedules": [dict(r) for r in conn.execute(
                "SELECT workflow, trigger, expr, last_tick FROM scheduler_schedules ORDER BY workflow, trigger")],
            "pending_events": [dict(r) for r in conn.execute(
                "SELECT workflow, trigger, COUNT(*) AS events, MIN(seen_at) AS first_seen_at FROM scheduler_events"
                " WHERE batch_id IS NULL GROUP BY workflow, trigger ORDER BY workflow, trigger")],
            "waiting_firings": [dict(r) for r in conn.execute(
                "SELECT firing_id, workflow, trigger, kind, due_at, batch_id, state, note FROM scheduler_firings"
                " WHERE state IN ('waiting', 'starting') ORDER BY firing_id")],
            "recent_firings": [dict(r) for r in conn.execute(
                "SELECT firing_id, workflow, trigger, kind, due_at, batch_id, state, run_id, started_at, note"
                " FROM scheduler_firings ORDER BY firing_id DESC LIMIT 20")],
        }
    finally:
        store.close()
    from etl_framework.scheduler.schedules import default_next_fire
    from etl_framework.scheduler.store import parse_ts

    for r in data["schedules"]:
        try:
            nxt = default_next_fire(r["expr"], parse_ts(r["last_tick"]))
        except Exception:  # noqa: BLE001 - an expression that no longer parses: the scheduler reports it
            nxt = None
        r["next_tick"] = nxt.isoformat() if nxt else None
    if as_json:
        print_json(data)
        return
    click.echo(f"state store {state_path}: " + (f"scheduler running ({holder})" if holder else "no scheduler running"))
    for r in data["schedules"]:
        click.echo(f"  schedule {r['workflow']}.{r['trigger']} {r['expr']}: handled up to {r['last_tick']}, "
                   f"next tick {r['next_tick'] or 'never'}")
    for r in data["pending_events"]:
        click.echo(f"  pending {r['workflow']}.{r['trigger']}: {r['events']} event(s) since {r['first_seen_at']}")
    for r in data["waiting_firings"]:
        click.echo(f"  waiting firing {r['firing_id']} {r['workflow']}.{r['trigger']} ({r['kind']}, due {r['due_at']})"
                   + (f": {r['note']}" if r["note"] else ""))
    for r in data["recent_firings"]:
        click.echo(f"  firing {r['firing_id']} {r['workflow']}.{r['trigger']} {r['kind']} {r['state']}"
                   + (f" run {r['run_id']}" if r["run_id"] else "") + (f" — {r['note']}" if r["note"] else ""))
