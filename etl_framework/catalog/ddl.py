"""Athena DDL for a catalog table: what a user would run in Athena to get the same table.

Parquet/CSV/JSON tables: `CREATE EXTERNAL TABLE ... PARTITIONED BY ... STORED AS ... LOCATION ...`, plus
`ALTER TABLE ... ADD PARTITION` for given partitions. Delta tables follow Athena's Delta Lake syntax: no column
list (Athena reads the schema from the transaction log), `TBLPROPERTIES ('table_type'='DELTA')`.
"""

from __future__ import annotations

from etl_framework.catalog.base import Partition, Table


def _q(name: str) -> str:
    return f"`{name}`"


def _s(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def athena_location(location: str) -> str:
    """Athena wants s3://; s3a:// is Hadoop's spelling of the same place."""
    if location.startswith("s3a://"):
        return "s3://" + location[len("s3a://"):]
    return location


def create_table_ddl(t: Table) -> str:
    name = f"{_q(t.database)}.{_q(t.name)}"
    loc = athena_location(t.location)
    if t.is_delta:
        return f"CREATE EXTERNAL TABLE {name}\nLOCATION {_s(loc)}\nTBLPROPERTIES ('table_type'='DELTA')"
    lines = [f"CREATE EXTERNAL TABLE {name} ("]
    lines.append(",\n".join(f"  {_q(c.name)} {c.type}" + (f" COMMENT {_s(c.comment)}" if c.comment else "")
                            for c in t.columns))
    lines.append(")")
    if t.description:
        lines.append(f"COMMENT {_s(t.description)}")
    if t.partition_keys:
        lines.append("PARTITIONED BY (" + ", ".join(f"{_q(k.name)} {k.type}" for k in t.partition_keys) + ")")
    props: dict[str, str] = {"classification": t.classification}
    if t.format == "parquet":
        lines.append("STORED AS PARQUET")
    elif t.format == "csv":
        delim = t.serde_parameters.get("field.delim", ",")
        lines.append(f"ROW FORMAT DELIMITED FIELDS TERMINATED BY {_s(delim)}")
        lines.append("STORED AS TEXTFILE")
        if "skip.header.line.count" in t.parameters:
            props["skip.header.line.count"] = t.parameters["skip.header.line.count"]
    else:
        lines.append(f"ROW FORMAT SERDE {_s(t.serde or 'org.openx.data.jsonserde.JsonSerDe')}")
        lines.append("STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'")
        lines.append("OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'")
    lines.append(f"LOCATION {_s(loc)}")
    lines.append("TBLPROPERTIES (" + ", ".join(f"{_s(k)}={_s(v)}" for k, v in props.items()) + ")")
    return "\n".join(lines)


def add_partitions_ddl(t: Table, partitions: list[Partition]) -> str | None:
    """`ALTER TABLE ... ADD IF NOT EXISTS PARTITION (...) LOCATION ...` for Hive-style tables (Delta tables
    need none: Athena reads partitions from the log)."""
    if t.is_delta or not t.partition_keys or not partitions:
        return None
    items = []
    for p in partitions:
        spec = ", ".join(f"{_q(k.name)} = {_s(v)}" for k, v in zip(t.partition_keys, p.values, strict=False))
        items.append(f"  PARTITION ({spec}) LOCATION {_s(athena_location(p.location))}")
    return f"ALTER TABLE {_q(t.database)}.{_q(t.name)} ADD IF NOT EXISTS\n" + "\n".join(items)


def table_ddl(t: Table, partitions: list[Partition] | None = None) -> str:
    """The statements, `;`-terminated, that recreate the table (and the given partitions) in Athena."""
    parts = [create_table_ddl(t) + ";"]
    alter = add_partitions_ddl(t, partitions or [])
    if alter:
        parts.append(alter + ";")
    return "\n\n".join(parts)
