"""`etl export airflow [WF.yaml ...] --env ENV -o DIR [--check]`: each workflow as an Airflow DAG file (SPEC §12).

What Airflow cannot express exactly is printed as a warning naming the trigger (and written into the DAG file's
docstring); `--strict` turns those warnings into an error. `--check` writes nothing and exits 1 when a DAG file
in DIR differs from what the YAML gives now (for CI)."""

from __future__ import annotations

from pathlib import Path

import click

from etl_framework.cli.common import err


def register(group: click.Group) -> None:
    @group.group("export")
    def export_group() -> None:
        """Export workflows to other orchestrators."""

    @export_group.command("airflow")
    @click.argument("workflows", nargs=-1, type=click.Path(path_type=Path))
    @click.option("--env", "env_opt", default=None, metavar="ENV",
                  help="environment config conf/<ENV>.yaml (default: the global --env); a cloud env gives Glue "
                       "operators, the local env `etl run` tasks")
    @click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("dags"),
                  show_default=True, help="folder of the DAG files (<workflow>.py)")
    @click.option("--airflow", "version", type=click.Choice(["3", "2.10"]), default="3", show_default=True,
                  help="Airflow version the DAG files are written for (MWAA runs both)")
    @click.option("--check", is_flag=True, help="write nothing; exit 1 when a DAG file in DIR is stale or missing")
    @click.option("--strict", is_flag=True, help="fail (exit 2) when the workflow uses something Airflow cannot "
                                                 "express exactly, instead of warning")
    @click.pass_context
    def airflow_cmd(ctx: click.Context, workflows: tuple[Path, ...], env_opt: str | None, out_dir: Path,
                    version: str, check: bool, strict: bool) -> None:
        """Write one Airflow DAG file per workflow (default: every workflow file in jobs/)."""
        from etl_framework.config.load import file_kind
        from etl_framework.config.loader import load_yaml
        from etl_framework.config.project import Project, project_for
        from etl_framework.errors import EtlError, UsageError
        from etl_framework.export.airflow import ExportError, export, stale

        obj = ctx.obj or {}
        env = env_opt or obj.get("env") or "local"
        for w in workflows:
            if not w.is_file():
                raise UsageError(f"workflow file {w} not found\n  what to do: pass a workflow YAML file, e.g. "
                                 "jobs/nightly_trips.yaml")
        project = project_for(workflows[0], obj.get("project_dir")) if workflows else \
            Project.discover(obj.get("project_dir"))
        files = list(workflows)
        if not files:
            for f in sorted(project.jobs_dir.glob("*.y*ml")):
                try:
                    if file_kind(load_yaml(f).data) == "workflow":
                        files.append(f)
                except Exception:  # noqa: BLE001, S112 - a broken neighbour file is `etl validate`'s business
                    continue
            if not files:
                raise UsageError(f"no workflow files in {project.jobs_dir}")
        results = export(files, project, env, out_dir, version)
        for r in results:
            for w in r.plan.warnings:
                err(f"warning: workflow {r.plan.dag_id}: {w}")
        if strict and any(r.plan.warnings for r in results):
            raise ExportError("--strict: the workflows above use what Airflow cannot express exactly (see the "
                              "warnings)")
        if check:
            bad = stale(results)
            if bad:
                raise EtlError(f"stale Airflow DAG file{'s' if len(bad) > 1 else ''}: {', '.join(bad)}\n  what to "
                               f"do: etl export airflow --env {env} -o {out_dir}"
                               + (f" --airflow {version}" if version != "3" else "") + " and commit the result")
            err(f"{len(results)} DAG file(s) in {out_dir} up to date")
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        for r in results:
            changed = not r.path.is_file() or r.path.read_text() != r.text
            if changed:
                r.path.write_text(r.text)
            err(f"{'wrote' if changed else 'unchanged'} {r.path} (DAG {r.plan.dag_id}, {len(r.plan.tasks)} tasks, "
                f"{'Glue' if r.plan.mode == 'glue' else 'local etl run'}, Airflow {version})")
