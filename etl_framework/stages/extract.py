"""Extract (SPEC §5): read every source into a DataFrame and a temp view named by its key.

Choices where the SPEC is silent:
- Malformed rows (`bad_records`, csv and json only — parquet and delta carry their own schema): `fail` is Spark's
  FAILFAST mode (the run fails at the first malformed row, naming the file and line); `drop` and `quarantine`
  read in PERMISSIVE mode with a corrupt-record column: good rows go on, malformed ones are dropped or written by
  the write stage to `<target>_bad_records` (Parquet, committed like a Parquet target) with the source, file,
  reason, the columns that did not parse and the raw record. A row is malformed when any of its columns does not
  parse, used by the job or not (with `fail`, Spark checks only the columns the job uses).
- A CSV with `header: true` and an explicit schema has its header checked against the schema (Spark's
  `enforceSchema: false`), so a file whose columns moved fails instead of loading shifted data.
- Parquet and Delta sources with an explicit schema are checked against the file schema before any data is read:
  a missing column or a changed type fails the run; safe widenings (int -> bigint, float -> double) are cast.
- A Parquet folder written by this framework is read through its commit manifest (only committed files).
- Rows read per source are counted during the write (a Spark Observation), not by an extra pass; parquet and
  delta sources are not counted, because an observation would stop filter and partition pushdown into the scan.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from etl_framework.errors import JobFailed

if TYPE_CHECKING:
    from etl_framework.config.model import JobConfig, Source
    from etl_framework.engine.job import JobRunState

STAGE = "extract"
TEXT_FORMATS = ("csv", "json")
CORRUPT_COL = "_corrupt_record"
PARSE_MODES = {"fail": "FAILFAST", "drop": "PERMISSIVE", "quarantine": "PERMISSIVE"}
WIDENINGS = {
    ("tinyint", "smallint"), ("tinyint", "int"), ("tinyint", "bigint"), ("smallint", "int"),
    ("smallint", "bigint"), ("int", "bigint"), ("float", "double"), ("int", "double"), ("bigint", "double"),
    ("date", "timestamp"),
}


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def local_path(path: str) -> str:
    return path.removeprefix("file://")


def option_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def ddl(schema: dict[str, str]) -> str:
    return ", ".join(f"`{c}` {t}" for c, t in schema.items())


def parse_schema(state: JobRunState, name: str, schema: dict[str, str]) -> Any:
    """The StructType of a declared schema; a type Spark does not know fails here, before reading."""
    from pyspark.sql.types import _parse_datatype_string

    try:
        return _parse_datatype_string(ddl(schema))
    except Exception:
        for col, typ in schema.items():
            try:
                _parse_datatype_string(f"`{col}` {typ}")
            except Exception:  # noqa: BLE001
                raise JobFailed(state.job, STAGE, f"source '{name}': column '{col}' has type '{typ}', which is not "
                                f"a Spark SQL type", "use a Spark SQL type name: string, int, bigint/long, double, "
                                "decimal(p,s), boolean, date, timestamp, array<...>, ...") from None
        raise


def run_extract(state: JobRunState) -> None:
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    metrics: dict[str, Any] = {"sources": {}}
    for name, src in state.config.sources.items():
        df = read_source(state, name, src)
        if src.format in TEXT_FORMATS:
            obs = Observation()
            df = obs._on(df, F.count(F.lit(1)).alias("rows"))
            state.observations[f"extract.{name}"] = obs
        df.createOrReplaceTempView(name)
        state.views[name] = df
        info: dict[str, Any] = {"format": src.format, "path": src.path or src.table}
        if src.format == "jdbc":
            from etl_framework.stages.jdbc import where_of

            info = {"format": "jdbc", "path": where_of(src.url or ""), "table": src.table or "(query)"}
        files = state.input_files.get(name)
        if files is not None:
            info["files"] = len(files)
            size = _local_bytes(files)
            if size is not None:
                info["bytes"] = size
        metrics["sources"][name] = info
        state.log.info(f"source {name}: {src.format} {info['path']}"
                       + (f", {info['files']} file(s)" if "files" in info else ""), STAGE)
    state.metrics[STAGE].update(metrics)


def _local_bytes(files: list[str]) -> int | None:
    total = 0
    for f in files:
        if not is_local(f):
            return None
        p = local_path(f)
        try:
            total += os.path.getsize(p)
        except OSError:
            return None
    return total


def _check_exists(state: JobRunState, name: str, src: Source, paths: list[str]) -> None:
    for p in paths:
        if is_local(p) and not any(ch in p for ch in "*?[") and not os.path.exists(local_path(p)):
            raise JobFailed(
                state.job, STAGE, f"source '{name}': input path {p} does not exist",
                "check the source's 'path' (and the env config's vars it uses), or create the data "
                "(sample data: python scripts/generate_data.py --out data/raw)")
        if (is_local(p) and os.path.isdir(local_path(p)) and src.format in ("csv", "json", "parquet")
                and not _has_data_files(local_path(p))):
            raise JobFailed(state.job, STAGE, f"source '{name}': input folder {p} holds no data files",
                                "put the input files there, or point 'path' at the folder that holds them")


def preflight(config: JobConfig) -> None:
    """Before Spark starts: every local input path exists (a missing one fails in a second, not after start-up)."""
    from types import SimpleNamespace

    shim = SimpleNamespace(job=config.job)
    for name, src in config.sources.items():
        if src.path:
            _check_exists(shim, name, src, [src.path])  # type: ignore[arg-type]


def _has_data_files(folder: str) -> bool:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        if any(not f.startswith(("_", ".")) for f in files):
            return True
    return False


def read_source(state: JobRunState, name: str, src: Source) -> Any:
    """One source as a DataFrame (lazy: Spark reads the data when the write runs)."""
    from etl_framework.config.interpolate import resolve_secrets
    from etl_framework.redaction import protect_spark

    if src.format == "catalog":
        return _read_catalog(state, name, src)
    if src.format == "jdbc":
        from etl_framework.stages.jdbc import read_jdbc

        return read_jdbc(state, name, src)
    assert src.path is not None
    spark = state.spark
    override = state.source_paths.get(name)
    paths = list(override) if override is not None else [src.path]
    options = {k: option_value(v) for k, v in resolve_secrets(dict(src.options)).items()}
    protect_spark(spark)
    if override is not None and "basePath" not in options and _is_folder(src.path):
        # reading an exact file list (bookmarks) keeps the Hive partition columns a folder read would give
        options["basePath"] = src.path
    declared = parse_schema(state, name, src.schema_) if isinstance(src.schema_, dict) else None
    if override is not None and not paths:
        if declared is None:
            raise JobFailed(state.job, STAGE, f"source '{name}' has no files to read and no declared schema",
                            "declare the source's schema so that an empty input gives an empty table")
        state.input_files[name] = []
        return spark.createDataFrame([], declared)
    _check_exists(state, name, src, paths)
    try:
        if src.format in TEXT_FORMATS:
            df = _read_text(state, name, src, paths, options, declared)
        elif src.format == "parquet":
            df = _read_parquet(state, name, paths, options)
        else:
            df = _read_table(state, name, src.format, paths, options)
        if declared is not None and src.format in ("parquet", "delta", "iceberg"):
            df = conform(state, name, df, declared)
        state.input_files.setdefault(name, _input_files(df))
    except JobFailed:
        raise
    except Exception as e:  # noqa: BLE001 - Spark's reader errors, made readable
        from etl_framework.engine.errors import explain

        raise explain(e, state, STAGE, source=name) from None
    return df


def _input_files(df: Any) -> list[str]:
    try:
        return sorted(df.inputFiles())
    except Exception:  # noqa: BLE001 - a plan without file scans
        return []


def _is_folder(path: str) -> bool:
    return os.path.isdir(local_path(path)) if is_local(path) else path.endswith("/")


def _read_text(state: JobRunState, name: str, src: Source, paths: list[str], options: dict[str, str],
               declared: Any) -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    spark = state.spark
    opts = dict(options)
    header = opts.get("header", "false").lower() == "true"
    if src.format == "csv" and declared is None and "inferSchema" not in opts:
        opts["inferSchema"] = "true"
    if src.format == "csv" and header and declared is not None and "enforceSchema" not in opts:
        opts["enforceSchema"] = "false"
    mode = PARSE_MODES[src.bad_records]
    opts.setdefault("mode", mode)
    reader = spark.read.format(src.format).options(**opts)
    if src.bad_records == "fail":
        return reader.schema(declared).load(paths) if declared is not None else reader.load(paths)
    schema = declared if declared is not None else reader.load(paths).schema
    fields = [f for f in schema.fields if f.name != CORRUPT_COL]
    with_corrupt = StructType([*fields, StructField(CORRUPT_COL, StringType(), True)])
    raw = (spark.read.format(src.format).options(**opts).option("mode", "PERMISSIVE")
           .option("columnNameOfCorruptRecord", CORRUPT_COL).schema(with_corrupt).load(paths))
    data_cols = [f.name for f in fields]
    # Spark converts only the columns a plan uses, so a value that does not parse in an unused column would make
    # a row good for the target and bad for the bad-records table at once. Using every column in the filter
    # (through a hash the optimizer cannot fold away) makes "malformed" mean the whole row, in both.
    whole_row = F.xxhash64(*[F.col(f"`{c}`") for c in data_cols]) >= F.lit(-(2**63))
    good = raw.filter(F.col(CORRUPT_COL).isNull() & whole_row).drop(CORRUPT_COL)
    if src.bad_records == "drop":
        return good
    unparsed = F.array_join(F.array_compact(F.array(*[
        F.when(F.col(f"`{c}`").isNull(), F.lit(c)) for c in data_cols])), ",")
    reason = (f"malformed {src.format} record: it does not parse with the schema of source '{name}' "
              "(a value that does not convert to its column type, or a wrong number of fields)")
    bad = raw.filter(F.col(CORRUPT_COL).isNotNull()).select(
        F.lit(name).alias("source"),
        F.input_file_name().alias("file"),
        F.lit(reason).alias("reason"),
        unparsed.alias("unparsed_columns"),
        F.col(CORRUPT_COL).alias("raw_record"),
        F.lit(state.run_id).alias("run_id"),
        F.current_timestamp().alias("extracted_at"),
    )
    state.bad_records[name] = bad
    return good


def _read_parquet(state: JobRunState, name: str, paths: list[str], options: dict[str, str]) -> Any:
    from etl_framework.tables.parquet import committed_files, read_committed_parquet

    spark = state.spark
    if len(paths) == 1:
        files = committed_files(spark, paths[0])
        if files is not None:  # a table written by this framework: only what its manifest committed
            state.input_files[name] = files
            return read_committed_parquet(spark, paths[0], options)
    return spark.read.options(**options).parquet(*paths)


def _read_table(state: JobRunState, name: str, fmt: str, paths: list[str], options: dict[str, str]) -> Any:
    """A Delta or Iceberg source: the table's committed state, through its format."""
    from etl_framework.tables import table_format

    if len(paths) != 1:
        raise JobFailed(state.job, STAGE, f"source '{name}': a {fmt} source is one table path, got {len(paths)}")
    path = paths[0]
    storage = state.storage
    tf = table_format(fmt)
    if is_local(path) and not tf.detect(path, storage):
        raise JobFailed(state.job, STAGE, f"source '{name}': {path} is not a {tf.title} table (no {tf.marker})",
                        f"point 'path' at a {fmt} table, or use the format the data is in (parquet, csv, json)")
    return tf.spark_read(state.spark, path, options, storage=storage)


def conform(state: JobRunState, name: str, df: Any, declared: Any) -> Any:
    """Check a self-describing source against its declared schema; cast safe widenings, fail on the rest."""
    from pyspark.sql import functions as F

    actual = {f.name.lower(): f for f in df.schema.fields}
    missing = [f.name for f in declared.fields if f.name.lower() not in actual]
    changed = []
    cols = []
    for f in declared.fields:
        a = actual.get(f.name.lower())
        if a is None:
            continue
        have, want = a.dataType.simpleString(), f.dataType.simpleString()
        if have == want:
            cols.append(F.col(f"`{a.name}`").alias(f.name))
        elif (have, want) in WIDENINGS:
            cols.append(F.col(f"`{a.name}`").cast(f.dataType).alias(f.name))
        else:
            changed.append(f"column '{f.name}' is {have} in the data, declared {want}")
    if missing or changed:
        parts = []
        if missing:
            parts.append("missing column" + ("s " if len(missing) > 1 else " ") + ", ".join(missing))
        parts += changed
        have_cols = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in df.schema.fields)
        raise JobFailed(state.job, STAGE, f"source '{name}' does not match its declared schema: "
                        + "; ".join(parts) + f" (the data has: {have_cols})",
                        f"update the 'schema:' of source '{name}' to the data's columns (add a `cast` step to "
                        "change a type), or fix the data")
    return df.select(*cols)


def _read_catalog(state: JobRunState, name: str, src: Source) -> Any:
    try:
        from etl_framework.catalog.source import read_catalog_source
    except ImportError:
        raise JobFailed(state.job, STAGE, f"source '{name}': format 'catalog' is not available in this version",
                        "read the table's files directly (format parquet/delta/csv with its path)") from None
    try:
        plan = state.extras.get("incremental_plan")
        if plan is not None and name in plan.catalog_sources:
            read, paths = _catalog_new_files(state, name, src, plan)
            df = read_catalog_source(state.spark, state.catalog, src, paths=paths, plan=read)
            state.input_files[name] = paths
        else:
            df = read_catalog_source(state.spark, state.catalog, src)
    except JobFailed:
        raise
    except Exception as e:  # noqa: BLE001
        from etl_framework.engine.errors import explain

        raise explain(e, state, STAGE, source=name) from None
    state.input_files.setdefault(name, _input_files(df))
    return df


def _catalog_new_files(state: JobRunState, name: str, src: Source, plan: Any) -> tuple[Any, list[str]]:
    """`incremental: {mode: files}` on a catalog table, as Glue's bookmark tracks it: the files under the
    partitions the catalog holds now (after this run's crawl stage; `push_down_predicate` applied first, so other
    partitions are not even listed), less those the bookmark has. A partition gone from the catalog is not an
    error; a table whose location changed is (its bookmark lists files of the old place)."""
    from etl_framework.catalog.source import _norm, plan_catalog_read
    from etl_framework.incremental import list_files, new_files

    read = plan_catalog_read(state.spark, state.catalog, src)
    table = read.table
    if read.format in ("delta", "iceberg"):
        raise JobFailed(state.job, STAGE, f"source '{name}': {table.full_name} is a {read.format} table; "
                        "incremental mode 'files' is for tables of files (csv, json, parquet)",
                        "use incremental: {mode: watermark, column: ...}")
    cursor = plan.bookmark.cursor(name, "files")
    if cursor.location and cursor.location.rstrip("/") != table.location.rstrip("/"):
        raise JobFailed(state.job, STAGE, f"source '{name}': the location of {table.full_name} changed since the "
                        f"last run, from {cursor.location} to {table.location}; the bookmark lists files of the "
                        "old location", f"to read the table at its new location from the start, run `etl bookmarks "
                        f"reset {state.job}` (every file there is then read once); or point the table back")
    if table.partition_keys:
        roots = [(p.location, "/".join(f"{k.name}={v}" for k, v in zip(table.partition_keys, p.values,
                                                                        strict=False))) for p in read.partitions]
    else:
        roots = [(table.location, "")]
    aws = state.env_config.aws.model_dump() if state.env_config is not None else {}
    listing = []
    for location, _ in roots:
        try:
            listing += list_files(location.removeprefix("file://"), aws=aws)
        except FileNotFoundError:
            state.log.warning(f"source '{name}': the folder of a catalog partition is gone: {location} (crawl the "
                              "table again to drop it)", STAGE)
    fresh = new_files(listing, cursor)
    folders = tuple(_norm(loc).rstrip("/") + "/" for loc, _ in roots)
    present = {f.path for f in listing}
    gone = [p for p in cursor.files if _norm(p).startswith(folders) and p not in present]
    if gone:
        state.log.warning(f"source '{name}': {len(gone)} bookmarked file(s) no longer exist (their rows are "
                          f"already in the target), e.g. {gone[0]}", STAGE)
    plan.files[name] = fresh
    plan.delta.files[name] = {f.path: f.key() for f in fresh}
    plan.delta.locations[name] = table.location
    plan._set_commit(state)
    state.metrics.setdefault(STAGE, {}).setdefault("catalog", {})[name] = {
        "table": table.full_name, "partitions_listed": [label for _, label in roots if label],
        "files_listed": len(listing), "new_files": len(fresh)}
    state.log.info(f"source '{name}': {len(fresh)} new file(s) of {len(listing)} in "
                   + (f"{len(roots)} partition(s) of " if table.partition_keys else "") + table.full_name, STAGE)
    return read, [f.path for f in fresh]


def find_malformed(state: JobRunState) -> tuple[str, str, str] | None:
    """After a FAILFAST failure: which source, file and line was malformed (a diagnostic re-read of the text
    sources in PERMISSIVE mode, only on the failure path)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    for name, src in state.config.sources.items():
        if src.format not in TEXT_FORMATS or src.bad_records != "fail" or not isinstance(src.schema_, dict):
            continue
        try:
            declared = parse_schema(state, name, src.schema_)
            schema = StructType([*declared.fields, StructField(CORRUPT_COL, StringType(), True)])
            opts = {k: option_value(v) for k, v in src.options.items() if "${secret:" not in str(v)}
            paths = state.source_paths.get(name) or [src.path]
            row = (state.spark.read.format(src.format).options(**opts).option("mode", "PERMISSIVE")
                   .option("columnNameOfCorruptRecord", CORRUPT_COL).option("enforceSchema", "true")
                   .schema(schema).load(paths).withColumn("__file", F.input_file_name())
                   .filter(F.col(CORRUPT_COL).isNotNull()).first())  # all columns: Spark refuses the corrupt one alone
        except Exception:  # noqa: BLE001, S112 - a diagnosis must never hide the original error
            continue
        if row is not None:
            raw = str(row[CORRUPT_COL])
            return name, locate(str(row["__file"]), raw, row, declared, opts), raw
    return None


def locate(file: str, raw: str, row: Any, declared: Any, opts: dict[str, Any]) -> str:
    """`file, line N, column C` for a malformed row: the line is where the raw text sits in the file (local files;
    1-based, the header counts), the column the first declared one whose text is there but did not convert (a
    PERMISSIVE read keeps the values that parsed and nulls the others)."""
    import csv

    where = file
    path = local_path(file) if is_local(file) else None
    if path and os.path.isfile(path):
        try:
            with open(path, encoding=str(opts.get("encoding") or "utf-8"), errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    if line.rstrip("\r\n") == raw:
                        where += f", line {n}"
                        break
        except OSError:
            pass
    sep = str(opts.get("sep") or opts.get("delimiter") or ",")
    try:
        fields = next(csv.reader([raw], delimiter=sep[0], quotechar=str(opts.get("quote") or '"')[0]))
    except (csv.Error, StopIteration):
        return where
    if len(fields) != len(declared.fields):
        return where + f" ({len(fields)} fields, the schema declares {len(declared.fields)})"
    for fld, text in zip(declared.fields, fields, strict=True):
        if text.strip() and text != str(opts.get("nullValue", "")) and row[fld.name] is None:
            return where + f", column '{fld.name}' ({text!r} is not a valid {fld.dataType.simpleString()})"
    return where

