"""`etl query`: SQL over the tables registered in the catalog, answered by DuckDB (in-process, no JVM).

Each `database.table` the query names becomes a DuckDB view `database.table` over the table's files: Parquet via
`read_parquet` with Hive partitioning (only the partitions the catalog holds, as Athena reads them), CSV via
`read_csv`, JSON via `read_json_auto`, Delta, Iceberg and the framework's Parquet tables through their table format (`etl_framework.tables`: delta-rs,
pyiceberg at the catalog's `metadata_location`, the Parquet commit manifest), registered as Arrow datasets or file
lists: only committed files are read, and DuckDB's own delta/iceberg extensions would need a download). A count over a registered table answers in well under a second instead of the ~10 s a Spark start takes.

Catalog metadata is data, not code (SPEC §13): every column type must parse as a Glue/Hive type (`types.parse_type`)
and reaches DuckDB rebuilt from its parsed tree; names are quoted identifiers, paths and options string literals.
The user's SQL must be exactly one SELECT (checked by DuckDB's own parser as well), and it runs after the views
exist with file access limited to the tables' own files and the configuration locked: no `COPY ... TO`, no
`ATTACH`, no extension installs, no writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etl_framework.catalog import types as ty
from etl_framework.catalog.base import Catalog, Table, missing_table
from etl_framework.errors import EtlError, UsageError


class QueryError(UsageError):
    """A query that does not parse or does not run (exit 2)."""


class HostileMetadata(UsageError):
    """A catalog entry whose metadata is not what Glue allows (exit 2): it is never pasted into SQL."""


def checked_columns(t: Table) -> list[tuple[str, ty.T]]:
    """(name, parsed type) of every column and partition key; a type that is not a Glue/Hive type raises
    HostileMetadata naming the table and the column."""
    out: list[tuple[str, ty.T]] = []
    for c in [*t.columns, *t.partition_keys]:
        try:
            out.append((c.name, ty.parse_type(c.type)))
        except ty.TypeSyntaxError as e:
            shown = c.type if len(c.type) <= 80 else c.type[:77] + "..."
            raise HostileMetadata(
                f"table {t.full_name}: column {c.name!r} has type {shown!r}, which is not a Glue/Hive type ({e}); "
                "nothing was run\n  what to do: fix the column's type in the catalog (`etl catalog show "
                f"{t.full_name}` shows it; re-run the crawler or the job that registers it)") from None
    return out


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


def referenced_tables(sql: str) -> list[tuple[str, str]]:
    """The `database.table` names a query reads (CTE names excluded); errors for SQL that does not parse."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError

    try:
        trees = sqlglot.parse(sql, read="duckdb")
    except ParseError as e:
        err = e.errors[0] if e.errors else {}
        where = f" at line {err.get('line')}, column {err.get('col')}" if err.get("line") else ""
        raise QueryError(f"the query does not parse{where}: {err.get('description', str(e))}\n  what to do: fix "
                         "the SQL (DuckDB dialect; name tables as database.table)") from e
    trees = [t for t in trees if t is not None]
    if len(trees) != 1 or not isinstance(trees[0], exp.Query):
        raise QueryError("`etl query` takes exactly one SELECT query (e.g. SELECT count(*) FROM db.table)")
    tree = trees[0]
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    out: list[tuple[str, str]] = []
    bare: list[str] = []
    for t in tree.find_all(exp.Table):
        if not t.name:
            continue  # a table function such as read_parquet(...)
        if not t.db:
            if t.name not in ctes:
                bare.append(t.name)
            continue
        if (t.db, t.name) not in out:
            out.append((t.db, t.name))
    if bare:
        raise QueryError(f"table {bare[0]} needs its database: write it as DATABASE.{bare[0]} "
                         "(`etl catalog list` shows the tables)")
    return out


def _only_one_select(con: Any, sql: str) -> None:
    """DuckDB's own parser agrees that `sql` is exactly one SELECT (sqlglot's reading is not the one that runs)."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(f"the query does not parse: {str(e).splitlines()[0]}") from e
    kinds = [s.type for s in statements]
    if kinds != [duckdb.StatementType.SELECT]:
        found = ", ".join(k.name for k in kinds) or "nothing"
        raise QueryError(f"`etl query` runs exactly one SELECT statement; this is {found}\n  what to do: write "
                         "one read-only query (e.g. SELECT count(*) FROM db.table); COPY, ATTACH, SET and writes are "
                         "not run")


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _local(location: str) -> str:
    return location.removeprefix("file://")


def _view_sql(con: Any, t: Table, catalog: Catalog, aws: Any, n: int, allowed: list[str]) -> str:
    """The SELECT a view over table `t` is defined by (registering Arrow datasets on `con` when needed); the
    local files it reads are added to `allowed`."""
    from etl_framework.tables import Storage, table_format

    storage = Storage.from_aws(aws)
    committed: list[str] | None = None
    if t.format in ("delta", "iceberg"):
        name = f"__etl_table_{n}"
        con.register(name, table_format(t.format).arrow_dataset(
            t.location, storage, metadata_location=t.parameters.get("metadata_location")))
        return f"SELECT * FROM {_ident(name)}"
    if t.format == "parquet":  # a table this framework wrote: its manifest's files, never a stopped write's
        from etl_framework.tables.parquet import ParquetFormat

        committed = ParquetFormat().committed_paths(t.location, storage)
        if committed is not None and t.location.startswith(("s3://", "s3a://")):
            name = f"__etl_table_{n}"
            con.register(name, table_format("parquet").arrow_dataset(t.location, storage))
            return f"SELECT * FROM {_ident(name)}"
    if t.location.startswith(("s3://", "s3a://")):
        import pyarrow.dataset as ds

        from etl_framework.catalog.crawler import open_fs

        fs, root, _ = open_fs(t.location, aws)
        name = f"__etl_ds_{n}"
        fmt = {"parquet": "parquet", "csv": "csv", "json": "json"}[t.format]
        con.register(name, ds.dataset(root, filesystem=fs, format=fmt, partitioning="hive",
                                      exclude_invalid_files=True))
        return f"SELECT * FROM {_ident(name)}"
    location = _local(t.location).rstrip("/")
    if t.partition_keys:
        parts = catalog.get_partitions(t.database, t.name)
        dirs = [_local(p.location).rstrip("/") for p in parts]
    else:
        dirs = [location]
    ext = {"parquet": "*.parquet", "csv": "*", "json": "*"}[t.format]
    import glob
    import os

    files = sorted(_local(f) for f in committed) if committed is not None else sorted(
        f for d in dirs for f in glob.glob(os.path.join(glob.escape(d), "**", ext), recursive=True)
        if os.path.isfile(f) and not any(p.startswith(("_", ".")) for p in os.path.relpath(f, location).split(os.sep))
    )
    types = dict(checked_columns(t))
    if not files:  # a registered table with no data yet: an empty, typed view
        cols = ", ".join(f"CAST(NULL AS {ty.duckdb_sql_type(typ)}) AS {_ident(c)}" for c, typ in types.items())
        return f"SELECT {cols} WHERE false"
    allowed.extend(files)
    flist = "[" + ", ".join(_sql_str(f) for f in files) + "]"
    hive = "true" if t.partition_keys else "false"
    hive_types = ""
    if t.partition_keys:
        hive_types = ", hive_types = {" + ", ".join(
            f"{_sql_str(k.name)}: {_sql_str(ty.duckdb_sql_type(types[k.name]))}" for k in t.partition_keys) + "}"
    if t.format == "parquet":
        return f"SELECT * FROM read_parquet({flist}, hive_partitioning = {hive}, union_by_name = true{hive_types})"
    if t.format == "csv":
        # As Athena's LazySimpleSerDe: a value that does not parse as its column's type is NULL, a short row is
        # padded with NULLs; nothing fails the whole query.
        delim = t.serde_parameters.get("field.delim", ",")
        header = "true" if t.parameters.get("skip.header.line.count") == "1" else "false"
        cols = "{" + ", ".join(f"{_sql_str(c.name)}: 'VARCHAR'" for c in t.columns) + "}"
        select = ", ".join(
            [f"TRY_CAST({_ident(c.name)} AS {ty.duckdb_sql_type(types[c.name])}) AS {_ident(c.name)}"
             for c in t.columns]
            + [_ident(k.name) for k in t.partition_keys])
        return (f"SELECT {select} FROM read_csv({flist}, header = {header}, delim = {_sql_str(delim)}, "
                f"columns = {cols}, auto_detect = false, quote = '\"', escape = '\"', strict_mode = false, "
                f"null_padding = true, hive_partitioning = {hive}{hive_types})")
    return f"SELECT * FROM read_json_auto({flist}, hive_partitioning = {hive}{hive_types})"


def run_query(catalog: Catalog, sql: str, aws: Any = None, limit: int | None = None) -> QueryResult:
    """Run one SELECT over catalog tables. Unknown tables and SQL errors raise QueryError/TableNotFound (exit 2)."""
    import duckdb

    refs = referenced_tables(sql)
    tables = []
    for db, name in refs:
        t = catalog.get_table(db, name)
        if t is None:
            raise missing_table(catalog, db, name)
        checked_columns(t)  # before anything runs
        tables.append(t)
    con = duckdb.connect(":memory:")
    try:
        _only_one_select(con, sql)
        # DuckDB would push the CSV views' TRY_CASTs into the reader as strict casts (which then fail on a bad
        # value): keep them as written, so that bad values are NULL as in Athena.
        con.execute("SET disabled_optimizers = 'type_pushdown'")
        allowed: list[str] = []
        for n, t in enumerate(tables):
            try:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(t.database)}")
                view = _view_sql(con, t, catalog, aws, n, allowed)
                con.execute(f"CREATE VIEW {_ident(t.database)}.{_ident(t.name)} AS {view}")
            except HostileMetadata:
                raise
            except (duckdb.Error, OSError) as e:
                raise EtlError(f"cannot read table {t.full_name} at {t.location}: {e}\n  what to do: check that "
                               "its files are there (`etl catalog show` gives the location)") from e
            except Exception as e:
                raise EtlError(f"cannot read table {t.full_name} at {t.location}: {e}") from e
        # the user's SELECT reads the views' files and nothing else, and cannot change that
        con.execute("SET allowed_paths = [" + ", ".join(_sql_str(f) for f in allowed) + "]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            cur = con.execute(sql)
            cols = [d[0] for d in cur.description or []]
            rows = cur.fetchmany(limit) if limit else cur.fetchall()
        except duckdb.ParserException as e:
            raise QueryError(f"the query does not parse: {str(e).splitlines()[0]}") from e
        except duckdb.CatalogException as e:
            raise QueryError(f"{str(e).splitlines()[0]}\n  what to do: check table and column names "
                             "(`etl catalog show DB.TABLE` lists the columns)") from e
        except duckdb.Error as e:
            raise QueryError(f"the query failed: {str(e).splitlines()[0]}") from e
        return QueryResult(cols, rows)
    finally:
        con.close()
