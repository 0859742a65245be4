"""`etl plan WORKFLOW.yaml [--format text|mermaid|dot|asl]`: the workflow's graph (triggers -> nodes, conditions),
after the same checks as `etl validate`."""

from __future__ import annotations

import sys
from pathlib import Path

import click


def register(group: click.Group) -> None:
    @group.command("plan")
    @click.argument("workflow", type=click.Path(path_type=Path))
    @click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot", "asl"]), default="text",
                  show_default=True)
    @click.option("--run", "run_id", default=None, metavar="RUN_ID",
                  help="colour the nodes with the states of this workflow run (`etl workflow status --list`)")
    @click.pass_context
    def plan(ctx: click.Context, workflow: Path, fmt: str, run_id: str | None) -> None:
        """Show a workflow's triggers, nodes and run order (text), or its graph as Mermaid or Graphviz DOT."""
        from etl_framework.config.load import load_workflow
        from etl_framework.config.project import Project
        from etl_framework.errors import UsageError
        from etl_framework.graph import render

        obj = ctx.obj or {}
        if not workflow.is_file():
            raise UsageError(f"workflow file {workflow} not found\n  what to do: pass a workflow YAML file, e.g. "
                             "jobs/nightly_trips.yaml")
        project = Project.discover(obj.get("project_dir"), start=workflow)
        loaded = load_workflow(workflow, project, obj.get("env", "local"))
        states = None
        if run_id:
            from etl_framework.state.workflows import run_states

            states = run_states(project.env_config(obj.get("env", "local")).state.path, run_id,
                                loaded.config.workflow)
        if fmt == "asl":  # the state machine `etl deploy` would create with orchestrator: step_functions
            import json

            from etl_framework.deploy.asl import state_machine
            from etl_framework.deploy.spec import project_name, s3_join, upload_root

            env = obj.get("env", "local")
            d = project.env_config(env).deploy
            kw: dict = {}
            if d is not None:
                kw = {"prefix": d.name_prefix, "poll_seconds": d.poll_seconds,
                      "properties_root": s3_join(upload_root(d, project_name(project.root, d)[0], env), "runs")}
            machine = state_machine(loaded.config, {n: j.config for n, j in loaded.jobs.items()}, **kw)
            sys.stdout.write(json.dumps(machine, indent=2) + "\n")
            return
        sys.stdout.write(render(loaded.config, fmt, states))
