"""Write (SPEC §5): the partitioned, atomic write of the job's result, then the rows set aside.

Delta targets use native Spark Delta exactly as Glue 5 does: `append`, `overwrite` (static: the whole table),
`overwrite_partitions` (Delta's dynamic partition overwrite: only the partitions present in the data), `merge`
(`DeltaTable.merge` on `merge_keys`: update matches, insert the rest). Delta's log gives atomicity.

Parquet targets get the same guarantee from a staging folder and a commit step:
1. Spark writes the new files to `<target>/_staging/<run_id>/` (hidden from readers: names starting with `_`).
2. The files move into their partition folders (unique names, so nothing visible is overwritten).
3. `<target>/_etl_manifest.json` is replaced atomically (write to a temp file, then rename): it lists every
   committed file. This rename is the commit point.
4. Files no longer listed (replaced partitions) are deleted, and the staging folder is removed.
Readers that honour the manifest (this framework's parquet sources, the catalog, `etl query`) see the old table or
the new one. A run killed at any moment leaves only files the manifest does not list; the next write removes them
(holding the target's lock, so nothing else is writing). A plain directory listing (e.g. `spark.read.parquet`)
also sees old or new, except during the milliseconds between steps 2 and 4.

`ETL_FAULT_KILL_AT=<point>` (tests only) kills the process with SIGKILL at a named point of the commit.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import signal
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from etl_framework.errors import JobFailed

if TYPE_CHECKING:
    from etl_framework.config.model import JobConfig
    from etl_framework.engine.job import JobRunState

STAGE = "write"
MANIFEST = "_etl_manifest.json"
STAGING = "_staging"
MANIFEST_FORMAT = "etl-parquet-manifest/1"


def fault(point: str) -> None:
    """Test hook: die exactly here when ETL_FAULT_KILL_AT names this point."""
    if os.environ.get("ETL_FAULT_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def strip_scheme(path: str) -> str:
    return path.removeprefix("file://")


def target_key(path: str) -> str:
    """The identity of a target for locking: absolute local path or URI, without a trailing slash."""
    if is_local(path):
        return os.path.abspath(strip_scheme(path)).rstrip("/") or "/"
    return path.rstrip("/").replace("s3a://", "s3://").replace("s3n://", "s3://")


def sibling_path(path: str, suffix: str) -> str:
    return path.rstrip("/") + suffix


def bad_records_path(config: JobConfig) -> str:
    return sibling_path(config.target.path, "_bad_records")


def quarantine_path(config: JobConfig) -> str:
    return config.target.quarantine_path or sibling_path(config.target.path, "_quarantine")


# ------------------------------------------------------------------------------------------------ file systems


class LocalFS:
    """Local files (POSIX rename is atomic within one file system)."""

    def exists(self, p: str) -> bool:
        return os.path.exists(strip_scheme(p))

    def is_file(self, p: str) -> bool:
        return os.path.isfile(strip_scheme(p))

    def list_files(self, root: str) -> list[tuple[str, int]]:
        """Data files under root, relative, skipping hidden names (`_x`, `.x`) at every level."""
        base = strip_scheme(root)
        out = []
        for dirpath, dirs, files in os.walk(base):
            dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
            for f in sorted(files):
                if f.startswith(("_", ".")):
                    continue
                full = os.path.join(dirpath, f)
                out.append((os.path.relpath(full, base).replace(os.sep, "/"), os.path.getsize(full)))
        return out

    def rename(self, src: str, dst: str) -> None:
        d = strip_scheme(dst)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        os.rename(strip_scheme(src), d)

    def delete(self, p: str) -> None:
        q = strip_scheme(p)
        if os.path.isdir(q):
            shutil.rmtree(q, ignore_errors=True)
        elif os.path.lexists(q):
            os.remove(q)

    def read_text(self, p: str) -> str | None:
        try:
            with open(strip_scheme(p), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_atomic(self, p: str, text: str) -> None:
        q = strip_scheme(p)
        os.makedirs(os.path.dirname(q), exist_ok=True)
        tmp = os.path.join(os.path.dirname(q), f".{os.path.basename(q)}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, q)
        try:
            dfd = os.open(os.path.dirname(q), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass

    def remove_empty_dirs(self, root: str) -> None:
        base = strip_scheme(root)
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda t: -len(t[0])):
            if dirpath != base and not os.listdir(dirpath):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass


class HadoopFS:
    """Any Hadoop file system (s3a://, hdfs://) through Spark's JVM; S3 object puts are atomic."""

    def __init__(self, spark: Any, path: str) -> None:
        self.jvm = spark._jvm
        self.conf = spark._jsc.hadoopConfiguration()
        self.fs = self._p(path).getFileSystem(self.conf)

    def _p(self, p: str) -> Any:
        return self.jvm.org.apache.hadoop.fs.Path(p)

    def exists(self, p: str) -> bool:
        return bool(self.fs.exists(self._p(p)))

    def is_file(self, p: str) -> bool:
        return bool(self.fs.isFile(self._p(p)))

    def list_files(self, root: str) -> list[tuple[str, int]]:
        if not self.exists(root):
            return []
        base = str(self.fs.makeQualified(self._p(root)).toString()).rstrip("/")
        it = self.fs.listFiles(self._p(root), True)
        out = []
        while it.hasNext():
            st = it.next()
            full = str(st.getPath().toString())
            rel = full[len(base) + 1:] if full.startswith(base + "/") else full
            if any(part.startswith(("_", ".")) for part in rel.split("/")):
                continue
            out.append((rel, int(st.getLen())))
        return sorted(out)

    def rename(self, src: str, dst: str) -> None:
        d = self._p(dst)
        self.fs.mkdirs(d.getParent())
        if not self.fs.rename(self._p(src), d):
            raise OSError(f"cannot move {src} to {dst}")

    def delete(self, p: str) -> None:
        self.fs.delete(self._p(p), True)

    def read_text(self, p: str) -> str | None:
        if not self.exists(p):
            return None
        stream = self.fs.open(self._p(p))
        try:
            return str(self.jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()

    def write_atomic(self, p: str, text: str) -> None:
        tmp = posixpath.join(posixpath.dirname(p), f".{posixpath.basename(p)}.{uuid.uuid4().hex}.tmp")
        if p.startswith(("s3://", "s3a://", "s3n://")):
            tmp = p  # an S3 PUT replaces the object atomically
        out = self.fs.create(self._p(tmp), True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
        if tmp != p:
            self.fs.delete(self._p(p), False)
            self.fs.rename(self._p(tmp), self._p(p))

    def remove_empty_dirs(self, root: str) -> None:
        return None  # object stores have no empty folders to leave behind


def filesystem(spark: Any, path: str) -> LocalFS | HadoopFS:
    return LocalFS() if is_local(path) else HadoopFS(spark, path)


# ------------------------------------------------------------------------------------------------ manifests


def read_manifest(fs: LocalFS | HadoopFS, root: str) -> dict[str, Any] | None:
    text = fs.read_text(posixpath.join(root, MANIFEST))
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "files" in data else None


def committed_files(spark: Any, path: str) -> list[str] | None:
    """Absolute paths of the committed files of a framework-written Parquet table, or None (no manifest)."""
    root = path.rstrip("/")
    fs = filesystem(spark, root)
    manifest = read_manifest(fs, root)
    if manifest is None:
        return None
    return [posixpath.join(root, f["path"]) for f in manifest["files"]]


def read_committed_parquet(spark: Any, path: str, options: dict[str, str] | None = None) -> Any:
    """The committed state of a Parquet table written by this framework (its manifest's files only)."""
    from pyspark.sql.types import StructType

    root = path.rstrip("/")
    manifest = read_manifest(filesystem(spark, root), root)
    if manifest is None:
        return spark.read.options(**(options or {})).parquet(root)
    schema = StructType.fromJson(json.loads(manifest["schema"])) if manifest.get("schema") else None
    files = [posixpath.join(root, f["path"]) for f in manifest["files"]]
    if not files:
        if schema is None:
            raise ValueError(f"the Parquet table {root} has no files and no schema")
        return spark.createDataFrame([], schema)
    reader = spark.read.options(**(options or {})).option("basePath", root)
    if schema is not None:
        reader = reader.schema(schema)
    return reader.parquet(*files)


def _schema_cols(schema_json: str) -> list[tuple[str, str]]:
    from pyspark.sql.types import StructType

    st = StructType.fromJson(json.loads(schema_json))
    return [(f.name.lower(), f.dataType.simpleString()) for f in st.fields]


def recover(fs: LocalFS | HadoopFS, root: str, manifest: dict[str, Any] | None) -> int:
    """Remove what killed writes left: staging folders and files the manifest does not list. Only called while
    holding the target's lock. Returns the number of files removed."""
    removed = 0
    staging = posixpath.join(root, STAGING)
    if fs.exists(staging):
        fs.delete(staging)
        removed += 1
    if manifest is not None:
        listed = {f["path"] for f in manifest["files"]}
        for rel, _size in fs.list_files(root):
            if rel not in listed:
                fs.delete(posixpath.join(root, rel))
                removed += 1
        fs.remove_empty_dirs(root)
    return removed


def write_parquet_atomic(spark: Any, df: Any, path: str, *, mode: str, partition_by: list[str],
                         options: dict[str, Any] | None = None, run_id: str,
                         metadata: dict[str, Any] | None = None, job: str = "?") -> dict[str, Any]:
    """Write `df` to the Parquet table at `path` with the staging + manifest commit. Returns write metrics."""
    root = path.rstrip("/")
    fs = filesystem(spark, root)
    if fs.is_file(root):
        raise target_is_file(job, root)
    existed = fs.exists(root)
    manifest = read_manifest(fs, root)
    recovered = recover(fs, root, manifest)
    pinned = manifest is not None
    if manifest is None:
        existing = fs.list_files(root) if existed else []
        manifest = {"format": MANIFEST_FORMAT, "version": 0, "run_id": None, "schema": None,
                    "partition_by": list(partition_by), "files": [{"path": r, "size": s} for r, s in existing]}
    staging = posixpath.join(root, STAGING, run_id)
    schema_json = df.schema.json()
    if mode in ("append", "overwrite_partitions") and manifest.get("schema"):
        old, new = _schema_cols(manifest["schema"]), _schema_cols(schema_json)
        if old != new:
            raise JobFailed(job, STAGE, f"the data's columns differ from the Parquet table {root}: table has "
                            f"{', '.join(f'{n} {t}' for n, t in old)}; data has "
                            f"{', '.join(f'{n} {t}' for n, t in new)}",
                            "make the transform produce the table's columns, or use mode: overwrite to replace "
                            "the table; the target was not changed")
        if manifest.get("partition_by") and list(manifest["partition_by"]) != list(partition_by):
            raise JobFailed(job, STAGE, f"the table {root} is partitioned by {manifest['partition_by']}, the job "
                            f"by {partition_by}", "use the table's partition_by, or mode: overwrite")
    writer = df.write.mode("overwrite").option("partitionOverwriteMode", "static")
    writer = writer.options(**{k: str(v) for k, v in (options or {}).items()})
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    try:
        writer.parquet(staging)
    except BaseException:
        fs.delete(posixpath.join(root, STAGING))
        if not existed:
            fs.delete(root)
        raise
    fault("parquet.staged")
    if not pinned:
        # Pin what is there now (nothing, or files written by something else) before moving anything in, so a
        # run killed mid-commit never makes its partial files look committed.
        fs.write_atomic(posixpath.join(root, MANIFEST), json.dumps(manifest, indent=1))
    new_files = fs.list_files(staging)
    touched = sorted({posixpath.dirname(rel) for rel, _ in new_files})
    old_files = list(manifest["files"])
    if mode == "overwrite" or (mode == "overwrite_partitions" and not partition_by):
        keep: list[dict[str, Any]] = []
    elif mode == "overwrite_partitions":
        keep = [f for f in old_files if posixpath.dirname(f["path"]) not in set(touched)]
    else:
        keep = old_files
    kept = {f["path"] for f in keep}
    removed = [f for f in old_files if f["path"] not in kept]
    committed = []
    for rel, size in new_files:
        dst = rel
        if fs.exists(posixpath.join(root, dst)):  # never overwrite a visible file
            stem, ext = posixpath.splitext(rel)
            dst = f"{stem}-{run_id}{ext}"
        fs.rename(posixpath.join(staging, rel), posixpath.join(root, dst))
        committed.append({"path": dst, "size": size})
    fault("parquet.moved")
    new_manifest = {
        "format": MANIFEST_FORMAT,
        "version": int(manifest.get("version", 0)) + 1,
        "run_id": run_id,
        "previous_run_id": manifest.get("run_id"),
        "committed_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "mode": mode,
        "partition_by": list(partition_by),
        "schema": schema_json,
        "metadata": metadata or {},
        "files": keep + committed,
    }
    fs.write_atomic(posixpath.join(root, MANIFEST), json.dumps(new_manifest, indent=1))
    fault("parquet.committed")
    for f in removed:
        fs.delete(posixpath.join(root, f["path"]))
    fs.delete(posixpath.join(root, STAGING))
    fs.remove_empty_dirs(root)
    removed_parts = {posixpath.dirname(f["path"]) for f in removed}
    partitions = sorted(p for p in set(touched) | removed_parts if p)
    return {
        "format": "parquet", "mode": mode, "path": root, "table_version": new_manifest["version"],
        "files_written": len(committed), "bytes_written": sum(f["size"] for f in committed),
        "files_removed": len(removed), "partitions_touched": len(partitions), "partitions": partitions[:100],
        "recovered_files": recovered,
    }


# ------------------------------------------------------------------------------------------------ delta


def delta_log_dir(path: str) -> str:
    return posixpath.join(strip_scheme(path.rstrip("/")), "_delta_log")


def delta_version(path: str) -> int | None:
    """Newest committed version of a local Delta table (from its log folder), or None."""
    d = delta_log_dir(path)
    if not os.path.isdir(d):
        return None
    versions = [int(f[:20]) for f in os.listdir(d) if f.endswith(".json") and f[:20].isdigit()]
    return max(versions) if versions else None


def delta_commit(path: str, version: int) -> dict[str, Any]:
    """Files, bytes and partitions of one local Delta commit, read from its JSON log entry."""
    adds, removes, info = [], [], {}
    with open(posixpath.join(delta_log_dir(path), f"{version:020d}.json"), encoding="utf-8") as f:
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


def write_delta(spark: Any, df: Any, path: str, *, mode: str, partition_by: list[str],
                merge_keys: list[str] | None = None, options: dict[str, Any] | None = None,
                metadata: dict[str, Any] | None = None, job: str = "?") -> dict[str, Any]:
    """Write `df` to the Delta table at `path` with native Spark Delta. Returns write metrics."""
    from delta.tables import DeltaTable

    root = path.rstrip("/")
    opts = {k: str(v) for k, v in (options or {}).items()}
    if metadata:
        opts["userMetadata"] = json.dumps(metadata, sort_keys=True, default=str)
    exists = DeltaTable.isDeltaTable(spark, root)
    before = delta_version(root) if is_local(root) else None
    merge_stats: dict[str, Any] = {}
    if mode == "merge" and exists:
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in merge_keys or [])
        # MERGE takes no writer options: commit metadata and Delta's idempotent-write ids (the bookmark's
        # txnAppId/txnVersion) go through this run's session conf instead.
        session_conf = {"spark.databricks.delta.commitInfo.userMetadata": opts.get("userMetadata"),
                        "spark.databricks.delta.write.txnAppId": opts.get("txnAppId"),
                        "spark.databricks.delta.write.txnVersion": opts.get("txnVersion")}
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
    out: dict[str, Any] = {"format": "delta", "mode": mode, "path": root}
    if is_local(root):
        after = delta_version(root)
        if after is not None and after != before:
            c = delta_commit(root, after)
            om = c["info"].get("operationMetrics", {})
            out.update({
                "table_version": after,
                "files_written": len(c["adds"]),
                "bytes_written": sum(int(a.get("size", 0)) for a in c["adds"]),
                "files_removed": len(c["removes"]),
                "partitions_touched": len(c["partitions"]),
                "partitions": c["partitions"][:100],
                "operation": c["info"].get("operation"),
            })
            merge_stats = {k: int(v) for k, v in om.items() if k.startswith(("numTarget", "numSource"))}
    else:
        row = DeltaTable.forPath(spark, root).history(1).collect()[0]
        om = row["operationMetrics"] or {}
        out.update({"table_version": row["version"], "operation": row["operation"],
                    "files_written": int(om.get("numFiles", om.get("numTargetFilesAdded", 0))),
                    "bytes_written": int(om.get("numOutputBytes", om.get("numTargetBytesAdded", 0)))})
        merge_stats = {k: int(v) for k, v in om.items() if k.startswith(("numTarget", "numSource"))}
    if merge_stats:
        out["merge"] = merge_stats
    return out


# ------------------------------------------------------------------------------------------------ the stage


def target_is_file(job: str, path: str) -> JobFailed:
    return JobFailed(job, STAGE, f"target path {path} is a file, not a folder",
                     "point target.path at a folder (a table is a folder of files), or move that file away")


def preflight(config: JobConfig) -> None:
    """Checks that need no Spark, run before anything is read: the target is a usable folder."""
    t = config.target
    if not is_local(t.path):
        return
    p = strip_scheme(t.path).rstrip("/")
    if os.path.isfile(p):
        raise target_is_file(config.job, p)
    parent = os.path.dirname(p)
    while parent and parent != "/" and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and os.path.isfile(parent):
        raise JobFailed(config.job, STAGE, f"target path {p} is inside {parent}, which is a file",
                        "point target.path at a folder, or move that file away")
    if os.path.isdir(p):
        has_log = os.path.isdir(os.path.join(p, "_delta_log"))
        has_data = any(not n.startswith((".", "_")) for n in os.listdir(p))
        if t.format == "delta" and has_data and not has_log:
            raise JobFailed(config.job, STAGE, f"target {p} holds files but is not a Delta table (no _delta_log)",
                            "point target.path at an empty folder or a Delta table, or set target.format to "
                            "the format the folder holds")
        if t.format == "parquet" and has_log:
            raise JobFailed(config.job, STAGE, f"target {p} is a Delta table, but target.format is parquet",
                            "set target.format: delta, or write to another folder")


def write_table(state: JobRunState, df: Any, path: str, *, fmt: str, mode: str, partition_by: list[str],
                merge_keys: list[str] | None = None, options: dict[str, Any] | None = None,
                metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write any DataFrame of this run to a table (the target, bad records, quarantine)."""
    if fmt == "delta":
        return write_delta(state.spark, df, path, mode=mode, partition_by=partition_by, merge_keys=merge_keys,
                           options=options, metadata=metadata, job=state.job)
    return write_parquet_atomic(state.spark, df, path, mode=mode, partition_by=partition_by, options=options,
                                run_id=state.run_id, metadata=metadata, job=state.job)


def run_write(state: JobRunState) -> None:
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from etl_framework.config.interpolate import resolve_secrets

    t = state.config.target
    preflight(state.config)
    missing = [c for c in t.partition_by + t.merge_keys if c not in state.df.columns]
    if missing:
        raise JobFailed(state.job, STAGE, f"the data has no column {', '.join(missing)} named in target "
                        f"partition_by/merge_keys (columns: {', '.join(state.df.columns)})",
                        "produce that column in the transform, or fix target.partition_by / merge_keys")
    if state.df is state.extras.get("transform_df") and "transform" in state.observations:
        obs, df = state.observations["transform"], state.df  # one count node fewer in the plan
    else:
        obs = Observation()
        df = obs._on(state.df, F.count(F.lit(1)).alias("rows"))
    options = {**resolve_secrets(dict(t.options)), **state.write_options}
    state.log.info(f"{t.mode} to {t.format} {t.path}"
                   + (f" partitioned by {', '.join(t.partition_by)}" if t.partition_by else ""), STAGE)
    fault("write.start")
    try:
        result = write_table(state, df, t.path, fmt=t.format, mode=t.mode, partition_by=list(t.partition_by),
                             merge_keys=list(t.merge_keys), options=options, metadata=state.commit_metadata or None)
    except Exception as e:
        stop = _quality_stop(state, e)
        if stop is not None:
            raise stop from None
        raise
    fault("write.committed")
    from etl_framework.engine.job import observed

    rows = observed(obs)
    if t.mode == "merge" and "merge" in result:
        m = result["merge"]
        rows = m.get("numSourceRows", rows)
        result["rows_inserted"] = m.get("numTargetRowsInserted")
        result["rows_updated"] = m.get("numTargetRowsUpdated")
    result["rows_written"] = rows
    state.write_result = result
    state.metrics[STAGE].update(result)
    state.metrics[STAGE]["rows_in"] = rows
    state.metrics[STAGE]["rows_out"] = rows
    _write_set_aside(state)


def _quality_stop(state: JobRunState, error: BaseException) -> JobFailed | None:
    """A quality gate checked inside this write (`quality.inline`) and stopped it: its QualityGateFailed."""
    if "quality_inline" not in state.extras:
        return None
    from etl_framework.stages.quality import gate_stop

    return gate_stop(state, error)


def _write_set_aside(state: JobRunState) -> None:
    """Right after the target's commit: the quality gate's quarantined rows (through the quality stage's own
    idempotent `write_quarantine` when it is installed), then malformed input rows (bad_records: quarantine)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from etl_framework.engine.job import observed

    if state.config.quality and not state.extras.get("quarantine_written"):
        try:
            from etl_framework.stages.quality import finish_gate, write_quarantine
        except ImportError:
            finish_gate = write_quarantine = None
        if finish_gate is not None and write_quarantine is not None:
            finish_gate(state)  # an inline gate's verdict, from the counts of the write's own pass
            write_quarantine(state)
            state.extras["quarantine_written"] = True
    if state.bad_records:
        bad = None
        for df in state.bad_records.values():
            bad = df if bad is None else bad.unionByName(df)
        obs = Observation()
        bad = obs._on(bad, F.count(F.lit(1)).alias("rows"))
        path = bad_records_path(state.config)
        res = write_parquet_atomic(state.spark, bad, path, mode="append", partition_by=[], run_id=state.run_id,
                                   job=state.job)
        n = observed(obs)
        state.metrics[STAGE]["bad_records"] = n
        state.metrics[STAGE]["bad_records_path"] = res["path"]
        if n:
            state.log.warning(f"{n:,} malformed input row(s) set aside in {res['path']}", STAGE)
    if state.quarantine_df is not None and not state.extras.get("quarantine_written"):
        obs = Observation()
        q = obs._on(state.quarantine_df, F.count(F.lit(1)).alias("rows"))
        path = quarantine_path(state.config)
        res = write_delta(state.spark, q, path, mode="append", partition_by=[], job=state.job)
        n = observed(obs)
        state.metrics[STAGE]["quarantined_rows"] = n
        state.metrics[STAGE]["quarantine_path"] = res["path"]
