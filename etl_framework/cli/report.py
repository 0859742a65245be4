"""`etl report`: write the HTML report of a job run or a workflow run (one self-contained file, no server)."""

from __future__ import annotations

import click

from etl_framework.cli.common import err


def register(group: click.Group) -> None:
    group.add_command(report)


@click.command()
@click.argument("run_id", required=False)
@click.option("--workflow-run", "workflow_run_id", metavar="RUN_ID", help="report a workflow run")
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False),
    help="output file (default: <project>/reports/<run_id>.html)",
)
@click.option("--open", "open_browser", is_flag=True, help="open the report in the default browser")
@click.pass_context
def report(
    ctx: click.Context, run_id: str | None, workflow_run_id: str | None, out: str | None, open_browser: bool
) -> None:
    """Write the HTML report of job run RUN_ID or of a workflow run (default: the most recent run).

    A workflow run's page shows the graph with each node's state, a timeline of nodes, attempts and stages,
    and
    every job run; a job run's page shows its stages with metrics, quality results, quarantine counts,
    bookmarks before and after, and errors. The file is self-contained: it opens offline.
    """
    from etl_framework.config.project import Project
    from etl_framework.errors import UsageError
    from etl_framework.report import write_report

    if run_id and workflow_run_id:
        raise UsageError("give either RUN_ID or --workflow-run RUN_ID, not both")
    project = Project.discover(ctx.obj.get("project_dir"))
    path = write_report(
        project, run_id=run_id, workflow_run_id=workflow_run_id, out=out, env=ctx.obj.get("env", "local")
    )
    err(f"report written: {path}")
    click.echo(str(path))
    if open_browser:
        import webbrowser

        if not webbrowser.open(path.as_uri()):
            err(f"no browser found: open {path.as_uri()} yourself")
