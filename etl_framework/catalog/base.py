"""The Glue Data Catalog's model (databases, tables, partitions) and the `Catalog` interface both backends follow.

Tables are stored the way AWS Glue stores them (a storage descriptor with columns, location, input/output format
and SerDe; partition keys; parameters such as `classification` and, for Delta tables, `table_type=DELTA`), so that
what a job registers locally is what it would register in Glue, and Athena DDL can be derived from either.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from etl_framework.errors import EtlError, UsageError

FORMATS = ("csv", "json", "parquet", "delta", "iceberg")

PARQUET_IO = (
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
)
TEXT_IO = (
    "org.apache.hadoop.mapred.TextInputFormat",
    "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
)
CSV_SERDE = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"


class CatalogError(EtlError):
    """A catalog operation failed (exit 1)."""


class TableNotFound(UsageError):
    """A reference to a table the catalog does not hold (exit 2)."""

    def __init__(self, database: str, table: str, known: list[str] | None = None) -> None:
        hint = did_you_mean(f"{database}.{table}", known or [])
        super().__init__(
            f"table {database}.{table} is not in the catalog{hint}.\n"
            "  what to do: check the name (`etl catalog list` shows the tables), or crawl/register it first"
        )
        self.database, self.table = database, table


def did_you_mean(name: str, known: list[str]) -> str:
    """'; did you mean 'db.table'?' for the closest of `known` `database.table` names (difflib), else ''."""
    import difflib

    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def missing_table(catalog: Catalog, database: str, table: str) -> TableNotFound:
    """TableNotFound with the catalog's closest table name (a typo is the usual cause)."""
    try:
        known = [t.full_name for t in catalog.list_tables()]
    except Exception:  # noqa: BLE001 - the suggestion is a courtesy; the error stands without it
        known = []
    return TableNotFound(database, table, known)


@dataclass
class Column:
    name: str
    type: str
    comment: str | None = None


@dataclass
class Database:
    name: str
    description: str = ""
    location: str | None = None


@dataclass
class Partition:
    """One partition: its values in partition-key order (as strings, as Glue keeps them) and its folder."""

    values: list[str]
    location: str
    parameters: dict[str, str] = field(default_factory=dict)

    def spec(self, keys: list[Column]) -> dict[str, str]:
        return {k.name: v for k, v in zip(keys, self.values, strict=False)}


@dataclass
class Table:
    """A table as the Glue Data Catalog records it (`StorageDescriptor` flattened)."""

    database: str
    name: str
    columns: list[Column]
    location: str
    classification: str
    partition_keys: list[Column] = field(default_factory=list)
    input_format: str | None = None
    output_format: str | None = None
    serde: str | None = None
    serde_parameters: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    table_type: str = "EXTERNAL_TABLE"
    description: str = ""
    create_time: str | None = None
    update_time: str | None = None

    @property
    def full_name(self) -> str:
        return f"{self.database}.{self.name}"

    @property
    def format(self) -> str:
        """csv | json | parquet | delta: what a reader needs."""
        table_type = self.parameters.get("table_type", "").upper()
        if table_type in ("DELTA", "ICEBERG"):
            return table_type.lower()
        return self.classification

    @property
    def table_format(self) -> str | None:
        """The `etl_framework.tables` format that owns this table's commits (None for plain csv/json folders)."""
        return self.format if self.format in ("delta", "iceberg", "parquet") else None

    @property
    def is_delta(self) -> bool:
        return self.format == "delta"

    def column_types(self) -> dict[str, str]:
        return {c.name: c.type for c in [*self.columns, *self.partition_keys]}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Table:
        d = dict(d)
        d["columns"] = [Column(**c) for c in d.get("columns", [])]
        d["partition_keys"] = [Column(**c) for c in d.get("partition_keys", [])]
        return cls(**d)


def new_table(
    database: str,
    name: str,
    fmt: str,
    location: str,
    columns: list[Column],
    partition_keys: list[Column] | None = None,
    csv_delimiter: str = ",",
    csv_header: bool = True,
    description: str = "",
    extra_parameters: dict[str, str] | None = None,
) -> Table:
    """A table with the input/output format, SerDe and parameters Glue's crawlers and Athena give that format."""
    params: dict[str, str] = {"classification": fmt, "EXTERNAL": "TRUE"}
    serde_params: dict[str, str] = {}
    if fmt in ("parquet", "delta", "iceberg"):
        from etl_framework.tables import table_format

        in_fmt, out_fmt, serde = PARQUET_IO
        serde_params["serialization.format"] = "1"
        own, own_serde = table_format(fmt).catalog_parameters(location)
        params.update(own)
        serde_params.update(own_serde)
    elif fmt == "csv":
        in_fmt, out_fmt = TEXT_IO
        serde = CSV_SERDE
        serde_params["field.delim"] = csv_delimiter
        params["delimiter"] = csv_delimiter
        if csv_header:
            params["skip.header.line.count"] = "1"
    elif fmt == "json":
        in_fmt, out_fmt = TEXT_IO
        serde = JSON_SERDE
        serde_params["paths"] = ",".join(c.name for c in columns)
    else:
        raise CatalogError(f"unknown table format '{fmt}' (one of {', '.join(FORMATS)})")
    params.update(extra_parameters or {})
    return Table(
        database=database, name=name, columns=columns, location=location, classification=fmt,
        partition_keys=list(partition_keys or []), input_format=in_fmt, output_format=out_fmt, serde=serde,
        serde_parameters=serde_params, parameters=params, description=description,
    )


_NAME_RE = re.compile(r"[^a-z0-9_]+")


def glue_name(text: str) -> str:
    """A folder name turned into a table name as Glue's crawlers do: lower case, other characters as `_`."""
    name = _NAME_RE.sub("_", text.strip().lower()).strip("_")
    return name or "table"


def split_table_name(ref: str) -> tuple[str, str]:
    parts = ref.split(".")
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"'{ref}' is not a table name: write it as DATABASE.TABLE")
    return parts[0], parts[1]


class Catalog(Protocol):
    """What every backend offers; names and semantics follow the Glue API (create/update/get, partitions)."""

    backend: str

    def list_databases(self) -> list[Database]: ...

    def get_database(self, name: str) -> Database | None: ...

    def ensure_database(self, name: str, description: str = "") -> bool:
        """Create the database if missing; True when it was created."""
        ...

    def list_tables(self, database: str | None = None) -> list[Table]: ...

    def get_table(self, database: str, name: str) -> Table | None: ...

    def create_table(self, table: Table) -> None: ...

    def update_table(self, table: Table) -> None: ...

    def delete_table(self, database: str, name: str) -> None: ...

    def get_partitions(self, database: str, table: str) -> list[Partition]: ...

    def add_partitions(self, database: str, table: str, partitions: list[Partition]) -> int:
        """Add partitions that are not there yet (by values); returns how many were added."""
        ...


def require_table(catalog: Catalog, ref: str) -> Table:
    db, name = split_table_name(ref)
    table = catalog.get_table(db, name)
    if table is None:
        raise missing_table(catalog, db, name)
    return table


def put_table(catalog: Catalog, table: Table) -> str:
    """Create or update; returns 'created' or 'updated'."""
    catalog.ensure_database(table.database)
    if catalog.get_table(table.database, table.name) is None:
        catalog.create_table(table)
        return "created"
    catalog.update_table(table)
    return "updated"
