"""`etl query "SELECT ..."`: SQL over registered tables, answered by DuckDB in-process (no Spark start)."""

from __future__ import annotations

from typing import Any

import click

from etl_framework.cli.common import err, print_json


def _cell(v: Any) -> str:
    return "NULL" if v is None else str(v)


def print_table(columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    click.echo("  ".join("-" * w for w in widths))
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _jsonable(v: Any) -> Any:
    from decimal import Decimal

    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes):
        return v.hex()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def register(group: click.Group) -> None:
    @group.command("query")
    @click.argument("sql")
    @click.option("--json", "as_json", is_flag=True, help="a JSON array of row objects on stdout")
    @click.option("--limit", type=int, default=None, help="at most this many rows")
    @click.pass_context
    def query(ctx: click.Context, sql: str, as_json: bool, limit: int | None) -> None:
        """Run SQL over the catalog's tables (name them DATABASE.TABLE; DuckDB SQL dialect)."""
        from etl_framework.catalog.query import run_query
        from etl_framework.cli.catalog import env_catalog

        _, env_cfg, cat = env_catalog(ctx)
        res = run_query(cat, sql, aws=env_cfg.aws, limit=limit)
        if as_json:
            print_json([{k: _jsonable(v) for k, v in r.items()} for r in res.records()])
            return
        print_table(res.columns, res.rows)
        err(f"({len(res.rows)} row{'s' if len(res.rows) != 1 else ''})")
