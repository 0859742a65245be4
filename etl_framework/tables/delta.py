"""Delta Lake tables (Glue 5: Delta 3.3): native Spark Delta for writes, delta-rs for every read without a JVM.

The run's metadata rides in the commit's `userMetadata` (a JSON object: run id, bookmark delta) and the bookmark's
idempotent write id in `txnAppId`/`txnVersion`, so a re-run after a crash can neither lose nor repeat a commit.
"""

from __future__ import annotations

import json
import os
import posixpath
from typing import Any

from etl_framework.errors import JobFailed
from etl_framework.tables.base import (
    CommitRecord,
    CommitRequest,
    MaintainRequest,
    MaintainResult,
    TableFormat,
    WriteResult,
)
from etl_framework.tables.fs import Storage, is_local, s3_uri, strip_scheme

APPEND_CLASS = "etl_framework.spark.DeltaAppendStaged"
APPEND_NOTHING, APPEND_FALLBACK = -2, -3  # DeltaAppendStaged.NOTHING / FALLBACK: nothing committed, write instead


def log_dir(path: str) -> str:
    return posixpath.join(strip_scheme(path.rstrip("/")), "_delta_log")


def local_version(path: str) -> int | None:
    """Newest committed version of a local Delta table (from its log folder), or None."""
    d = log_dir(path)
    if not os.path.isdir(d):
        return None
    versions = [int(f[:20]) for f in os.listdir(d) if f.endswith(".json") and f[:20].isdigit()]
    return max(versions) if versions else None


def local_commit(path: str, version: int) -> dict[str, Any]:
    """Files, bytes and partitions of one local Delta commit, read from its JSON log entry."""
    adds, removes, info = [], [], {}
    with open(posixpath.join(log_dir(path), f"{version:020d}.json"), encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            action = json.loads(line)
            if "add" in action:
                adds.append(action["add"])
            elif "remove" in action:
                removes.append(action["remove"])
            elif "commitInfo" in action:
                info = action["commitInfo"]
    parts = set()
    for a in adds + removes:
        pv = a.get("partitionValues") or {}
        if pv:
            parts.add("/".join(f"{k}={v}" for k, v in pv.items()))
    return {"adds": adds, "removes": removes, "info": info, "partitions": sorted(parts)}


def _merge_stats(om: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in om.items() if k.startswith(("numTarget", "numSource"))}


class DeltaFormat(TableFormat):
    name = "delta"
    title = "Delta"
    marker = "_delta_log"

    def _open(self, path: str, storage: Storage) -> Any:
        """delta-rs table, or None when there is no Delta table at `path`."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        uri = s3_uri(path.rstrip("/")) if not is_local(path) else strip_scheme(path.rstrip("/"))
        try:
            return DeltaTable(uri, storage_options=storage.delta_options())
        except TableNotFoundError:
            return None

    def write(self, spark: Any, df: Any, path: str, *, mode: str, partition_by: list[str],
              merge_keys: list[str] | None, options: dict[str, Any], commit: CommitRequest | None,
              job: str, storage: Storage, evolve: bool = False) -> WriteResult:
        from delta.tables import DeltaTable

        root = path.rstrip("/")
        opts = {k: str(v) for k, v in (options or {}).items()}
        if evolve:
            opts["mergeSchema"] = "true"
        if commit is not None:
            opts["userMetadata"] = json.dumps(commit.properties(), sort_keys=True, default=str)
            if commit.txn is not None:
                opts["txnAppId"], opts["txnVersion"] = commit.txn[0], str(commit.txn[1])
        exists = DeltaTable.isDeltaTable(spark, root)
        before = local_version(root) if is_local(root) else None
        if mode == "merge" and exists:
            cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in merge_keys or [])
            # MERGE takes no writer options: commit metadata and Delta's idempotent-write ids (the bookmark's
            # txnAppId/txnVersion) go through this run's session conf instead.
            session_conf = {"spark.databricks.delta.commitInfo.userMetadata": opts.get("userMetadata"),
                            "spark.databricks.delta.write.txnAppId": opts.get("txnAppId"),
                            "spark.databricks.delta.write.txnVersion": opts.get("txnVersion"),
                            "spark.databricks.delta.schema.autoMerge.enabled": "true" if evolve else None}
            session_conf = {k: v for k, v in session_conf.items() if v is not None}
            for key, value in session_conf.items():
                spark.conf.set(key, value)
            try:
                (DeltaTable.forPath(spark, root).alias("t").merge(df.alias("s"), cond)
                 .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
            finally:
                for key in session_conf:
                    spark.conf.unset(key)
        else:
            writer = df.write.format("delta").options(**opts)
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            if mode == "overwrite":
                writer = writer.mode("overwrite").option("partitionOverwriteMode", "static")
            elif mode == "overwrite_partitions" and exists:
                writer = writer.mode("overwrite").option("partitionOverwriteMode", "dynamic")
            else:  # append, and the first write of overwrite_partitions / merge
                writer = writer.mode("append")
            writer.save(root)
        out = WriteResult(format=self.name, mode=mode, path=root)
        if is_local(root):
            after = local_version(root)
            if after is not None and after != before:
                c = local_commit(root, after)
                out.version = after
                out.files_written = len(c["adds"])
                out.bytes_written = sum(int(a.get("size", 0)) for a in c["adds"])
                out.files_removed = len(c["removes"])
                out.partitions = c["partitions"]
                out.operation = c["info"].get("operation")
                out.merge = _merge_stats(c["info"].get("operationMetrics", {}))
        else:
            row = DeltaTable.forPath(spark, root).history(1).collect()[0]
            om = row["operationMetrics"] or {}
            out.version, out.operation = row["version"], row["operation"]
            out.files_written = int(om.get("numFiles", om.get("numTargetFilesAdded", 0)))
            out.bytes_written = int(om.get("numOutputBytes", om.get("numTargetBytesAdded", 0)))
            out.merge = _merge_stats(om)
        return out

    def append_staged(self, spark: Any, path: str, staging: str, commit: CommitRequest) -> WriteResult | None:
        """The helper JAR's `DeltaAppendStaged` moves the staged files into the table's folder and adds them in one
        commit with the run's SetTransaction (Delta's idempotent-write id), so a retry commits nothing twice."""
        from etl_framework.runtime.spark import helper_available

        if commit.txn is None or not helper_available(spark, APPEND_CLASS):
            return None
        root = path.rstrip("/")
        meta = json.dumps(commit.properties(), sort_keys=True, default=str)
        version, files, size = (int(v) for v in spark._jvm.etl_framework.spark.DeltaAppendStaged.commit(
            spark._jsparkSession, root, staging.rstrip("/"), commit.run_id, commit.txn[0], commit.txn[1], meta))
        if version in (APPEND_NOTHING, APPEND_FALLBACK):
            return None
        out = WriteResult(format=self.name, mode="append", path=root, operation="WRITE")
        if version >= 0:
            out.version, out.files_written, out.bytes_written = version, files, size
        return out

    def referenced_files(self, spark: Any, root: str) -> set[str]:
        """The files the table's current version references (a stopped write changed no version)."""
        from urllib.parse import unquote

        from delta.tables import DeltaTable

        if not DeltaTable.isDeltaTable(spark, root):
            return set()
        key = (strip_scheme(root) if is_local(root) else root.split("://", 1)[1]).rstrip("/") + "/"
        out = set()
        for f in spark.read.format("delta").load(root).inputFiles():
            f = unquote(str(f))
            i = f.find(key)
            if i >= 0:
                out.add(f[i + len(key):])
        return out

    def schema(self, spark: Any, path: str, storage: Storage) -> Any:
        from delta.tables import DeltaTable

        root = path.rstrip("/")
        return DeltaTable.forPath(spark, root).toDF().schema if DeltaTable.isDeltaTable(spark, root) else None

    def has_commits_spark(self, spark: Any, path: str) -> bool:
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(spark, path.rstrip("/")))

    def commits(self, path: str, storage: Storage) -> list[CommitRecord]:
        dt = self._open(path, storage)
        if dt is None:
            return []
        out = []
        for c in dt.history():
            try:
                meta = json.loads(c.get("userMetadata") or "{}")
            except ValueError:
                continue
            if isinstance(meta, dict) and meta:
                out.append(CommitRecord(version=int(c.get("version", 0)), metadata=meta))
        return sorted(out, key=lambda c: c.version)

    def bookmark_deltas(self, path: str, job: str, after_version: int, storage: Storage) -> list[dict[str, Any]]:
        """The table's transaction version for the job's app id says whether anything is missing: only then is the
        history scanned (one load of the log on every run's hot path)."""
        from etl_framework.incremental import app_id

        dt = self._open(path, storage)
        if dt is None:
            return []
        committed = dt.transaction_version(app_id(job))
        if committed is None or committed <= after_version:
            return []
        return super().bookmark_deltas(path, job, after_version, storage)

    def arrow_dataset(self, location: str, storage: Storage, metadata_location: str | None = None) -> Any:
        dt = self._open(location, storage)
        if dt is None:
            raise FileNotFoundError(f"{location} is not a Delta table (no _delta_log)")
        return dt.to_pyarrow_dataset()

    def spark_read(self, spark: Any, path: str, options: dict[str, Any] | None = None,
                   storage: Storage | None = None) -> Any:
        return spark.read.format("delta").options(**(options or {})).load(path)

    def maintain(self, spark: Any, path: str, request: MaintainRequest, storage: Storage) -> MaintainResult:
        """OPTIMIZE (Z-ordered by `request.zorder` when given), then VACUUM keeping every file a version of the
        last `retain_hours` references. OPTIMIZE is a `dataChange=false` commit: the rows, the commit history with
        its bookmark deltas and the idempotent-write ids (txn) stay as they were; a reader of an older version
        keeps its files for the retention. Delta's own check refuses a retention under its 7-day default."""
        import math

        from delta.tables import DeltaTable as SparkDelta

        root = path.rstrip("/")
        dt = self._open(root, storage)
        if dt is None:
            raise JobFailed(request.job, "maintain", f"no Delta table at {root} (no _delta_log)")
        before = len(dt.file_uris())
        table = SparkDelta.forPath(spark, root)
        parts = set(dt.metadata().partition_columns)
        bad = [c for c in request.zorder if c in parts]
        if bad:
            raise JobFailed(request.job, "maintain", f"cannot Z-order {root} by its partition column(s) "
                            f"{', '.join(bad)}", "Z-order by other columns (partitions are already grouped)")
        known = {f.name for f in table.toDF().schema.fields}
        unknown = [c for c in request.zorder if c not in known]
        if unknown:
            raise JobFailed(request.job, "maintain", f"{root} has no column {', '.join(unknown)} to Z-order by",
                            f"its columns: {', '.join(sorted(known))}")
        # a MERGE of this session sets commit metadata through the session conf; an OPTIMIZE must not carry it
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
        opt = table.optimize()
        (opt.executeZOrderBy(*request.zorder) if request.zorder else opt.executeCompaction()).collect()
        hours = math.ceil(request.retain_hours)  # rounded up: never less than asked
        after = self._open(root, storage)
        assert after is not None
        deleted = self._vacuum(spark, table, after, hours)
        after = self._open(root, storage)
        assert after is not None
        ops = [f"OPTIMIZE ZORDER BY ({', '.join(request.zorder)})" if request.zorder else "OPTIMIZE",
               f"VACUUM RETAIN {hours} HOURS"]
        return MaintainResult(format=self.name, path=root, files_before=before, files_after=len(after.file_uris()),
                              rows=after.to_pyarrow_dataset().count_rows(), files_deleted=deleted,
                              retain_hours=request.retain_hours, operations=ops, version=after.version())

    def _vacuum(self, spark: Any, table: Any, dt: Any, hours: int) -> int:
        """VACUUM through delta-rs (milliseconds, no Spark job: Spark's VACUUM runs several jobs and lists the
        table in 200 tasks, the slowest part of a maintenance of a small table by far). It removes only files that
        commits removed more than `hours` ago (Delta's retention check on), and neither writes a checkpoint nor
        expires log entries (the history holds the bookmark deltas). A table delta-rs cannot write (a table
        feature it lacks) is vacuumed by Spark's Delta instead. Returns how many files were deleted."""
        from deltalake import PostCommitHookProperties
        from deltalake.exceptions import DeltaError

        try:
            return len(dt.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=True,
                                 post_commithook_properties=PostCommitHookProperties(
                                     create_checkpoint=False, cleanup_expired_logs=False)))
        except DeltaError:
            pass
        listing = "spark.databricks.delta.vacuum.fileListing.parallelism"  # 200 tasks by default
        own = spark.conf.get(listing, None) is None
        if own:
            spark.conf.set(listing, str(max(int(spark.sparkContext.defaultParallelism), 1)))
        try:
            table.vacuum(float(hours))
        finally:
            if own:
                spark.conf.unset(listing)
        return 0  # Spark's Python API does not say

    def catalog_parameters(self, location: str) -> tuple[dict[str, str], dict[str, str]]:
        # How Glue's native Delta crawler and Athena record a Delta Lake table: Athena reads the schema and files
        # from the transaction log at `path`.
        return {"table_type": "DELTA", "spark.sql.sources.provider": "delta"}, {"path": location}

    def create_ddl(self, t: Any) -> str | None:
        from etl_framework.catalog.ddl import athena_location, q, s

        return (f"CREATE EXTERNAL TABLE {q(t.database)}.{q(t.name)}\nLOCATION {s(athena_location(t.location))}\n"
                "TBLPROPERTIES ('table_type'='DELTA')")
