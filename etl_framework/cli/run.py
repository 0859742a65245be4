"""`etl run JOB.yaml [--param k=v ...] [--json] [--no-report]`: run one job locally (SPEC §9).

Progress goes to stderr; with `--json` the run record (stages, metrics) is the only thing on stdout. Exit code 0
on success, 1 when the run failed, 2 for a bad config or usage, 3 when the quality gate failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from etl_framework.cli.common import err, prestart_spark, print_json

# a job naming its own driver `jars:` waits for its config before Spark starts: they join the JVM's class path
PRESTART_VETO = r"\bjars\s*:"


def register(group: click.Group) -> None:
    group.add_command(run)


def parse_params(items: tuple[str, ...]) -> dict[str, str]:
    from etl_framework.errors import UsageError

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE, e.g. --param min_distance=0.5")
        out[key.strip()] = value
    return out


def write_run_report(project: Any, run_id: str, env: str) -> Path | None:
    """The HTML report of the run, when the report module is installed (never fails the command)."""
    try:
        from etl_framework.report import write_report  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        return Path(write_report(project, run_id=run_id, env=env))
    except Exception as e:  # noqa: BLE001 - a report problem must not change the run's exit code
        err(f"note: no report written ({type(e).__name__}: {e})")
        return None


def suggest_job(job_file: Path, project_dir: str | None) -> str:
    """Did-you-mean among the user's own job files (the project around the path, else the working directory's)."""
    import difflib
    import os

    from etl_framework.config.project import Project
    from etl_framework.errors import UsageError

    try:
        project = Project.discover(project_dir, start=job_file)
    except UsageError:
        return "give the path of a job YAML file (no project found here: `etl init DIR` creates one)"
    jobs = sorted(p for p in project.jobs_dir.rglob("*.y*ml") if not p.name.startswith("."))
    if not jobs:
        return f"give the path of a job YAML file; {project.jobs_dir} holds none yet"
    shown = {os.path.relpath(p): p for p in jobs}
    near = difflib.get_close_matches(str(job_file), list(shown), n=1, cutoff=0.5) or difflib.get_close_matches(
        job_file.name, [p.name for p in jobs], n=1, cutoff=0.5)
    if near:
        match = near[0] if near[0] in shown else next(k for k, p in shown.items() if p.name == near[0])
        return f"did you mean `etl run {match}`?"
    listed = ", ".join(list(shown)[:8]) + (", ..." if len(shown) > 8 else "")
    return f"give the path of one of the project's job files: {listed}"


@click.command()
@click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="override a job param (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print the run record as JSON on stdout")
@click.option("--no-report", is_flag=True, help="do not write the HTML run report")
@click.option("--env", "env_name", default=None, metavar="ENV",
              help="environment config conf/<ENV>.yaml (same as `etl --env ENV run ...`)")
@click.option("--workflow-run-id", default=None, metavar="ID",
              help="the workflow run this job run belongs to (`${run.id}`), e.g. an Airflow DAG run id")
@click.option("--run-properties", "run_props", default=None, metavar="JSON",
              help="run properties of that run as a JSON object (`${run.X}`, ctx.get_run_property)")
@click.pass_context
def run(ctx: click.Context, job_file: Path, params: tuple[str, ...], as_json: bool, no_report: bool,
        env_name: str | None, workflow_run_id: str | None, run_props: str | None) -> None:
    """Run the job JOB_FILE: crawl, extract, transform, quality gate, write, register."""
    from etl_framework.errors import Stopped, UsageError

    env = env_name or (ctx.obj.get("env", "local") if ctx.obj else "local")
    project_dir = ctx.obj.get("project_dir") if ctx.obj else None
    if not job_file.exists():
        raise UsageError(f"job file {job_file} does not exist\n  what to do: {suggest_job(job_file, project_dir)}")
    prestart_spark(job_file, project_dir, env, veto=PRESTART_VETO)
    from etl_framework.config.project import project_for
    from etl_framework.engine.job import RunStopped, run_job
    from etl_framework.state.runs import open_run_store

    project = project_for(job_file, project_dir)
    props = None
    if run_props:
        from etl_framework.engine.context import LocalRunProperties
        from etl_framework.runtime.args import parse_run_properties

        props = LocalRunProperties(parse_run_properties(run_props))
    try:
        result = run_job(job_file, project=project, env=env, params=parse_params(params) or None,
                         run_properties=props, workflow_run_id=workflow_run_id or None)
    except RunStopped as e:
        if as_json:  # the STOPPED record, as for any other end of a run
            store = open_run_store(project.env_config(env))
            try:
                record = store.get_run(e.run_id)
            finally:
                store.close()
            if record:
                print_json(record)
        raise Stopped(str(e)) from None
    report = None if no_report else write_run_report(project, result.run_id, env)
    if report is not None:
        err(f"report: {report}")
    if as_json:
        store = open_run_store(project.env_config(env))
        try:
            record = store.get_run(result.run_id) or result.to_dict()
        finally:
            store.close()
        if report is not None:
            record["report"] = str(report)
        print_json(record)
    if result.exception is not None:
        raise result.exception
    if not as_json:
        err(f"run {result.run_id} succeeded; details: etl show {result.run_id}")
