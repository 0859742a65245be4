"""`etl resume RUN_ID`: finish a failed job run from the first stage that did not complete."""

from __future__ import annotations

import click

from etl_framework.cli.common import err, print_json


def register(group: click.Group) -> None:
    @group.command("resume")
    @click.argument("run_id")
    @click.option("--json", "as_json", is_flag=True, help="print the run record as JSON on stdout")
    @click.pass_context
    def resume(ctx: click.Context, run_id: str, as_json: bool) -> None:
        """Re-run the failed job run RUN_ID from its first incomplete stage (same run id, next attempt)."""
        from etl_framework.config.project import Project
        from etl_framework.engine.resume import resume_run
        from etl_framework.state.runs import open_run_store

        env = ctx.obj.get("env", "local")
        project = Project.discover(ctx.obj.get("project_dir"))
        result = resume_run(run_id, project, env)
        if as_json:
            store = open_run_store(project.env_config(env))
            print_json(store.get_run(result.run_id) or result.to_dict())
        if result.exception is not None:
            raise result.exception
        if not as_json:
            err(f"run {result.run_id} succeeded on resume; details: etl show {result.run_id}")
