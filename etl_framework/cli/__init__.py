"""The `etl` command. Each command family lives in its own module exposing `register(group)`; nothing heavy is
imported here, so `etl validate` answers without loading Spark or Great Expectations."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from etl_framework.cli.common import run_cli

COMMAND_MODULES = (
    "validate", "schema", "plan", "init", "run", "runs", "resume", "bookmarks", "crawl", "catalog", "query",
    "workflow", "scheduler", "deploy", "export", "report", "doctor", "stop", "maintain", "preview", "iam",
    "daemon",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--project-dir", type=click.Path(file_okay=False), envvar="ETL_PROJECT_DIR",
              help="project directory (default: nearest parent holding conf/)")
@click.option("--env", "env_name", default="local", envvar="ETL_ENV", show_default=True,
              help="environment config conf/<env>.yaml")
@click.pass_context
def cli(ctx: click.Context, project_dir: str | None, env_name: str) -> None:
    """etl_framework: YAML-defined Spark ETL jobs and Glue-semantics workflows, locally and on AWS Glue."""
    ctx.ensure_object(dict)
    ctx.obj["project_dir"] = project_dir
    ctx.obj["env"] = env_name


for _name in COMMAND_MODULES:
    _mod = f"etl_framework.cli.{_name}"
    if importlib.util.find_spec(_mod) is not None:
        importlib.import_module(_mod).register(cli)


def main(argv: list[str] | None = None) -> None:
    from etl_framework.runtime.daemon import maybe_delegate

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = maybe_delegate(args)  # a project's warm session (`etl daemon start`) runs it, when there is one
    except KeyboardInterrupt:  # Ctrl-C before the daemon took the command: nothing ran
        sys.exit(130)
    sys.exit(run_cli(cli, argv) if code is None else code)
