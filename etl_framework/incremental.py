"""Bookmarks of incremental sources (SPEC §6): which input a job has already written, decided without Spark.

Two cursors, as AWS Glue job bookmarks have them:
- `files`: the set of files already processed, keyed by path, size and modification time (a file rewritten in
  place has a new size or mtime and counts as new).
- `watermark`: the highest value of a column already written; the next run reads rows with `column > watermark`.

Unlike Glue, a bookmark never advances on its own: the write stage carries the bookmark *delta* of the run inside
the target's own commit (Delta: `txnAppId`/`txnVersion` + `userMetadata`; Parquet: the commit manifest), and the
state store's copy is only a cache, reconciled from the table at the start of each run. A crash between the data
commit and the state update therefore loses nothing, and a crash before the data commit advances nothing.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APP_ID_PREFIX = "etl_framework:"

# Spark/Hadoop hidden-file conventions: these never hold input rows.
_HIDDEN = ("_", ".")


@dataclass(frozen=True, order=True)
class FileEntry:
    path: str
    size: int
    mtime: float

    def key(self) -> list[Any]:
        return [self.size, round(self.mtime, 3)]


@dataclass
class SourceCursor:
    """The bookmark of one source."""

    mode: str  # files | watermark
    files: dict[str, list[Any]] = field(default_factory=dict)  # path -> [size, mtime]
    column: Any = None  # a column, or a compound key (a list)
    watermark: Any = None
    location: str | None = None  # catalog sources: the table location the files were listed under

    def to_json(self) -> dict[str, Any]:
        if self.mode == "files":
            return {"mode": "files", "files": self.files, **({"location": self.location} if self.location else {})}
        return {"mode": "watermark", "column": self.column, "watermark": self.watermark}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SourceCursor:
        return cls(
            mode=data["mode"], files=dict(data.get("files") or {}), column=data.get("column"),
            watermark=data.get("watermark"), location=data.get("location"),
        )


@dataclass
class Bookmark:
    """A job's bookmark: one cursor per incremental source, and the commit sequence number (`version`) that
    doubles as Delta's `txnVersion`, so that a replayed commit of the same run is skipped by Delta itself."""

    job: str
    version: int = 0
    run_id: str | None = None
    sources: dict[str, SourceCursor] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job, "version": self.version, "run_id": self.run_id,
            "sources": {k: v.to_json() for k, v in self.sources.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bookmark:
        return cls(
            job=data["job"], version=int(data.get("version", 0)), run_id=data.get("run_id"),
            sources={k: SourceCursor.from_json(v) for k, v in (data.get("sources") or {}).items()},
        )

    def cursor(self, source: str, mode: str, column: Any = None) -> SourceCursor:
        cur = self.sources.get(source)
        if cur is None or cur.mode != mode or (mode == "watermark" and cur.column != column):
            cur = SourceCursor(mode=mode, column=column)
        return cur


@dataclass
class BookmarkDelta:
    """What one run adds to the bookmark; carried in the target commit (small: only this run's files)."""

    job: str
    version: int
    run_id: str
    files: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # source -> path -> [size, mtime]
    watermarks: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> {column, watermark}
    locations: dict[str, str] = field(default_factory=dict)  # catalog sources: source -> table location

    def is_empty(self) -> bool:
        return not any(self.files.values()) and not self.watermarks

    def to_metadata(self) -> str:
        return json.dumps({"etl_bookmark": {
            "job": self.job, "version": self.version, "run_id": self.run_id,
            "files": self.files, "watermarks": self.watermarks,
            **({"locations": self.locations} if self.locations else {}),
        }}, default=str, separators=(",", ":"))

    @classmethod
    def from_metadata(cls, text: str | None) -> BookmarkDelta | None:
        if not text:
            return None
        try:
            data = json.loads(text)["etl_bookmark"]
        except (ValueError, KeyError, TypeError):
            return None
        return cls(job=data["job"], version=int(data["version"]), run_id=data["run_id"],
                   files=data.get("files") or {}, watermarks=data.get("watermarks") or {},
                   locations=data.get("locations") or {})

    def apply(self, bookmark: Bookmark) -> Bookmark:
        """The bookmark after this delta committed."""
        sources = {k: SourceCursor.from_json(v.to_json()) for k, v in bookmark.sources.items()}
        for src, files in self.files.items():
            cur = sources.setdefault(src, SourceCursor(mode="files"))
            cur.files.update(files)
        for src, location in self.locations.items():
            sources.setdefault(src, SourceCursor(mode="files")).location = location
        for src, wm in self.watermarks.items():
            cur = sources.get(src)
            if cur is None or cur.mode != "watermark" or cur.column != wm["column"]:
                cur = sources[src] = SourceCursor(mode="watermark", column=wm["column"])
            if wm.get("watermark") is not None and (cur.watermark is None or _newer(wm["watermark"], cur.watermark)):
                cur.watermark = wm["watermark"]
        return Bookmark(job=bookmark.job, version=max(self.version, bookmark.version), run_id=self.run_id,
                        sources=sources)


def _newer(candidate: Any, current: Any) -> bool:
    """Watermarks are JSON values (numbers, ISO-8601 strings); a changed column type resets the comparison."""
    try:
        return bool(candidate > current)
    except TypeError:
        return True


def app_id(job: str) -> str:
    return APP_ID_PREFIX + job


# ------------------------------------------------------------------------------------------------ listing


def list_files(path: str, pattern: str | None = None, aws: dict[str, Any] | None = None) -> list[FileEntry]:
    """Data files under `path` (recursive; Hidden `_`/`.` files and folders skipped, as Spark skips them).

    Local paths use the file system; `s3://` / `s3a://` paths use boto3 (with the env config's endpoint)."""
    if path.startswith(("s3://", "s3a://", "s3n://")):
        return _list_s3(path, pattern, aws or {})
    root = Path(path)
    if root.is_file():
        st = root.stat()
        return [FileEntry(str(root.resolve()), st.st_size, st.st_mtime)]
    if not root.is_dir():
        raise FileNotFoundError(path)
    out: list[FileEntry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(_HIDDEN))
        for name in sorted(filenames):
            if name.startswith(_HIDDEN) or name.endswith(".crc"):
                continue
            if pattern and not fnmatch.fnmatch(name, pattern):
                continue
            full = Path(dirpath) / name
            st = full.stat()
            out.append(FileEntry(str(full.resolve()), st.st_size, st.st_mtime))
    return out


def _list_s3(path: str, pattern: str | None, aws: dict[str, Any]) -> list[FileEntry]:
    from etl_framework.aws import client as aws_client

    scheme, rest = path.split("://", 1)
    bucket, _, prefix = rest.partition("/")
    client = aws_client("s3", aws.get("region"), aws.get("endpoint_url"))
    out: list[FileEntry] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            rel = key[len(prefix):].lstrip("/")
            if any(part.startswith(_HIDDEN) for part in rel.split("/")) or key.endswith("/"):
                continue
            if pattern and not fnmatch.fnmatch(key.rsplit("/", 1)[-1], pattern):
                continue
            out.append(FileEntry(f"{scheme}://{bucket}/{key}", obj["Size"], obj["LastModified"].timestamp()))
    return out


def new_files(listing: list[FileEntry], cursor: SourceCursor) -> list[FileEntry]:
    """Files not yet processed: unseen paths, and seen paths whose size or mtime changed (rewritten in place)."""
    return [f for f in listing if cursor.files.get(f.path) != f.key()]


def deleted_files(listing: list[FileEntry], cursor: SourceCursor) -> list[str]:
    """Bookmarked files that are gone (reported, never an error: their rows are already in the target)."""
    present = {f.path for f in listing}
    return sorted(p for p in cursor.files if p not in present)


# --------------------------------------------------------------------------------------- reconciliation


def reconcile(cached: Bookmark, deltas: list[BookmarkDelta]) -> Bookmark:
    """The true bookmark: the cached one plus every delta the table committed after it."""
    result = cached
    for delta in deltas:
        result = delta.apply(result)
    return result


# ------------------------------------------------------------------------------------------- engine helpers


def committed_deltas(target_format: str, target_path: str, job: str, after_version: int,
                     storage: Any = None) -> list[BookmarkDelta]:
    """Bookmark deltas the target committed after `after_version` (the table is the truth), read by the target's
    format without Spark — on local files and on S3 alike."""
    from etl_framework.tables import Storage, table_format

    items = table_format(target_format).bookmark_deltas(target_path, job, after_version, storage or Storage())
    found = [BookmarkDelta.from_metadata(json.dumps({"etl_bookmark": item})) for item in items]
    return [d for d in found if d is not None and d.job == job and d.version > after_version]


def current_bookmark(store: Any, job: str, target_format: str, target_path: str, storage: Any = None) -> Bookmark:
    """The cached bookmark reconciled with the target's commits; the cache is updated when it lagged."""
    cached: Bookmark = store.get(job)
    missing = committed_deltas(target_format, target_path, job, cached.version, storage)
    if not missing:
        return cached
    truth = reconcile(cached, missing)
    store.put(truth, action="reconcile")
    return truth
