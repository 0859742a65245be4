"""`etl crawl [FILE] [--name NAME]`: run the crawlers of a job file (its `crawl:` entries) or of a workflow file
(its `crawlers:`), one of them by name, or an ad-hoc crawler over `--path`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from etl_framework.cli.common import err, print_json
from etl_framework.errors import EtlError, UsageError


def _crawlers_of(path: Path, project: Any, env: str) -> list[dict[str, Any]]:
    """The crawlers a job or workflow file defines, as run_crawler arguments."""
    from etl_framework.config.load import file_kind, load_job, load_workflow
    from etl_framework.config.loader import load_yaml
    from etl_framework.stages.crawl import crawler_name

    kind = file_kind(load_yaml(path).data)
    out: list[dict[str, Any]] = []
    if kind == "workflow":
        wf = load_workflow(path, project, env)
        for name, c in wf.config.crawlers.items():
            out.append({"name": name, "path": c.path, "database": c.database, "table": c.table,
                        "schema_change": c.schema_change})
    elif kind == "job":
        job = load_job(path, project, env).config
        for spec in job.crawl:
            src = job.sources.get(spec.source) if spec.source else None
            p = src.path if src is not None else spec.path
            if not p:
                raise UsageError(f"crawl entry of job {job.job} names source '{spec.source}', which has no path")
            out.append({"name": crawler_name(job.job, spec), "path": p, "database": spec.database,
                        "table": spec.table, "schema_change": spec.schema_change})
    else:
        raise UsageError(f"{path} is neither a job file (job: NAME) nor a workflow file (workflow: NAME)")
    return out


def register(group: click.Group) -> None:
    @group.command("crawl")
    @click.argument("file", required=False, type=click.Path(dir_okay=False))
    @click.option("--name", "-n", help="only the crawler with this name (without FILE: searched in jobs/)")
    @click.option("--path", "crawl_path", help="ad hoc: crawl this folder (needs --database)")
    @click.option("--database", help="ad hoc: database of the table")
    @click.option("--table", help="ad hoc: table name (default: the folder's name, as Glue names it)")
    @click.option("--schema-change", type=click.Choice(["log", "update", "fail"]), default="log",
                  show_default=True, help="ad hoc: what a schema change does")
    @click.option("--json", "as_json", is_flag=True, help="crawler run results as JSON on stdout")
    @click.pass_context
    def crawl(ctx: click.Context, file: str | None, name: str | None, crawl_path: str | None,
              database: str | None, table: str | None, schema_change: str, as_json: bool) -> None:
        """Run crawlers (Glue crawler semantics): discover schema and partitions into the catalog."""
        from etl_framework.catalog.crawler import run_crawler
        from etl_framework.cli.catalog import env_catalog

        project, env_cfg, cat = env_catalog(ctx)
        env = ctx.obj.get("env", "local")
        specs: list[dict[str, Any]] = []
        if crawl_path:
            if file or not database:
                raise UsageError("ad-hoc crawl: give --path and --database (and no FILE)")
            specs = [{"name": name or f"adhoc.{database}.{table or Path(crawl_path.rstrip('/')).name}",
                      "path": crawl_path, "database": database, "table": table, "schema_change": schema_change}]
        elif file:
            p = Path(file)
            if not p.is_file():
                raise UsageError(f"file {file} does not exist")
            specs = _crawlers_of(p, project, env)
        elif name:
            for f in sorted(project.jobs_dir.glob("*.y*ml")):
                try:
                    specs += [s for s in _crawlers_of(f, project, env) if s["name"] == name]
                except Exception:  # noqa: S112, BLE001 - a broken neighbour file does not hide the crawler
                    continue
                if specs:
                    break
            if not specs:
                raise UsageError(f"no crawler named {name!r} in the workflow and job files of {project.jobs_dir}")
        else:
            raise UsageError("give a job or workflow FILE, --name NAME, or --path PATH --database DB")
        if name and file:
            known = [s["name"] for s in specs]
            specs = [s for s in specs if s["name"] == name]
            if not specs:
                raise UsageError(f"{file} has no crawler named {name!r} (crawlers: {', '.join(known) or 'none'})")
        if not specs:
            raise UsageError(f"{file} defines no crawlers")
        results = []
        for s in specs:
            res = run_crawler(cat, env_cfg, s["name"], s["path"], s["database"], s["table"],
                              s["schema_change"], aws=env_cfg.aws, progress=err)
            results.append(res)
            if not as_json:
                for c in res.changes:
                    err("  " + ", ".join(f"{k}={v}" for k, v in c.items() if k != "values"))
        if as_json:
            print_json([r.to_dict() for r in results])
        bad = [r for r in results if r.state != "SUCCEEDED"]
        if bad:
            raise EtlError("; ".join(f"crawler {r.crawler} {r.state}: {r.message}" for r in bad))
