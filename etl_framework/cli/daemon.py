"""`etl daemon start|stop|status`: the warm development loop (runtime/daemon.py). While a project's daemon runs,
`etl run`, `etl preview`, `etl resume` and `etl workflow run|resume` of that project and env run in its warm
SparkSession instead of starting one; `etl daemon stop` (or `ETL_NO_DAEMON=1` for one command) turns it off."""

from __future__ import annotations

import click

from etl_framework.cli.common import err, print_json


def register(group: click.Group) -> None:
    group.add_command(daemon)


def _where(ctx: click.Context) -> tuple[object, str]:
    from etl_framework.config.project import Project

    project = Project.discover(ctx.obj.get("project_dir") if ctx.obj else None)
    return project, (ctx.obj.get("env", "local") if ctx.obj else "local")


@click.group()
def daemon() -> None:
    """Keep a warm Spark session for this project: runs start in about a second."""


@daemon.command("start")
@click.option("--idle-minutes", type=float, default=30.0, show_default=True,
              help="stop after this long without a command")
@click.option("--json", "as_json", is_flag=True, help="the daemon's pid and port as JSON on stdout")
@click.pass_context
def start_cmd(ctx: click.Context, idle_minutes: float, as_json: bool) -> None:
    """Start the daemon for this project and env (waits until it serves)."""
    from etl_framework.errors import EtlError
    from etl_framework.runtime.daemon import alive, read_info, start

    project, env = _where(ctx)
    before = read_info(project.root, env)  # type: ignore[attr-defined]
    if before and alive(int(before.get("pid", 0))):
        err(f"etl daemon already runs for env {env} (pid {before['pid']})")
        info = before
    else:
        err(f"starting etl daemon for env {env} (a Spark session; it stops after {idle_minutes:g} idle minutes) ...")
        try:
            info = start(project.root, env, idle_minutes=idle_minutes)  # type: ignore[attr-defined]
        except RuntimeError as e:
            raise EtlError(f"etl daemon did not start: {e}\n  what to do: run `etl doctor`, or the command "
                           "without the daemon") from None
        err(f"etl daemon serves env {env} (pid {info['pid']}): etl run / preview / resume / workflow run use it")
    if as_json:
        print_json({k: info[k] for k in ("pid", "port", "env", "started_at", "idle_minutes")})


@daemon.command("stop")
@click.pass_context
def stop_cmd(ctx: click.Context) -> None:
    """Stop the daemon of this project and env (a command it is running is stopped as by Ctrl-C)."""
    from etl_framework.runtime.daemon import stop

    project, env = _where(ctx)
    pid = stop(project.root, env)  # type: ignore[attr-defined]
    err(f"etl daemon (pid {pid}) stopped" if pid else f"no etl daemon runs for env {env}")


@daemon.command("status")
@click.option("--json", "as_json", is_flag=True, help="the daemon's state as JSON on stdout")
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """Whether a daemon serves this project and env, and whether it still matches the code and settings."""
    from etl_framework.runtime.daemon import alive, code_fingerprint, conf_fingerprint, read_info

    project, env = _where(ctx)
    info = read_info(project.root, env)  # type: ignore[attr-defined]
    running = bool(info and alive(int(info.get("pid", 0))))
    current = running and info is not None and info.get("code") == code_fingerprint() and info.get(
        "conf") == conf_fingerprint(project.root, env)  # type: ignore[attr-defined]
    if as_json:
        print_json({"running": running, "current": current, **({k: info[k] for k in (
            "pid", "port", "env", "started_at", "idle_minutes")} if running and info else {})})
        return
    if not running:
        err(f"no etl daemon runs for env {env} (`etl daemon start`)")
    else:
        assert info is not None
        err(f"etl daemon pid {info['pid']} serves env {env} since {info['started_at']}"
            + ("" if current else "; the code or Spark settings changed since: the next command replaces it"))
