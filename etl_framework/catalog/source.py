"""`format: catalog` sources, as Glue's `create_dynamic_frame.from_catalog`: location, format, schema and
partitions come from the catalog; the source's reader `options` still apply; `push_down_predicate` prunes the
catalog's partitions before any file is listed or read.

Only partitions the catalog holds are read (as Glue and Athena do): a folder that was never crawled or registered
is not part of the table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from etl_framework.catalog import types as ty
from etl_framework.catalog.base import Catalog, Partition, Table, missing_table, split_table_name
from etl_framework.errors import EtlError, UsageError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from etl_framework.config.model import Source


@dataclass
class CatalogRead:
    """What reading a catalog table means: the extract stage may filter `paths` (incremental bookmarks) before
    calling `read_plan`."""

    table: Table
    format: str
    location: str
    paths: list[str]  # partition folders to read (Hive tables), or [location]
    schema_ddl: str | None  # Spark DDL of data + partition columns (None: from the Delta log)
    options: dict[str, Any] = field(default_factory=dict)
    predicate: str | None = None
    partitions: list[Partition] = field(default_factory=list)


def spark_path(location: str) -> str:
    """s3:// is EMRFS's spelling in Glue; plain Spark reads S3 through Hadoop's s3a://."""
    if location.startswith("s3://") and not _in_glue():
        return "s3a://" + location[len("s3://"):]
    return location


def _in_glue() -> bool:
    import importlib.util

    return bool(os.environ.get("GLUE_VERSION")) or importlib.util.find_spec("awsglue") is not None and bool(
        os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Glue"))


def prune_partitions(spark: SparkSession, table: Table, partitions: list[Partition], predicate: str) -> list[Partition]:
    """Evaluate a push-down predicate over the partition values only (typed as the partition keys), as Glue's
    `push_down_predicate` does: no data file is touched."""
    from pyspark.sql.utils import AnalysisException, ParseException

    keys = table.partition_keys
    if not keys:
        raise UsageError(f"push_down_predicate given for {table.full_name}, which has no partition keys\n"
                         "  what to do: remove push_down_predicate or use a filter transform step")
    rows = [tuple(list(p.values) + [i]) for i, p in enumerate(partitions)]
    schema = ", ".join(f"`{k.name}` string" for k in keys) + ", `__i` int"
    df = spark.createDataFrame(rows, schema)
    for k in keys:
        if k.type != "string":
            df = df.withColumn(k.name, df[k.name].cast(k.type))
    try:
        kept = df.filter(predicate).select("__i").collect()
    except (AnalysisException, ParseException) as e:
        first = str(e).strip().splitlines()[0][:300]
        raise UsageError(
            f"push_down_predicate {predicate!r} on {table.full_name} does not work: {first}\n  what to do: use only "
            f"partition keys ({', '.join(k.name for k in keys)}) in push_down_predicate"
        ) from e
    idx = {r["__i"] for r in kept}
    return [p for i, p in enumerate(partitions) if i in idx]


def plan_catalog_read(spark: SparkSession, catalog: Catalog, source: Source) -> CatalogRead:
    db, name = split_table_name(source.table or "")
    table = catalog.get_table(db, name)
    if table is None:
        raise missing_table(catalog, db, name)
    from etl_framework.catalog.query import checked_columns

    checked_columns(table)  # catalog metadata is data: a type that is not a Glue/Hive type stops here, named
    fmt = table.format
    options: dict[str, Any] = {}
    if fmt == "csv":
        options["header"] = "true" if table.parameters.get("skip.header.line.count") == "1" else "false"
        options["sep"] = table.serde_parameters.get("field.delim", ",")
    from etl_framework.config.interpolate import resolve_secrets

    given = resolve_secrets(dict(source.options))  # ${secret:NAME} resolved only now, at the moment of use
    options.update({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in given.items()})
    location = spark_path(table.location)
    if fmt == "delta":
        return CatalogRead(table, fmt, location, [location], None, options, source.push_down_predicate)
    cols = [(c.name, c.type) for c in [*table.columns, *table.partition_keys]]
    schema = ty.spark_ddl(cols)
    if not table.partition_keys:
        return CatalogRead(table, fmt, location, [location], schema, options)
    parts = catalog.get_partitions(db, name)
    if source.push_down_predicate:
        parts = prune_partitions(spark, table, parts, source.push_down_predicate)
    paths = [spark_path(p.location) for p in parts]
    return CatalogRead(table, fmt, location, paths, schema, options, source.push_down_predicate, parts)


def read_plan(spark: SparkSession, plan: CatalogRead) -> DataFrame:
    t = plan.table
    if plan.format == "delta":
        df = spark.read.options(**plan.options).format("delta").load(plan.location)
        if plan.predicate:
            df = df.filter(plan.predicate)  # Delta prunes files by partition values from the log
        return df
    from pyspark.sql.types import _parse_datatype_string

    schema = _parse_datatype_string(plan.schema_ddl or "")
    if not plan.paths:  # every partition pruned away, or none registered yet
        return spark.createDataFrame([], schema)
    reader = spark.read.schema(schema).options(**plan.options)
    if t.partition_keys:
        reader = reader.option("basePath", plan.location)
    return reader.format(plan.format).load(plan.paths)


def read_catalog_source(spark: SparkSession, catalog: Catalog, source: Source,
                        paths: list[str] | None = None, plan: CatalogRead | None = None) -> DataFrame:
    """Glue `from_catalog` for a `format: catalog` source. `paths` (files, e.g. the new files of an incremental
    source) narrows the read to those files, still within the partitions the predicate keeps."""
    plan = plan or plan_catalog_read(spark, catalog, source)
    if paths is not None and plan.format != "delta":
        if plan.table.partition_keys:
            folders = tuple(_norm(p).rstrip("/") + "/" for p in plan.paths)
            plan.paths = [spark_path(f) for f in paths if _norm(spark_path(f)).startswith(folders)]
        else:
            plan.paths = [spark_path(f) for f in paths]
    try:
        return read_plan(spark, plan)
    except Exception as e:
        if isinstance(e, EtlError):
            raise
        first = str(e).strip().splitlines()[0][:400] if str(e).strip() else type(e).__name__
        raise EtlError(f"cannot read catalog table {plan.table.full_name} at {plan.table.location}: {first}\n"
                       "  what to do: check that the table's files exist (`etl catalog show` gives the location) "
                       "or crawl the folder again") from e


def _norm(path: str) -> str:
    """A path as the file listing spells it (local: absolute, symlinks resolved; S3: as is)."""
    if "://" in path and not path.startswith("file:"):
        return path
    return os.path.realpath(path.removeprefix("file://").removeprefix("file:"))


def configure_s3a(spark: SparkSession, endpoint_url: str | None, region: str | None = None) -> None:
    """Point Hadoop's s3a at an endpoint override (a moto server locally): path-style, SSL as the URL says."""
    if not endpoint_url:
        return
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    conf.set("fs.s3a.endpoint", endpoint_url)
    conf.set("fs.s3a.path.style.access", "true")
    conf.set("fs.s3a.connection.ssl.enabled", "true" if endpoint_url.startswith("https") else "false")
    if region:
        conf.set("fs.s3a.endpoint.region", region)
    for key, env in (("fs.s3a.access.key", "AWS_ACCESS_KEY_ID"), ("fs.s3a.secret.key", "AWS_SECRET_ACCESS_KEY")):
        if os.environ.get(env):
            conf.set(key, os.environ[env])
    # temporary credentials (an assumed role) carry a session token: S3A needs it and its provider for it; without
    # one, back to the key pair (the JVM's configuration is shared by every later job of this process)
    token = os.environ.get("AWS_SESSION_TOKEN")
    if token:
        conf.set("fs.s3a.session.token", token)
        conf.set("fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider")
    elif conf.get("fs.s3a.session.token"):
        conf.unset("fs.s3a.session.token")
        default = spark.sparkContext.getConf().get("spark.hadoop.fs.s3a.aws.credentials.provider", None)
        if default:
            conf.set("fs.s3a.aws.credentials.provider", default)
        else:
            conf.unset("fs.s3a.aws.credentials.provider")
