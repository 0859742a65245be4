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
    @click.pass_context
    def scheduler_cmd(ctx: click.Context, workflows_dir: str | None, once: bool, grace_seconds: float,
                      log_json: bool, poll_seconds: float, settle_seconds: float, no_notifications: bool) -> None:
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
        log = SchedulerLog(json_lines=log_json)
        lock = SchedulerLock(state_path)
        lock.acquire()
        try:
            store = SchedulerStore(state_path)
            starter = SubprocessStarter(project.root, env, state_path)
            source = ProjectWorkflows(project, env, folder)
            sched = Scheduler(store, starter, source, log=log, settle_seconds=settle_seconds,
                              poll_seconds=poll_seconds, use_notifications=not no_notifications)
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
