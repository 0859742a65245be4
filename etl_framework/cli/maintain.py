"""`etl maintain [JOB_FILE|DATABASE.TABLE ...]`: compact small files and remove what no reader still needs.

No argument: every job of the project (its target, quarantine and bad-records tables). A `.yaml` path names a job;
`database.table` a catalog table. Delta: OPTIMIZE (`--zorder`) + VACUUM; Iceberg: rewrite_data_files +
expire_snapshots; Parquet: compaction into a new manifest (engine/maintain.py, tables/*.maintain).
"""

from __future__ import annotations

from pathlib import Path

import click

from etl_framework.cli.common import err, print_json


def register(group: click.Group) -> None:
    @group.command("maintain")
    @click.argument("names", nargs=-1)
    @click.option("--zorder", default=None, metavar="COL[,COL...]", help="Z-order by these columns (Delta, Iceberg)")
    @click.option("--retain-hours", type=float, default=None,
                  help="keep files replaced less than this long ago (default and minimum 168; raised to cover the "
                       "oldest running job)")
    @click.option("--json", "as_json", is_flag=True, help="one result per table as JSON on stdout")
    @click.pass_context
    def maintain(ctx: click.Context, names: tuple[str, ...], zorder: str | None, retain_hours: float | None,
                 as_json: bool) -> None:
        """Compact and clean tables: jobs' tables (JOB.yaml, default every job) or catalog tables (DB.TABLE)."""
        from etl_framework.catalog import catalog_for
        from etl_framework.config.project import Project
        from etl_framework.engine.maintain import (
            catalog_target,
            check_retention,
            job_targets,
            maintain_tables,
        )
        from etl_framework.errors import UsageError

        check_retention(retain_hours)

        env = ctx.obj.get("env", "local")
        project = Project.discover(ctx.obj.get("project_dir"))
        targets = []
        items = list(names) or [str(p) for p in sorted(project.jobs_dir.glob("*.y*ml"))]
        for name in items:
            p = Path(name)
            if p.suffix in (".yaml", ".yml") or p.exists():
                if not p.exists():
                    raise UsageError(f"job file {name} does not exist")
                from etl_framework.config.load import file_kind
                from etl_framework.config.loader import load_yaml

                if file_kind(load_yaml(p).data) != "job":
                    if names:
                        raise UsageError(f"{name} is not a job file")
                    continue
                _, found = job_targets(p, project, env)
                targets += found
            elif "." in name:
                targets.append(catalog_target(catalog_for(project.env_config(env), project.root), name))
            else:
                raise UsageError(f"{name!r}: give a job file (jobs/NAME.yaml) or a catalog table DATABASE.TABLE")
        if not targets:
            err("nothing to maintain (no table written yet)")
            if as_json:
                print_json([])
            return
        cols = [c.strip() for c in zorder.split(",") if c.strip()] if zorder else []
        results = maintain_tables(targets, project=project, env=env, zorder=cols, retain_hours=retain_hours,
                                  log=err)
        for t, r in zip(targets, results, strict=True):
            err(f"{t.label}: {r.format} {r.path}: files {r.files_before} -> {r.files_after}"
                + (f", {r.rows:,} rows" if r.rows is not None else "")
                + (f", {r.files_deleted} file(s) deleted" if r.files_deleted else "")
                + (f", {r.snapshots_expired} snapshot(s) expired" if r.snapshots_expired else "")
                + f" ({'; '.join(r.operations)})")
        if as_json:
            print_json([{"table": t.label, **r.metrics()} for t, r in zip(targets, results, strict=True)])
