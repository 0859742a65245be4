"""Apache Iceberg tables (Glue 5: Iceberg 1.7.1), written by Spark through Iceberg's own runtime.

Catalog: Iceberg needs one to commit atomically (a compare-and-swap of the table's metadata pointer). On Glue that
is the Glue Data Catalog (`GlueCatalog`); locally it is Iceberg's JDBC catalog on a SQLite file beside the local
catalog (`.etl/iceberg_catalog.db`) — the same pointer-swap semantics as Glue's, safe for two writers at once and
on S3 (a Hadoop catalog commits by rename, which S3 does not have). The table's data and metadata live under the
target `path` (the table's `location`); its catalog identifier is derived from that path (`etl.<leaf>_<hash>`), so
two jobs writing the same path write the same table.

The run id and the bookmark delta ride in the snapshot summary of the same commit (`snapshot-property.*` write
options; `MERGE INTO` through `CommitMetadata.withCommitProperties` in the helper JAR), and are read back without a
JVM by pyiceberg from the current metadata file.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from typing import Any

from etl_framework.errors import JobFailed
from etl_framework.tables.base import (
    STAGE,
    CommitRecord,
    CommitRequest,
    MaintainRequest,
    MaintainResult,
    TableFormat,
    WriteResult,
)
from etl_framework.tables.fs import Storage, is_local, strip_scheme, target_key

CATALOG = "etl_iceberg"  # the Spark catalog name (and the JDBC catalog's catalog_name)
NAMESPACE = "etl"
# A concurrent commit seen by the catalog: Iceberg's own conflict, or SQLite refusing a stale writer (the local
# JDBC catalog) — either way this write did not commit.
CONFLICTS = ("CommitFailedException", "SQLITE_BUSY", "database is locked")


def table_name(path: str) -> str:
    """The catalog name of the Iceberg table at `path`: readable leaf plus a hash of the whole location."""
    key = target_key(path)
    leaf = re.sub(r"[^a-z0-9_]", "_", key.rsplit("/", 1)[-1].lower())[:40] or "t"
    return f"{leaf}_{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def identifier(path: str) -> str:
    return f"{CATALOG}.{NAMESPACE}.{table_name(path)}"


def spark_location(path: str) -> str:
    """How Iceberg records the location: an absolute local path or the URI as given."""
    return target_key(path) if is_local(path) else path.rstrip("/")


def catalog_conf(storage: Storage) -> dict[str, str]:
    """Spark confs of the catalog this env's Iceberg tables live in."""
    p = f"spark.sql.catalog.{CATALOG}"
    if storage.glue_catalog:
        conf = {p: "org.apache.iceberg.spark.SparkCatalog",
                f"{p}.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog",
                f"{p}.io-impl": "org.apache.iceberg.hadoop.HadoopFileIO",
                f"{p}.warehouse": "s3://unused-every-table-has-a-location/"}
        if storage.endpoint_url:
            conf[f"{p}.glue.endpoint"] = storage.endpoint_url
        return conf
    if not storage.iceberg_catalog:
        raise RuntimeError("no Iceberg catalog for this env (the env config has no local catalog path)")
    from pathlib import Path

    db = Path(storage.iceberg_catalog)
    db.parent.mkdir(parents=True, exist_ok=True)
    return {p: "org.apache.iceberg.spark.SparkCatalog",
            f"{p}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
            f"{p}.uri": f"jdbc:sqlite:{db}",
            f"{p}.jdbc.schema-version": "V1",
            # several processes share the file (a killed run's successor, `etl query`): wait for a lock instead
            # of failing, and let readers read while a commit writes
            f"{p}.jdbc.busy_timeout": "30000",
            f"{p}.jdbc.journal_mode": "WAL",
            f"{p}.warehouse": str(db.parent / "iceberg_warehouse")}


def ensure_catalog(spark: Any, storage: Storage) -> None:
    """Point this Spark session's `etl_iceberg` catalog at the env's Iceberg catalog (once per session)."""
    conf = catalog_conf(storage)
    key = f"spark.sql.catalog.{CATALOG}.uri" if not storage.glue_catalog else f"spark.sql.catalog.{CATALOG}"
    current = spark.conf.get(key, None)
    if current is not None and current != conf[key]:
        raise RuntimeError(f"this Spark session's Iceberg catalog is {current}, not {conf[key]}: use one session "
                           "per env")
    if current is None:
        for k, v in conf.items():
            spark.conf.set(k, v)
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG}.{NAMESPACE}")


def _java_table(spark: Any, ident: str) -> Any:
    return spark._jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, ident)


class IcebergFormat(TableFormat):
    name = "iceberg"
    title = "Iceberg"
    marker = "metadata"
    catalog_partitions = False

    def detect(self, path: str, storage: Storage) -> bool:
        """A `metadata/` folder holding `*.metadata.json` files."""
        from pyarrow import fs as pafs

        fs, root = storage.arrow_fs(path)
        try:
            infos = fs.get_file_info(pafs.FileSelector(f"{root}/metadata", allow_not_found=True))
        except OSError:
            return False
        return any(i.path.endswith(".metadata.json") for i in infos)

    def is_data_file(self, rel: str) -> bool:
        """Iceberg's Spark writer puts `<partition>-<task>-<uuid>-<n>-<n>.parquet` files under `data/`."""
        return rel.startswith("data/") and rel.endswith((".parquet", ".orc", ".avro"))

    def preflight(self, job: str, path: str, storage: Storage) -> None:
        super().preflight(job, path, storage)
        self._check_intact(job, path, storage)

    def _check_intact(self, job: str, path: str, storage: Storage) -> None:
        """The catalog points at a metadata file that is gone (deleted by hand): say which, before any read."""
        loc = self.metadata_location(path, storage)
        if loc is not None and not storage.exists(loc.removeprefix("file:")):
            raise JobFailed(job, STAGE, f"the Iceberg table at {path} is damaged: its metadata file {loc} is "
                            "missing", "restore the file from a backup or versioned bucket; or, to start the "
                            "table over, remove its folder and its entry in this env's Iceberg catalog")

    # ---------------------------------------------------------------------------------------------- writes

    def write(self, spark: Any, df: Any, path: str, *, mode: str, partition_by: list[str],
              merge_keys: list[str] | None, options: dict[str, Any], commit: CommitRequest | None,
              job: str, storage: Storage, evolve: bool = False) -> WriteResult:
        self._check_intact(job, path, storage)
        ensure_catalog(spark, storage)
        ident = identifier(path)
        loc = spark_location(path)
        props = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
                 for k, v in (commit.properties() if commit is not None else {}).items()}
        opts = {k: str(v) for k, v in (options or {}).items()}
        opts.update({f"snapshot-property.{k}": v for k, v in props.items()})
        exists = bool(spark.catalog.tableExists(ident))
        if exists:
            jt = _java_table(spark, ident)
            have = str(jt.location()).removeprefix("file:").rstrip("/")
            if have != loc.removeprefix("file:").rstrip("/"):
                raise JobFailed(job, STAGE, f"the Iceberg catalog has {ident} at {have}, not at {loc}",
                                "the catalog entry is stale: drop it, or write to the location it names")
        elif self.detect(path, storage):
            raise JobFailed(job, STAGE, f"target {loc} holds Iceberg metadata that the catalog does not know (a "
                            "table written elsewhere, or the catalog file was deleted)",
                            "register the table in this env's Iceberg catalog, or write to an empty folder")
        try:
            self._write(spark, df, ident, loc, mode=mode, partition_by=partition_by, merge_keys=merge_keys,
                        opts=opts, props=props, exists=exists, evolve=evolve)
        except Exception as e:
            if not any(m in str(e) for m in CONFLICTS):
                raise
            raise JobFailed(job, STAGE, f"another writer committed to the Iceberg table at {loc} at the same "
                            "moment: this write's commit was refused, and nothing of it is in the table",
                            "run the job again (`etl resume RUN_ID`); the target's lock keeps this framework's "
                            "own runs apart, so another tool or a manual write was writing") from None
        return self._result(spark, ident, loc, mode)

    def _write(self, spark: Any, df: Any, ident: str, loc: str, *, mode: str, partition_by: list[str],
               merge_keys: list[str] | None, opts: dict[str, str], props: dict[str, str], exists: bool,
               evolve: bool) -> None:
        from pyspark.sql import functions as F

        if exists and evolve:
            self._add_columns(spark, ident, df)
        if not exists:  # an atomic create-table-as-select: a stopped first write leaves no table
            w = df.writeTo(ident).using("iceberg").tableProperty("location", loc)
            w = w.tableProperty("format-version", "2").options(**opts)
            if partition_by:
                w = w.partitionedBy(*[F.col(c) for c in partition_by])
            w.create()
        elif mode == "merge":
            self._merge(spark, df, ident, merge_keys or [], props)
        else:
            w = df.writeTo(ident).options(**opts)
            if mode == "overwrite":
                w.overwrite(F.lit(True))
            elif mode == "overwrite_partitions":
                w.overwritePartitions()
            else:
                w.append()

    def _add_columns(self, spark: Any, ident: str, df: Any) -> None:
        """Columns of `df` the table lacks, added as nullable columns (a schema-only commit before the data's:
        Iceberg's MERGE does not evolve the schema itself)."""
        have = {f.name.lower() for f in spark.table(ident).schema.fields}
        new = [f for f in df.schema.fields if f.name.lower() not in have]
        if new:
            cols = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in new)
            spark.sql(f"ALTER TABLE {ident} ADD COLUMNS ({cols})")

    def schema(self, spark: Any, path: str, storage: Storage) -> Any:
        ensure_catalog(spark, storage)
        ident = identifier(path)
        return spark.table(ident).schema if spark.catalog.tableExists(ident) else None

    def _merge(self, spark: Any, df: Any, ident: str, keys: list[str], props: dict[str, str]) -> None:
        import uuid

        view = f"etl_merge_src_{uuid.uuid4().hex[:8]}"
        df.createOrReplaceTempView(view)
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)  # as Delta's merge: a NULL key matches nothing
        sql = (f"MERGE INTO {ident} t USING {view} s ON {cond} "
               "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
        try:
            helper = spark._jvm.etl_framework.spark.IcebergCommit
            jprops = spark._jvm.java.util.HashMap()
            for k, v in props.items():
                jprops.put(k, v)
            helper.sql(spark._jsparkSession, sql, jprops)
        finally:
            spark.catalog.dropTempView(view)

    def _result(self, spark: Any, ident: str, loc: str, mode: str) -> WriteResult:
        jt = _java_table(spark, ident)
        jt.refresh()
        snap = jt.currentSnapshot()
        out = WriteResult(format=self.name, mode=mode, path=loc)
        out.metadata_location = str(jt.operations().current().metadataFileLocation())
        if snap is None:
            return out
        summary = {str(k): str(v) for k, v in dict(snap.summary()).items()}
        out.version = int(snap.sequenceNumber())
        out.snapshot_id = int(snap.snapshotId())
        out.operation = str(snap.operation())
        out.files_written = int(summary.get("added-data-files", 0))
        out.bytes_written = int(summary.get("added-files-size", 0))
        out.files_removed = int(summary.get("deleted-data-files", 0))
        out.partition_count = int(summary.get("changed-partition-count", 0))
        if mode == "merge":
            added, deleted = int(summary.get("added-records", 0)), int(summary.get("deleted-records", 0))
            out.merge = {"numTargetRowsAdded": added, "numTargetRowsDeleted": deleted}
        return out

    def referenced_files(self, spark: Any, path: str) -> set[str]:
        """Data and delete files of every snapshot (`all_files`), and the metadata folder (the table's own).
        Iceberg 1.7 removes a failed job's files only when the commit itself fails; files of finished tasks of a
        stopped write stay behind, and are this format's to clean."""
        from urllib.parse import unquote

        from etl_framework.tables.fs import filesystem

        if not spark.catalog.tableExists(identifier(path)):
            return set()
        root = path.rstrip("/")
        key = (strip_scheme(root) if is_local(root) else root.split("://", 1)[1]).rstrip("/") + "/"
        out = {rel for rel, _ in filesystem(spark, root).list_files(f"{root}/metadata")}
        out = {f"metadata/{rel}" for rel in out}
        for row in spark.sql(f"SELECT file_path FROM {identifier(path)}.all_files").collect():
            f = unquote(str(row[0]))
            i = f.find(key)
            if i >= 0:
                out.add(f[i + len(key):])
        return out

    def has_commits_spark(self, spark: Any, path: str) -> bool:
        return bool(spark.catalog.tableExists(identifier(path)))

    # ---------------------------------------------------------------------------------------------- reads

    def metadata_location(self, path: str, storage: Storage) -> str | None:
        """The table's current metadata file, from the catalog's pointer (no Spark)."""
        name = table_name(path)
        if storage.glue_catalog:
            from etl_framework.aws import client

            glue = client("glue", storage.region, storage.endpoint_url)
            try:
                t = glue.get_table(DatabaseName=NAMESPACE, Name=name)["Table"]
            except glue.exceptions.EntityNotFoundException:
                return None
            return t.get("Parameters", {}).get("metadata_location")
        if not storage.iceberg_catalog:
            return None
        try:
            con = sqlite3.connect(f"file:{storage.iceberg_catalog}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error:
            return None
        try:
            row = con.execute("SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND "
                              "table_namespace = ? AND table_name = ?", (CATALOG, NAMESPACE, name)).fetchone()
        except sqlite3.Error:  # no table yet in a new catalog
            return None
        finally:
            con.close()
        return str(row[0]) if row else None

    def _static(self, path: str, storage: Storage, metadata_location: str | None = None) -> Any:
        from pyiceberg.table import StaticTable

        loc = metadata_location or self.metadata_location(path, storage)
        if loc is None:
            return None
        if loc.startswith("file:"):
            loc = strip_scheme(loc).removeprefix("file:")
        try:
            return StaticTable.from_metadata(loc, properties=storage.pyiceberg_properties())
        except FileNotFoundError as e:
            raise FileNotFoundError(f"the Iceberg table at {path} is damaged: its metadata file {loc} is missing "
                                    f"({e})") from e

    def commits(self, path: str, storage: Storage) -> list[CommitRecord]:
        table = self._static(path, storage)
        if table is None:
            return []
        out = []
        for snap in table.metadata.snapshots:
            summary = dict(snap.summary.additional_properties) if snap.summary else {}
            meta = {}
            for k, v in summary.items():
                if k.startswith("etl_"):
                    try:
                        meta[k] = json.loads(v) if k != "etl_run_id" else v
                    except ValueError:
                        meta[k] = v
            if meta:
                out.append(CommitRecord(int(snap.sequence_number or 0), meta))
        return sorted(out, key=lambda c: c.version)

    def arrow_dataset(self, location: str, storage: Storage, metadata_location: str | None = None) -> Any:
        import pyarrow.dataset as ds

        table = self._static(location, storage, metadata_location)
        if table is None:
            raise FileNotFoundError(f"no Iceberg table at {location} in this env's Iceberg catalog")
        return ds.dataset(table.scan().to_arrow())

    def spark_read(self, spark: Any, path: str, options: dict[str, Any] | None = None,
                   storage: Storage | None = None) -> Any:
        if storage is not None:
            ensure_catalog(spark, storage)
            ident = identifier(path)
            if spark.catalog.tableExists(ident):
                return spark.read.options(**(options or {})).table(ident)
        return spark.read.format("iceberg").options(**(options or {})).load(path)

    # ---------------------------------------------------------------------------------------------- maintenance

    def maintain(self, spark: Any, path: str, request: MaintainRequest, storage: Storage) -> MaintainResult:
        """Iceberg's Spark procedures: `rewrite_data_files` (bin-pack, or a Z-order sort by `request.zorder`),
        then `expire_snapshots` older than the retention — but never a snapshot whose bookmark delta the state
        store does not hold yet (reconciliation reads it from the snapshot summary), and never the current one."""
        from datetime import UTC, datetime, timedelta

        ensure_catalog(spark, storage)
        ident = identifier(path)
        if not spark.catalog.tableExists(ident):
            raise JobFailed(request.job, "maintain", f"no Iceberg table at {path} in this env's Iceberg catalog")
        name = f"{NAMESPACE}.{table_name(path)}"

        def count(sql: str) -> int:
            return int(spark.sql(sql).first()[0])

        files_before = count(f"SELECT count(*) FROM {ident}.files")
        snaps_before = count(f"SELECT count(*) FROM {ident}.snapshots")
        args = [f"table => '{name}'", "options => map('min-input-files', '2')"]
        if request.zorder:
            cols = ", ".join(request.zorder)
            args += ["strategy => 'sort'", f"sort_order => 'zorder({cols})'"]
        spark.sql(f"CALL {CATALOG}.system.rewrite_data_files({', '.join(args)})").collect()
        older = datetime.now(UTC) - timedelta(hours=float(request.retain_hours))
        for row in spark.sql(f"SELECT committed_at, summary FROM {ident}.snapshots").collect():
            raw = (row["summary"] or {}).get("etl_bookmark")
            try:
                b = json.loads(raw) if raw else None
            except ValueError:
                b = None
            if isinstance(b, dict) and int(b.get("version", 0)) > request.bookmarks.get(str(b.get("job")), -1):
                at = row["committed_at"]
                at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
                older = min(older, at - timedelta(milliseconds=1))
        stamp = older.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        out = spark.sql(f"CALL {CATALOG}.system.expire_snapshots(table => '{name}', "
                        f"older_than => TIMESTAMP '{stamp}', retain_last => 1)").first()
        deleted = sum(int(out[k] or 0) for k in out.asDict() if k.startswith("deleted_") and k.endswith("_count"))
        ops = ["rewrite_data_files" + (f" zorder({', '.join(request.zorder)})" if request.zorder else ""),
               f"expire_snapshots older than {stamp} UTC"]
        return MaintainResult(format=self.name, path=path.rstrip("/"), files_before=files_before,
                              files_after=count(f"SELECT count(*) FROM {ident}.files"),
                              rows=count(f"SELECT count(*) FROM {ident}"), files_deleted=deleted,
                              snapshots_expired=max(snaps_before + 1 - count(f"SELECT count(*) FROM {ident}.snapshots"), 0),
                              retain_hours=request.retain_hours, operations=ops)

    # ---------------------------------------------------------------------------------------------- catalog

    def catalog_parameters(self, location: str) -> tuple[dict[str, str], dict[str, str]]:
        # What Glue stores for an Iceberg table; `metadata_location` is added from the write's commit.
        return {"table_type": "ICEBERG"}, {}

    def current_parameters(self, path: str, storage: Storage) -> dict[str, str]:
        loc = self.metadata_location(path, storage)
        return {"metadata_location": loc} if loc else {}

    def create_ddl(self, t: Any) -> str | None:
        from etl_framework.catalog.ddl import athena_location, q, s

        cols = ",\n".join(f"  {q(c.name)} {c.type}" for c in [*t.columns, *t.partition_keys])
        lines = [f"CREATE TABLE {q(t.database)}.{q(t.name)} (", cols, ")"]
        if t.partition_keys:
            lines.append("PARTITIONED BY (" + ", ".join(q(k.name) for k in t.partition_keys) + ")")
        lines.append(f"LOCATION {s(athena_location(t.location))}")
        lines.append("TBLPROPERTIES ('table_type'='ICEBERG')")
        return "\n".join(lines)
