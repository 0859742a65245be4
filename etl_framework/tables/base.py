"""The one interface every table format implements (SPEC §11). Callers never know what a Delta log, a Parquet
manifest or an Iceberg snapshot is: they ask the format.

A format answers, for a table at a path:
- `preflight`: may a job write here (before any data is read; no Spark)?
- `write`: commit a DataFrame with the run's commit metadata (run id, bookmark delta) in the same commit, and say
  what was committed (`WriteResult`);
- `commits`: the run ids and metadata of the table's commits, read without Spark — from which "has run R
  committed?" and "the bookmark deltas committed after version V" follow;
- `arrow_dataset` / `spark_read`: the committed rows (for `etl query` without a JVM, and for Spark sources);
- `catalog_parameters` / `ddl`: what the Glue Data Catalog stores for the table and Athena's DDL;
- `begin_write` / `abort_write`: remove exactly the files a stopped write left (never a committed file);
- `maintain`: compact small files (and remove what no reader may still need), keeping rows and bookmarks.
"""

from __future__ import annotations

import json
import posixpath
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from etl_framework.errors import JobFailed

if TYPE_CHECKING:
    from etl_framework.tables.fs import Storage

STAGE = "write"
CLAIM = "_etl_table.json"  # written into a new table's folder before its first write: the folder is this table's
# Folders this framework's own writes make inside a table's folder before (or without) a commit: staging of Parquet
# writes and of quarantined rows, and rejected quarantine batches.
OWN_DIRS = ("_staging/", "_etl_staging/", "_etl_rejected/")
RUN_ID_KEY = "etl_run_id"
BOOKMARK_KEY = "etl_bookmark"


@dataclass(frozen=True)
class CommitRequest:
    """What rides in the commit of one write: the run id and the bookmark delta (SPEC §6), plus an idempotent
    write id (`txn`: app id and version) for formats that dedupe on it (Delta's txnAppId/txnVersion)."""

    run_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    txn: tuple[str, int] | None = None

    def properties(self) -> dict[str, Any]:
        return {RUN_ID_KEY: self.run_id, **self.metadata}


@dataclass
class WriteResult:
    """What one write committed."""

    format: str
    mode: str
    path: str
    version: int | None = None  # Delta version, Parquet manifest version, Iceberg snapshot sequence number
    snapshot_id: int | None = None
    files_written: int = 0
    bytes_written: int = 0
    files_removed: int = 0
    partitions: list[str] = field(default_factory=list)
    partition_count: int | None = None  # when the format counts partitions without listing them (Iceberg)
    operation: str | None = None
    merge: dict[str, int] = field(default_factory=dict)
    recovered_files: int = 0
    metadata_location: str | None = None  # Iceberg: the table's current metadata file after this commit

    def metrics(self) -> dict[str, Any]:
        """The write stage's metrics (run records, `etl show`, the report)."""
        out: dict[str, Any] = {"format": self.format, "mode": self.mode, "path": self.path}
        if self.version is not None:
            out.update({"table_version": self.version, "files_written": self.files_written,
                        "bytes_written": self.bytes_written, "files_removed": self.files_removed,
                        "partitions_touched": self.partition_count if self.partition_count is not None
                        else len(self.partitions), "partitions": self.partitions[:100]})
        for key in ("snapshot_id", "operation", "metadata_location"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.recovered_files:
            out["recovered_files"] = self.recovered_files
        if self.merge:
            out["merge"] = dict(self.merge)
        return out


DEFAULT_RETAIN_HOURS = 168.0  # Delta's own VACUUM default: a reader of an older version has a week


@dataclass
class MaintainRequest:
    """What `etl maintain` asks of a table. `retain_hours`: files (Delta) and snapshots (Iceberg) replaced less
    long ago stay, for readers and running jobs that began before (the caller never passes less than the oldest
    running job's age). `bookmarks`: job -> bookmark version the state store holds; a commit carrying a newer
    bookmark delta is what reconciliation still needs, and is never expired."""

    zorder: list[str] = field(default_factory=list)
    retain_hours: float = DEFAULT_RETAIN_HOURS
    bookmarks: dict[str, int] = field(default_factory=dict)
    job: str = "maintain"  # named in errors


@dataclass
class MaintainResult:
    """What one maintenance of a table did (printed, and kept as metrics of a workflow's maintain node)."""

    format: str
    path: str
    files_before: int
    files_after: int
    rows: int | None = None
    files_deleted: int = 0  # physically removed (vacuum, expired snapshots' files, replaced Parquet files)
    snapshots_expired: int = 0
    retain_hours: float = DEFAULT_RETAIN_HOURS
    operations: list[str] = field(default_factory=list)
    version: int | None = None

    def metrics(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        out["operations"] = list(self.operations)
        return out


@dataclass(frozen=True)
class CommitRecord:
    """One commit of a table as this framework reads it back: its version and the run metadata it carries."""

    version: int
    metadata: dict[str, Any]

    @property
    def run_id(self) -> str | None:
        return self.metadata.get(RUN_ID_KEY)

    @property
    def bookmark(self) -> dict[str, Any] | None:
        b = self.metadata.get(BOOKMARK_KEY)
        if isinstance(b, str):
            try:
                b = json.loads(b)
            except ValueError:
                return None
        return b if isinstance(b, dict) else None


class TableFormat(ABC):
    """A table format. Implementations are stateless singletons (`tables.table_format(name)`)."""

    name: ClassVar[str]
    title: ClassVar[str]  # as people write it: Delta, Iceberg, Parquet
    marker: ClassVar[str]  # the entry in a table's folder that says "a table of this format lives here"

    # ---------------------------------------------------------------------------------------------- checks

    def preflight(self, job: str, path: str, storage: Storage) -> None:
        """Refuse a folder that is not this table's own (no Spark, before any data is read): another format's
        table, or any file that no commit of this table made — a job writes only its own table, and a folder it
        would adopt could be a lake root, a project or another table. An empty or absent folder is claimed."""
        from etl_framework.tables import FORMATS

        root = path.rstrip("/")
        for other in FORMATS.values():
            if other.name != self.name and other.detect(root, storage):
                raise JobFailed(job, STAGE, f"target {root} holds an existing {other.name} table ({other.marker} found), but "
                                f"target.format is {self.name}",
                                f"set target.format: {other.name}, or write to another folder")
        own = self.detect(root, storage) or storage.exists(posixpath.join(root, CLAIM))
        if own:
            foreign = self.foreign_files(root, storage)
        else:
            foreign = [f for f in storage.list_all(root, limit=50) if not f.startswith(OWN_DIRS)][:6]
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            what = f"this {self.title} table's commits" if own else "this job (it is no table of this framework)"
            raise JobFailed(job, STAGE, f"target {root} holds files not written by {what}: {shown}",
                            "a job writes only its own table: point target.path at a new or empty folder of its "
                            "own (nothing in this one was touched), or move those files away")

    def claim(self, spark: Any, path: str) -> None:
        """Mark a new table's folder as this table's before its first write (through Spark's file system, which
        reaches the target as the write will), so that what a killed first write leaves there is known to be its
        own and not refused as foreign by the next run."""
        from etl_framework.tables.fs import filesystem

        fs = filesystem(spark, path)
        root = path.rstrip("/")
        if not fs.exists(posixpath.join(root, self.marker)) and not fs.exists(posixpath.join(root, CLAIM)):
            fs.write_atomic(posixpath.join(root, CLAIM), json.dumps({"format": self.name}))

    def foreign_files(self, path: str, storage: Storage) -> list[str]:
        """Files in this table's folder that none of its commits or its own writes made (Parquet checks its
        manifest; a Delta or Iceberg table's folder is its own, and those formats delete only what they wrote)."""
        return []

    def detect(self, path: str, storage: Storage) -> bool:
        """Whether the folder holds a table of this format (its marker exists)."""
        return storage.exists(f"{path.rstrip('/')}/{self.marker}")

    # ---------------------------------------------------------------------------------------------- writes

    def append_staged(self, spark: Any, path: str, staging: str, commit: CommitRequest) -> WriteResult | None:
        """Append a run's staged Parquet files (the quality gate's quarantined rows) to the table as they are,
        exactly once per `commit.txn`, without reading them back. None when this format cannot, or when nothing
        Parquet is staged or the columns differ: the caller then reads the rows and `write`s them."""
        return None

    @abstractmethod
    def write(self, spark: Any, df: Any, path: str, *, mode: str, partition_by: list[str],
              merge_keys: list[str] | None, options: dict[str, Any], commit: CommitRequest | None,
              job: str, storage: Storage, evolve: bool = False) -> WriteResult:
        """Commit `df` atomically; `commit` rides in the same commit. `evolve`: columns of `df` the table lacks
        are added to it (otherwise the format's own check stops the write)."""

    @abstractmethod
    def schema(self, spark: Any, path: str, storage: Storage) -> Any:
        """The table's current Spark schema (StructType), or None when there is no table yet."""

    def begin_write(self, spark: Any, path: str) -> Any:
        """A token taken before a write that may be stopped (a quality gate inside the write): the data files the
        folder held (None: no folder)."""
        from etl_framework.tables.fs import filesystem

        fs = filesystem(spark, path)
        return {rel for rel, _ in fs.list_files(path)} if fs.exists(path) else None

    def abort_write(self, spark: Any, path: str, token: Any) -> int:
        """A write stopped before its commit: remove the files it left — new since `begin_write` and referenced by
        no commit — and nothing else. A folder the stopped write created goes when no commit is in it.
        Returns how many files were removed."""
        from etl_framework.tables.fs import filesystem

        fs = filesystem(spark, path)
        root = path.rstrip("/")
        if not fs.exists(root):
            return 0
        referenced = self.referenced_files(spark, root)
        removed = 0
        for rel, _size in fs.list_files(root):
            # only the format's own data files: whatever else appeared meanwhile is not ours to delete
            if self.is_data_file(rel) and rel not in (token or set()) and rel not in referenced:
                fs.delete(posixpath.join(root, rel))
                crc = posixpath.join(root, posixpath.dirname(rel), f".{posixpath.basename(rel)}.crc")
                if fs.exists(crc):
                    fs.delete(crc)  # Hadoop's local checksum beside the file
                removed += 1
        fs.remove_empty_dirs(root)
        if token is None and not self.has_commits_spark(spark, root) and not fs.list_files(root):
            fs.delete(posixpath.join(root, CLAIM))  # the folder the stopped write made goes, if nothing else is in it
            fs.remove_empty_dirs(root)
            fs.remove_if_empty(root)
        return removed

    def is_data_file(self, rel: str) -> bool:
        """Whether a file (relative to the table) is named as this format's writes name their data files."""
        return posixpath.basename(rel).startswith("part-")

    def referenced_files(self, spark: Any, path: str) -> set[str]:
        """Paths, relative to the table, of the data files any commit references (never deleted by cleanup)."""
        return set()

    def has_commits_spark(self, spark: Any, path: str) -> bool:
        """Whether the table has a commit (Spark side)."""
        return bool(self.referenced_files(spark, path))

    # ---------------------------------------------------------------------------------------------- reads

    @abstractmethod
    def commits(self, path: str, storage: Storage) -> list[CommitRecord]:
        """The table's commits that this framework can read back, oldest first (no Spark); [] for no table."""

    def has_run(self, path: str, run_id: str, storage: Storage) -> bool:
        """Did run `run_id` commit to this table? (resume never redoes a committed write)"""
        return any(c.run_id == run_id for c in self.commits(path, storage))

    def bookmark_deltas(self, path: str, job: str, after_version: int, storage: Storage) -> list[dict[str, Any]]:
        """The bookmark deltas of `job` committed after `after_version` (the table is the truth), oldest first."""
        out = []
        for c in self.commits(path, storage):
            b = c.bookmark
            if b and b.get("job") == job and int(b.get("version", 0)) > after_version:
                out.append(b)
        return sorted(out, key=lambda b: int(b["version"]))

    @abstractmethod
    def arrow_dataset(self, location: str, storage: Storage, metadata_location: str | None = None) -> Any:
        """The committed rows as a pyarrow dataset (`etl query`, independent readers; no JVM).
        `metadata_location`: the catalog's pointer, for formats whose current state a catalog holds."""

    @abstractmethod
    def spark_read(self, spark: Any, path: str, options: dict[str, Any] | None = None,
                   storage: Storage | None = None) -> Any:
        """The committed rows as a Spark DataFrame (sources of this format)."""

    # ---------------------------------------------------------------------------------------------- maintenance

    def maintain(self, spark: Any, path: str, request: MaintainRequest, storage: Storage) -> MaintainResult:
        """Compact the table's small files into fewer (one commit, same rows, commit history and bookmark deltas
        kept) and remove files no reader may still need (`request.retain_hours`)."""
        raise JobFailed(request.job, "maintain", f"{self.title} tables have no maintenance in this version")

    # ---------------------------------------------------------------------------------------------- catalog

    # Whether the catalog lists the table's partitions (Hive-style tables); Iceberg's live in its metadata.
    catalog_partitions: ClassVar[bool] = True

    def catalog_parameters(self, location: str) -> tuple[dict[str, str], dict[str, str]]:
        """(table parameters, SerDe parameters) the Glue Data Catalog stores for this table."""
        return {}, {}

    def current_parameters(self, path: str, storage: Storage) -> dict[str, str]:
        """Catalog parameters that change with every commit (Iceberg's `metadata_location`)."""
        return {}

    def create_ddl(self, t: Any) -> str | None:
        """Athena's CREATE statement for catalog table `t`, or None when the generic Hive DDL applies."""
        return None
