"""The register stage (SPEC §5): create or update the target's table in the catalog (columns, partition keys,
location, format), add the partitions the run wrote, and keep the Athena DDL with the run.

The table is registered the way Glue's crawlers and Athena record it (see catalog/base.py `new_table`): a Delta
target becomes an Athena Delta table (`table_type=DELTA`), a Parquet target a Hive-style external table whose
partitions are added one by one, so that Athena sees only committed partitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from etl_framework.catalog.base import Catalog, Column, Partition, Table, new_table
from etl_framework.catalog.ddl import table_ddl
from etl_framework.errors import JobFailed
from etl_framework.tables import FORMATS, storage_for, table_format

# Hive's FileUtils.escapePathName: the characters Spark percent-encodes in partition folder names.
_HIVE_ESCAPE = set('"#%\'*/:=?\\\x7f{[]^')


def hive_escape(value: str) -> str:
    return "".join(f"%{ord(ch):02X}" if ch in _HIVE_ESCAPE or ord(ch) < 32 else ch for ch in value)


def glue_location(path: str) -> str:
    """Glue and Athena name S3 locations s3://; Hadoop's s3a:// is the same place."""
    if path.startswith("s3a://"):
        path = "s3://" + path[len("s3a://"):]
    return path.removeprefix("file://").rstrip("/") or "/"


def partition_value_text(value: Any) -> str:
    """A partition value as Spark writes it into the folder name (and Glue keeps it): dates ISO, None as Hive's
    default partition."""
    if value is None:
        return "__HIVE_DEFAULT_PARTITION__"
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat") and not hasattr(value, "hour"):
        return value.isoformat()
    if hasattr(value, "hour"):  # datetime: Spark's partition folder form
        return value.strftime("%Y-%m-%d %H:%M:%S") + (
            f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "")
    return str(value)


@dataclass
class RegisterResult:
    table: Table
    action: str  # created | updated | unchanged
    partitions_added: list[list[str]] = field(default_factory=list)
    ddl: str = ""

    def metrics(self) -> dict[str, Any]:
        return {
            "table": self.table.full_name, "action": self.action, "format": self.table.format,
            "location": self.table.location, "partitions_added": len(self.partitions_added), "ddl": self.ddl,
        }


def spark_to_hive(dt: Any) -> str:
    """A Spark DataType as the Hive/Glue type string."""
    name = dt.simpleString()
    return name.replace("timestamp_ntz", "timestamp").replace("void", "string")


def register_target(
    catalog: Catalog,
    database: str,
    table_name: str,
    fmt: str,
    location: str,
    fields: list[tuple[str, str]],
    partition_by: list[str],
    partition_values: list[dict[str, Any]] | None = None,
    description: str = "",
    extra_parameters: dict[str, str] | None = None,
) -> RegisterResult:
    """Create or update `database.table_name` for a written target and add the given partitions (values by
    partition column). Returns what changed and the Athena DDL."""
    loc = glue_location(location)
    types = dict(fields)
    columns = [Column(n, t) for n, t in fields if n not in partition_by]
    keys = [Column(k, types.get(k, "string")) for k in partition_by]
    wanted = new_table(database, table_name, fmt, loc, columns, keys, description=description,
                       extra_parameters=extra_parameters)
    if fmt in FORMATS and not FORMATS[fmt].catalog_partitions:
        partition_values = None  # the table's own metadata lists its partitions (Iceberg)
    catalog.ensure_database(database)
    existing = catalog.get_table(database, table_name)
    if existing is None:
        catalog.create_table(wanted)
        action = "created"
    elif _same(existing, wanted):
        wanted = existing
        action = "unchanged"
    else:
        wanted.description = wanted.description or existing.description
        catalog.update_table(wanted)
        action = "updated"
    added: list[list[str]] = []
    parts: list[Partition] = []
    if keys and partition_values:
        have = {tuple(p.values) for p in catalog.get_partitions(database, table_name)}
        seen: set[tuple[str, ...]] = set()
        for pv in partition_values:
            vals = tuple(partition_value_text(pv.get(k.name)) for k in keys)
            if vals in have or vals in seen:
                continue
            seen.add(vals)
            folder = "/".join(f"{hive_escape(k.name)}={hive_escape(v)}" for k, v in zip(keys, vals, strict=True))
            parts.append(Partition(list(vals), f"{loc.rstrip('/')}/{folder}/"))
        if parts:
            catalog.add_partitions(database, table_name, parts)
            added = sorted(p.values for p in parts)
    return RegisterResult(wanted, action, added, table_ddl(wanted, parts))


def _same(a: Table, b: Table) -> bool:
    keys = ("columns", "partition_keys", "location", "classification", "input_format", "output_format", "serde",
            "serde_parameters")
    da, db = a.to_dict(), b.to_dict()
    if any(da[k] != db[k] for k in keys):
        return False
    return all(a.parameters.get(k) == v for k, v in b.parameters.items())


# ------------------------------------------------------------------------------------------------ the stage


def _parse_partition_path(text: str, partition_by: list[str]) -> dict[str, Any] | None:
    """'k=v/k2=v2' (a partition folder, as the write stage reports it) as {k: v}."""
    from urllib.parse import unquote

    out: dict[str, Any] = {}
    for seg in text.strip("/").split("/"):
        key, eq, value = seg.partition("=")
        if not eq:
            return None
        out[unquote(key)] = unquote(value)
    return out if list(out) == partition_by else None


def _written_partitions(state: Any, partition_by: list[str]) -> list[dict[str, Any]] | None:
    """The partitions this run wrote: from the write stage's result when it lists them all, else the distinct
    partition values of the data that was written."""
    if not partition_by:
        return None
    wr = getattr(state, "write_result", None)
    if isinstance(wr, dict) and isinstance(wr.get("partitions"), list):
        listed = wr["partitions"]
        if int(wr.get("partitions_touched", len(listed))) <= len(listed):
            parsed = [_parse_partition_path(str(p), partition_by) for p in listed]
            if all(p is not None for p in parsed):
                return [p for p in parsed if p is not None]
    df = getattr(state, "df", None)
    if df is None:
        return None
    return [r.asDict() for r in df.select(*partition_by).distinct().collect()]


def _storage(state: Any) -> Any:
    """The run's table Storage (a job run has one; other callers build it from their env config)."""
    return getattr(state, "storage", None) or storage_for(getattr(state, "env_config", None),
                                                          getattr(state, "project_root", None))


def _target_fields(state: Any, fmt: str, path: str) -> list[tuple[str, str]]:
    spark = getattr(state, "spark", None)
    schema = None
    if spark is not None:
        try:
            storage = _storage(state)
            schema = table_format(fmt).spark_read(spark, path, storage=storage).schema
        except Exception:  # noqa: BLE001 - fall back to the written DataFrame's schema
            schema = None
    if schema is None and getattr(state, "df", None) is not None:
        schema = state.df.schema
    if schema is None:
        raise RuntimeError(f"cannot read the schema of the target at {path}")
    return [(f.name, spark_to_hive(f.dataType)) for f in schema.fields]


SIDE_TABLES = (("_quarantine", "quarantined rows (quality rules with on_fail: quarantine)"),
               ("_bad_records", "malformed input rows (bad_records: quarantine)"))


def register_side_tables(state: Any, catalog: Catalog, storage: Any) -> list[RegisterResult]:
    """Register the job's quarantine and bad-records tables beside its target (`<table>_quarantine`,
    `<table>_bad_records`), once they exist, so that `etl query` and Athena read them by name. A problem here is
    logged, never a failed run: the target is registered and the data is written."""
    cfg = state.config if hasattr(state, "config") else state.loaded.config
    reg = cfg.register
    written = cfg.tables_written()
    out: list[RegisterResult] = []
    for (suffix, what), path in zip(SIDE_TABLES, (cfg.quarantine_location(), cfg.bad_records_location()),
                                    strict=True):
        fmt = written.get(path)
        if fmt is None or path == cfg.target.path:
            continue
        try:
            if not table_format(fmt).detect(path.rstrip("/"), storage):
                continue
            schema = table_format(fmt).spark_read(state.spark, path, storage=storage).schema
            fields = [(f.name, spark_to_hive(f.dataType)) for f in schema.fields]
            out.append(register_target(catalog, reg.database, reg.table + suffix, fmt, path, fields, [],
                                       description=f"{what} of {reg.database}.{reg.table}"))
        except Exception as e:  # noqa: BLE001 - the target is registered; say what is missing and go on
            log = getattr(state, "log", None)
            if hasattr(log, "warning"):
                log.warning(f"could not register {reg.database}.{reg.table}{suffix} ({path}): {e}", "register")
    return out


def run_register(state: Any) -> RegisterResult | None:
    """Register the job's target (its `register:` block); None when the job registers nothing."""
    from etl_framework.catalog import catalog_for
    from etl_framework.catalog.base import CatalogError

    cfg = state.config if hasattr(state, "config") else state.loaded.config
    reg = cfg.register
    if reg is None:
        return None
    target = cfg.target
    try:
        fields = _target_fields(state, target.format, target.path)
        catalog = getattr(state, "catalog", None) or catalog_for(state.env_config, getattr(state, "project_root", None))
        storage = _storage(state)
        extra = table_format(target.format).current_parameters(target.path, storage)
        result = register_target(
            catalog, reg.database, reg.table, target.format, target.path, fields, list(target.partition_by),
            None if not FORMATS[target.format].catalog_partitions else
            _written_partitions(state, list(target.partition_by)), reg.description or cfg.description, extra,
        )
    except CatalogError as e:
        raise JobFailed(cfg.job, "register", str(e), "check the catalog settings (catalog: in the env config); "
                        "the data is written, `etl resume RUN_ID` re-runs only the register stage") from e
    except RuntimeError as e:
        raise JobFailed(cfg.job, "register", str(e), "check that the write stage wrote the target") from e
    side = register_side_tables(state, catalog, storage)
    metrics = getattr(state, "metrics", None)
    if isinstance(metrics, dict):
        metrics.setdefault("register", {}).update(result.metrics())
        metrics["register"]["partitions"] = result.partitions_added[:100]
        if side:
            metrics["register"]["side_tables"] = [r.table.full_name for r in side]
    extras = getattr(state, "extras", None)
    if isinstance(extras, dict):
        extras["ddl"] = result.ddl
    log = getattr(state, "log", None)
    if hasattr(log, "info"):
        log.info(f"{result.action} {result.table.full_name} ({result.table.format}, {result.table.location}), "
                 f"{len(result.partitions_added)} partition(s) added", "register")
    return result
