"""`etl resume RUN_ID`: finish a failed job run from the first stage that did not complete."""

from __future__ import annotations

from typing import Any

import click

from etl_framework.cli.common import err, print_json


def outcome_line(record: dict[str, Any] | None, run_id: str) -> str:
    """What the resumed attempt did: a run whose input another run already loaded ends without loading anything,
    and says so instead of a bare "succeeded"."""
    nothing = ((record or {}).get("details") or {}).get("no_new_input")
    attempt = (record or {}).get("attempt")
    if nothing and record and int(record.get("attempt") or 1) > 1 and not any(
            s.get("stage") == "write" and s.get("status") == "SUCCEEDED" and s.get("attempt") == attempt
            for s in record.get("stages", [])):
        return (f"run {run_id} resumed (attempt {attempt}) and loaded nothing: {nothing} — another run loaded this "
                f"input meanwhile; details: etl show {run_id}")
    return f"run {run_id} succeeded on resume; details: etl show {run_id}"


def register(group: click.Group) -> None:
    @group.command("resume")
    @click.argument("run_id")
    @click.option("--json", "as_json", is_flag=True, help="print the run record as JSON on stdout")
    @click.option("--no-report", is_flag=True, help="do not write the HTML run report")
    @click.pass_context
    def resume(ctx: click.Context, run_id: str, as_json: bool, no_report: bool) -> None:
        """Re-run the failed job run RUN_ID from its first incomplete stage (same run id, next attempt)."""
        from etl_framework.cli.run import write_run_report
        from etl_framework.config.project import Project
        from etl_framework.engine.resume import resume_run
        from etl_framework.state.runs import open_run_store

        env = ctx.obj.get("env", "local")
        project = Project.discover(ctx.obj.get("project_dir"))
        result = resume_run(run_id, project, env)
        report = None if no_report else write_run_report(project, result.run_id, env)
        if report is not None:
            err(f"report: {report}")
        store = open_run_store(project.env_config(env))
        try:
            record = store.get_run(result.run_id)
        finally:
            store.close()
        if as_json:
            print_json({**(record or result.to_dict()), **({"report": str(report)} if report else {})})
        if result.exception is not None:
            raise result.exception
        if not as_json:
            err(outcome_line(record, result.run_id))
