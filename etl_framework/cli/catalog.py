"""`etl catalog list|show|ddl|crawls`: what the catalog (local SQLite or Glue) holds, and Athena DDL for a table."""

from __future__ import annotations

from typing import Any

import click

from etl_framework.cli.common import err, print_json


def env_catalog(ctx: click.Context) -> tuple[Any, Any, Any]:
    """(project, env config, catalog) for the command's --project-dir / --env."""
    from etl_framework.catalog import catalog_for
    from etl_framework.config.project import Project

    project = Project.discover(ctx.obj.get("project_dir"))
    env_cfg = project.env_config(ctx.obj.get("env", "local"))
    return project, env_cfg, catalog_for(env_cfg, project.root)


def table_json(table: Any, partitions: list[Any]) -> dict[str, Any]:
    return {
        "database": table.database,
        "name": table.name,
        "format": table.format,
        "location": table.location,
        "columns": [{"name": c.name, "type": c.type} for c in table.columns],
        "partition_keys": [{"name": k.name, "type": k.type} for k in table.partition_keys],
        "partitions": [{"values": p.spec(table.partition_keys), "location": p.location} for p in partitions],
        "classification": table.classification,
        "input_format": table.input_format,
        "output_format": table.output_format,
        "serde": table.serde,
        "serde_parameters": table.serde_parameters,
        "parameters": table.parameters,
        "table_type": table.table_type,
        "description": table.description,
        "create_time": table.create_time,
        "update_time": table.update_time,
    }


def register(group: click.Group) -> None:
    @group.group("catalog")
    def catalog() -> None:
        """Tables in the catalog (env config `catalog:` — local SQLite or the Glue Data Catalog)."""

    @catalog.command("list")
    @click.option("--database", "-d", help="only this database")
    @click.option("--json", "as_json", is_flag=True, help="JSON on stdout")
    @click.pass_context
    def list_cmd(ctx: click.Context, database: str | None, as_json: bool) -> None:
        """Databases and tables, with format, partition count and location."""
        _, _, cat = env_catalog(ctx)
        tables = cat.list_tables(database)
        rows = [{"table": t.full_name, "format": t.format, "columns": len(t.columns),
                 "partition_keys": [k.name for k in t.partition_keys],
                 "partitions": len(cat.get_partitions(t.database, t.name)) if t.partition_keys else 0,
                 "location": t.location} for t in tables]
        if as_json:
            print_json(rows)
            return
        if not rows:
            err(f"no tables in the {cat.backend} catalog" + (f" database {database}" if database else "")
                + " (crawl a folder with `etl crawl` or run a job with `register:`)")
            return
        w = max(len(r["table"]) for r in rows)
        for r in rows:
            keys = ",".join(r["partition_keys"]) or "-"
            click.echo(f"{r['table']:<{w}}  {r['format']:<7}  {r['columns']:>3} cols  partitions: {keys} "
                       f"({r['partitions']})  {r['location']}")

    @catalog.command("show")
    @click.argument("table")
    @click.option("--json", "as_json", is_flag=True, help="the table as JSON on stdout")
    @click.pass_context
    def show_cmd(ctx: click.Context, table: str, as_json: bool) -> None:
        """A table: columns, partition keys, location, format and partitions with their values."""
        from etl_framework.catalog.base import require_table

        _, _, cat = env_catalog(ctx)
        t = require_table(cat, table)
        parts = cat.get_partitions(t.database, t.name)
        if as_json:
            print_json(table_json(t, parts))
            return
        click.echo(f"table     {t.full_name}")
        click.echo(f"format    {t.format}   ({t.input_format}, SerDe {t.serde})")
        click.echo(f"location  {t.location}")
        if t.description:
            click.echo(f"about     {t.description}")
        click.echo("columns")
        for c in t.columns:
            click.echo(f"  {c.name:<30} {c.type}")
        if t.partition_keys:
            click.echo("partition keys")
            for k in t.partition_keys:
                click.echo(f"  {k.name:<30} {k.type}")
            click.echo(f"partitions ({len(parts)})")
            for p in parts:
                spec = ", ".join(f"{k}={v}" for k, v in p.spec(t.partition_keys).items())
                click.echo(f"  {spec}   {p.location}")
        click.echo("parameters  " + ", ".join(f"{k}={v}" for k, v in sorted(t.parameters.items())))

    @catalog.command("ddl")
    @click.argument("table")
    @click.option("--partitions/--no-partitions", default=False,
                  help="also ALTER TABLE ... ADD PARTITION for the catalog's partitions")
    @click.pass_context
    def ddl_cmd(ctx: click.Context, table: str, partitions: bool) -> None:
        """Athena DDL that creates the table (Delta tables as Athena Delta tables)."""
        from etl_framework.catalog.base import require_table
        from etl_framework.catalog.ddl import table_ddl

        _, _, cat = env_catalog(ctx)
        t = require_table(cat, table)
        parts = cat.get_partitions(t.database, t.name) if partitions else []
        click.echo(table_ddl(t, parts))

    @catalog.command("crawls")
    @click.argument("crawler", required=False)
    @click.option("--limit", default=20, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="JSON on stdout")
    @click.pass_context
    def crawls_cmd(ctx: click.Context, crawler: str | None, limit: int, as_json: bool) -> None:
        """Crawler runs (newest first): state, what they changed."""
        from etl_framework.state import open_crawler_store

        _, env_cfg, _ = env_catalog(ctx)
        store = open_crawler_store(env_cfg)
        try:
            runs = store.runs(crawler, limit)
        finally:
            store.close()
        if as_json:
            print_json(runs)
            return
        for r in runs:
            click.echo(f"{r['id']:>5}  {r['started']}  {r['crawler']:<24} {r['state']:<10} "
                       f"{r['database']}.{r['table_name']}  {r['message'].splitlines()[0] if r['message'] else ''}")
