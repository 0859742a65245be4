"""Athena DDL for a catalog table: what a user would run in Athena to get the same table.

Parquet/CSV/JSON tables: `CREATE EXTERNAL TABLE ... PARTITIONED BY ... STORED AS ... LOCATION ...`, plus
`ALTER TABLE ... ADD PARTITION` for given partitions. Delta tables follow Athena's Delta Lake syntax: no column
list (Athena reads the schema from the transaction log), `TBLPROPERTIES ('table_type'='DELTA')`.
"""

from __future__ import annotations

from etl_framework.catalog.base import Partition, Table


def q(name: str) -> str:
    return f"`{name}`"


def s(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def athena_location(location: str) -> str:
    """Athena wants s3://; s3a:// is Hadoop's spelling of the same place."""
    if location.startswith("s3a://"):
        return "s3://" + location[len("s3a://"):]
    return location


def create_table_ddl(t: Table) -> str:
    name = f"{q(t.database)}.{q(t.name)}"
    loc = athena_location(t.location)
    if t.table_format is not None:
        from etl_framework.tables import table_format

        own = table_format(t.table_format).create_ddl(t)
        if own is not None:
            return own
    lines = [f"CREATE EXTERNAL TABLE {name} ("]
    lines.append(",\n".join(f"  {q(c.name)} {c.type}" + (f" COMMENT {s(c.comment)}" if c.comment else "")
                            for c in t.columns))
    lines.append(")")
    if t.description:
        lines.append(f"COMMENT {s(t.description)}")
    if t.partition_keys:
        lines.append("PARTITIONED BY (" + ", ".join(f"{q(k.name)} {k.type}" for k in t.partition_keys) + ")")
    props: dict[str, str] = {"classification": t.classification}
    if t.format == "parquet":
        lines.append("STORED AS PARQUET")
    elif t.format == "csv":
        delim = t.serde_parameters.get("field.delim", ",")
        lines.append(f"ROW FORMAT DELIMITED FIELDS TERMINATED BY {s(delim)}")
        lines.append("STORED AS TEXTFILE")
        if "skip.header.line.count" in t.parameters:
            props["skip.header.line.count"] = t.parameters["skip.header.line.count"]
    else:
        lines.append(f"ROW FORMAT SERDE {s(t.serde or 'org.openx.data.jsonserde.JsonSerDe')}")
        lines.append("STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'")
        lines.append("OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'")
    lines.append(f"LOCATION {s(loc)}")
    lines.append("TBLPROPERTIES (" + ", ".join(f"{s(k)}={s(v)}" for k, v in props.items()) + ")")
    return "\n".join(lines)


def add_partitions_ddl(t: Table, partitions: list[Partition]) -> str | None:
    """`ALTER TABLE ... ADD IF NOT EXISTS PARTITION (...) LOCATION ...` for Hive-style tables (Delta tables
    need none: Athena reads partitions from the log)."""
    if t.format in ("delta", "iceberg") or not t.partition_keys or not partitions:
        return None
    items = []
    for p in partitions:
        spec = ", ".join(f"{q(k.name)} = {s(v)}" for k, v in zip(t.partition_keys, p.values, strict=False))
        items.append(f"  PARTITION ({spec}) LOCATION {s(athena_location(p.location))}")
    return f"ALTER TABLE {q(t.database)}.{q(t.name)} ADD IF NOT EXISTS\n" + "\n".join(items)


def table_ddl(t: Table, partitions: list[Partition] | None = None) -> str:
    """The statements, `;`-terminated, that recreate the table (and the given partitions) in Athena."""
    parts = [create_table_ddl(t) + ";"]
    alter = add_partitions_ddl(t, partitions or [])
    if alter:
        parts.append(alter + ";")
    return "\n\n".join(parts)
