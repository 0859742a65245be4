"""Parquet tables with this framework's commit protocol: staging plus an atomic manifest commit.

1. Spark writes the new files to `<target>/_staging/<run_id>/` (hidden from readers: names starting with `_`).
2. The manifest is rewritten with the names the files will get (`pending`), then the files move into their
   partition folders (unique names, so nothing visible is overwritten).
3. `<target>/_etl_manifest.json` is replaced atomically (local: write to a temp file, then rename; S3: one PUT):
   it lists every committed file, and carries the run's metadata (run id, bookmark delta) and a short history of
   earlier commits' metadata. This replacement is the commit point.
4. The files it replaced (listed as `replaced`) are deleted, and the staging folder is removed.
Every reader of ours (sources, `etl query`, the crawler, resume, bookmark reconciliation) reads through the
manifest. A run killed at any moment leaves only its staging folder and its `pending` files; the next write
removes exactly those (holding the target's lock, so nothing else is writing) — never a file the table did not make.
"""

from __future__ import annotations

import json
import posixpath
from datetime import UTC, datetime
from typing import Any

from etl_framework.errors import JobFailed
from etl_framework.faults import fault
from etl_framework.tables.base import (
    STAGE,
    CommitRecord,
    CommitRequest,
    MaintainRequest,
    MaintainResult,
    TableFormat,
    WriteResult,
)
from etl_framework.tables.fs import HadoopFS, LocalFS, Storage, filesystem

MANIFEST = "_etl_manifest.json"
STAGING = "_staging"
MANIFEST_FORMAT = "etl-parquet-manifest/1"
HISTORY = 50  # earlier commits whose metadata the manifest keeps (resume, bookmark reconciliation)


def target_is_file(job: str, path: str) -> JobFailed:
    return JobFailed(job, STAGE, f"target path {path} is a file, not a folder",
                     "point target.path at a folder (a table is a folder of files), or move that file away")


def read_manifest(fs: LocalFS | HadoopFS | Storage, root: str) -> dict[str, Any] | None:
    """The commit manifest at `root` through Spark's file system or a `Storage` (no JVM); None when absent or
    unreadable (a table without a manifest has no commit of ours)."""
    text = fs.read_text(posixpath.join(root.rstrip("/"), MANIFEST))
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
    """Remove what killed writes left: the staging folder and the files a killed commit was moving in (`pending`,
    when the manifest does not list them). Only called while holding the target's lock. Returns the number of files
    removed."""
    removed = 0
    staging = posixpath.join(root, STAGING)
    if fs.exists(staging):
        fs.delete(staging)
        removed += 1
    if manifest is not None and (manifest.get("pending") or manifest.get("replaced")):
        listed = {f["path"] for f in manifest["files"]}
        for rel in [*(manifest.get("pending") or {}).get("files", []), *manifest.get("replaced", [])]:
            if rel not in listed and fs.exists(posixpath.join(root, rel)):
                fs.delete(posixpath.join(root, rel))
                removed += 1
        fs.remove_empty_dirs(root)
    return removed


def own_files(manifest: dict[str, Any] | None) -> set[str]:
    """Files this table's commits made or a killed commit of it was moving in (relative to the table)."""
    if manifest is None:
        return set()
    out = {f["path"] for f in manifest["files"]}
    out |= set((manifest.get("pending") or {}).get("files", []))
    return out | set(manifest.get("replaced", []))


def write_parquet_atomic(spark: Any, df: Any, path: str, *, mode: str, partition_by: list[str],
                         options: dict[str, Any] | None = None, run_id: str,
                         metadata: dict[str, Any] | None = None, job: str = "?",
                         evolve: bool = False) -> WriteResult:
    """Write `df` to the Parquet table at `path` with the staging + manifest commit."""
    root = path.rstrip("/")
    fs = filesystem(spark, root)
    if fs.is_file(root):
        raise target_is_file(job, root)
    existed = fs.exists(root)
    manifest = read_manifest(fs, root)
    recovered = recover(fs, root, manifest)
    if manifest is None:
        existing = fs.list_files(root) if existed else []
        if existing:  # never adopted (and so never deleted by an overwrite): the preflight names them first
            raise JobFailed(job, STAGE, f"target {root} holds files no commit of this table made: "
                            f"{', '.join(r for r, _ in existing[:5])}",
                            "point target.path at a new or empty folder of its own, or move those files away")
        manifest = {"format": MANIFEST_FORMAT, "version": 0, "run_id": None, "schema": None,
                    "partition_by": list(partition_by), "files": []}
    staging = posixpath.join(root, STAGING, run_id)
    schema_json = df.schema.json()
    if mode in ("append", "overwrite_partitions") and manifest.get("schema"):
        old, new = _schema_cols(manifest["schema"]), _schema_cols(schema_json)
        if evolve and set(old) <= set(new):
            pass  # added columns: older files read them as NULL (readers take the manifest's schema)
        elif old != new:
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
    moves = []
    for rel, size in new_files:
        dst = rel
        if fs.exists(posixpath.join(root, dst)):  # never overwrite a visible file
            stem, ext = posixpath.splitext(rel)
            dst = f"{stem}-{run_id}{ext}"
        moves.append((rel, dst, size))
    # Say what is about to move in before moving it: a run killed mid-move leaves files that the next write knows
    # are this table's own (and removes), while the commit still lists only the files committed before.
    fs.write_atomic(posixpath.join(root, MANIFEST),
                    json.dumps({**manifest, "pending": {"run_id": run_id, "files": [d for _, d, _ in moves]}}, indent=1))
    committed = []
    for rel, dst, size in moves:
        fs.rename(posixpath.join(staging, rel), posixpath.join(root, dst))
        committed.append({"path": dst, "size": size})
    fault("parquet.moved")
    history = list(manifest.get("history") or [])
    if manifest.get("run_id") or manifest.get("metadata"):
        history.append({"version": manifest.get("version", 0), "metadata": manifest.get("metadata") or {}})
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
        # files this commit replaced, deleted right after it: a run killed before that leaves them to the next
        # write's recovery (they are the table's own, no longer read)
        "replaced": [f["path"] for f in removed],
        "history": history[-HISTORY:],
    }
    fs.write_atomic(posixpath.join(root, MANIFEST), json.dumps(new_manifest, indent=1))
    fault("parquet.committed")
    for f in removed:
        fs.delete(posixpath.join(root, f["path"]))
    fs.delete(posixpath.join(root, STAGING))
    fs.remove_empty_dirs(root)
    removed_parts = {posixpath.dirname(f["path"]) for f in removed}
    return WriteResult(format="parquet", mode=mode, path=root, version=new_manifest["version"],
                       files_written=len(committed), bytes_written=sum(f["size"] for f in committed),
                       files_removed=len(removed), recovered_files=recovered,
                       partitions=sorted(p for p in set(touched) | removed_parts if p))


_SIMPLE_ARROW = {"string": "string", "long": "int64", "integer": "int32", "short": "int16", "byte": "int8",
                 "double": "float64", "float": "float32", "boolean": "bool", "date": "date32",
                 "timestamp": "timestamp[us, tz=UTC]", "timestamp_ntz": "timestamp[us]", "binary": "binary"}


def _arrow_schema(schema_json: str) -> Any:
    """An Arrow schema for an empty table from the manifest's Spark schema (simple types; others as string)."""
    import pyarrow as pa

    fields = json.loads(schema_json).get("fields", [])
    out = []
    for f in fields:
        t = f.get("type")
        name = _SIMPLE_ARROW.get(t, "string") if isinstance(t, str) and not t.startswith("decimal") else "string"
        out.append(pa.field(f["name"], pa.type_for_alias(name)))
    return pa.schema(out)


class ParquetFormat(TableFormat):
    name = "parquet"
    title = "Parquet"
    marker = MANIFEST

    def write(self, spark: Any, df: Any, path: str, *, mode: str, partition_by: list[str],
              merge_keys: list[str] | None, options: dict[str, Any], commit: CommitRequest | None,
              job: str, storage: Storage, evolve: bool = False) -> WriteResult:
        run_id = commit.run_id if commit is not None else f"w{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}"
        metadata = commit.properties() if commit is not None else None
        return write_parquet_atomic(spark, df, path, mode=mode, partition_by=partition_by, options=options,
                                    run_id=run_id, metadata=metadata, job=job, evolve=evolve)

    def schema(self, spark: Any, path: str, storage: Storage) -> Any:
        from pyspark.sql.types import StructType

        m = read_manifest(filesystem(spark, path), path.rstrip("/"))
        return StructType.fromJson(json.loads(m["schema"])) if m and m.get("schema") else None

    def claim(self, spark: Any, path: str) -> None:
        """No claim needed: a killed first write leaves only `_staging/` or files its manifest names as pending."""

    def foreign_files(self, path: str, storage: Storage) -> list[str]:
        """Every file in the folder that is not the manifest, a committed or pending file (with Hadoop's `.crc`
        beside it), staging, or the folder's claim."""
        from etl_framework.tables.base import CLAIM, OWN_DIRS

        root = path.rstrip("/")
        own = own_files(self.manifest(root, storage))
        out = []
        for rel in storage.list_all(root):
            d, name = posixpath.split(rel)
            if rel in own or rel in (MANIFEST, CLAIM) or rel.startswith(OWN_DIRS):
                continue
            if name.startswith(f".{MANIFEST}.") or (name.startswith(".") and name.endswith(".crc")
                                                    and posixpath.join(d, name[1:-4]) in own):
                continue
            out.append(rel)
        return out

    def manifest(self, path: str, storage: Storage) -> dict[str, Any] | None:
        """The table's commit manifest, read without Spark (local files or S3)."""
        return read_manifest(storage, path)

    def commits(self, path: str, storage: Storage) -> list[CommitRecord]:
        m = self.manifest(path, storage)
        if m is None:
            return []
        out = [CommitRecord(int(h.get("version", 0)), h.get("metadata") or {}) for h in m.get("history") or []]
        meta = dict(m.get("metadata") or {})
        if m.get("run_id"):
            meta.setdefault("etl_run_id", m["run_id"])
        out.append(CommitRecord(int(m.get("version", 0)), meta))
        return [c for c in out if c.metadata]

    def committed_paths(self, location: str, storage: Storage) -> list[str] | None:
        """Absolute paths of the committed files, or None for a Parquet folder this framework did not write."""
        m = self.manifest(location, storage)
        if m is None:
            return None
        root = location.rstrip("/")
        return [posixpath.join(root, f["path"]) for f in m["files"]]

    def arrow_dataset(self, location: str, storage: Storage, metadata_location: str | None = None) -> Any:
        """The manifest's files only (never what a killed or stopped write left), Hive partitions as columns."""
        import pyarrow.dataset as ds

        fs, root = storage.arrow_fs(location)
        m = self.manifest(location, storage)
        if m is None:  # a Parquet folder some other tool wrote: every data file
            return ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive",
                              exclude_invalid_files=True)
        files = [posixpath.join(root, f["path"]) for f in m["files"]]
        if not files:
            if not m.get("schema"):
                raise FileNotFoundError(f"the Parquet table {location} has no files and no schema")
            import pyarrow as pa

            schema = _arrow_schema(m["schema"])
            return ds.dataset(pa.Table.from_batches([], schema=schema))
        part = ds.partitioning(flavor="hive") if m.get("partition_by") else None
        return ds.dataset(files, filesystem=fs, format="parquet", partitioning=part, partition_base_dir=root)

    def spark_read(self, spark: Any, path: str, options: dict[str, Any] | None = None,
                   storage: Storage | None = None) -> Any:
        return read_committed_parquet(spark, path, {k: str(v) for k, v in (options or {}).items()})

    def maintain(self, spark: Any, path: str, request: MaintainRequest, storage: Storage) -> MaintainResult:
        """Compaction into a new manifest: the committed rows rewritten as one file per partition through the
        same staging + manifest commit as a write (an `overwrite` whose metadata says `compaction`; the earlier
        commits' metadata, bookmark deltas included, moves into the manifest's history). The replaced files are
        deleted right after the commit, as after any overwrite of a Parquet table: a reader that listed the old
        manifest fails; readers that need more belong on Delta or Iceberg."""
        from etl_framework.stages.transform import q

        root = path.rstrip("/")
        fs = filesystem(spark, root)
        m = read_manifest(fs, root)
        if m is None:
            raise JobFailed(request.job, "maintain", f"no Parquet table of this framework at {root} (no {MANIFEST})")
        if request.zorder:
            raise JobFailed(request.job, "maintain", "Z-order is for Delta and Iceberg tables",
                            "leave out the Z-order columns for a Parquet table")
        files = [f["path"] for f in m["files"]]
        parts = list(m.get("partition_by") or [])
        per_folder: dict[str, int] = {}
        for rel in files:
            per_folder[posixpath.dirname(rel)] = per_folder.get(posixpath.dirname(rel), 0) + 1
        if not files or max(per_folder.values()) <= 1:
            return MaintainResult(format=self.name, path=root, files_before=len(files), files_after=len(files),
                                  operations=["nothing to compact (one file per partition)"],
                                  retain_hours=request.retain_hours, version=int(m.get("version", 0)))
        cols = [f["name"] for f in json.loads(m["schema"])["fields"]]
        df = read_committed_parquet(spark, root).select(*[q(c) for c in cols])
        df = df.repartition(*[q(p) for p in parts]) if parts else df.coalesce(1)
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S%f")
        res = write_parquet_atomic(spark, df, root, mode="overwrite", partition_by=parts, run_id=f"maintain-{stamp}",
                                   metadata={"etl_operation": "compaction"}, job=request.job)
        after = read_manifest(fs, root) or {"files": []}
        return MaintainResult(format=self.name, path=root, files_before=len(files), files_after=len(after["files"]),
                              files_deleted=res.files_removed, retain_hours=request.retain_hours,
                              operations=["compaction into a new manifest"], version=res.version)
