"""Crawlers with AWS Glue crawler semantics, in pure Python (no Spark): list the files under a path, classify
them (csv / json / parquet / delta), infer the schema (CSV header detection, types widened across files), discover
Hive-style `key=value` partitions with typed values, and create or update the catalog table.

Schema changes follow `schema_change` (Glue's SchemaChangePolicy): `log` keeps the table and records the change
(LOG), `update` applies it (UPDATE_IN_DATABASE), `fail` stops the crawl with state FAILED. A re-crawl reads only
files it has not seen (Glue's "crawl new folders only"): the files a crawler has read are remembered, by path,
size and modification time, in the state database. Every run is recorded (RUNNING, then SUCCEEDED, FAILED or
CANCELLED) with what it changed. Everything is checked before anything is written, so a failed crawl leaves the
catalog as it was.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from etl_framework.catalog import types as ty
from etl_framework.catalog.base import Catalog, CatalogError, Column, Partition, Table, glue_name, new_table
from etl_framework.errors import EtlError

SAMPLE_ROWS = 1000
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
EXTENSIONS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json",
    ".parquet": "parquet", ".pq": "parquet",
}
COMPRESSIONS = (".gz", ".bz2", ".zst", ".snappy", ".lz4")



class CrawlError(EtlError):
    """A crawl could not complete; the message says which file or folder and what to do."""


@dataclass
class CrawlerRunResult:
    """What a crawler run returns and records; `state` is SUCCEEDED, FAILED or CANCELLED (as Glue's LastCrawl)."""

    crawler: str
    state: str
    message: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    database: str = ""
    table: str | None = None
    run_id: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    ended: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "SUCCEEDED"

    def to_dict(self) -> dict[str, Any]:
        return {
            "crawler": self.crawler, "state": self.state, "message": self.message, "changes": self.changes,
            "database": self.database, "table": self.table, "run_id": self.run_id, "stats": self.stats,
            "started": self.started, "ended": self.ended,
        }


@dataclass
class FileInfo:
    rel: str  # path relative to the crawl root, '/'-separated
    size: int
    mtime: float


class _Cancelled(Exception):
    pass


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# ------------------------------------------------------------------------------------------------ filesystems


def open_fs(path: str, aws: Any = None) -> tuple[Any, str, str]:
    """(pyarrow filesystem, root inside it, location as the catalog records it) for a local path or an
    s3:// / s3a:// URI (against `aws.endpoint_url` when set, e.g. a moto server)."""
    from pyarrow import fs as pafs

    if path.startswith(("s3://", "s3a://")):
        rest = path.split("://", 1)[1].rstrip("/")
        kwargs: dict[str, Any] = {"region": getattr(aws, "region", None) or os.environ.get("AWS_REGION", "us-east-1")}
        endpoint = getattr(aws, "endpoint_url", None)
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme or "http")
        return pafs.S3FileSystem(**kwargs), rest, "s3://" + rest
    path = path.removeprefix("file://")
    root = os.path.abspath(os.path.expanduser(path)).rstrip("/") or "/"
    return pafs.LocalFileSystem(), root, root


def _hidden(part: str) -> bool:
    return part.startswith(("_", "."))


def list_files(fs: Any, root: str, display: str) -> tuple[list[FileInfo], bool]:
    """Data files under root (hidden `_x`/`.x` names skipped, as Spark and Glue do) and whether root is a Delta
    table (has `_delta_log/`)."""
    from pyarrow import fs as pafs

    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise CrawlError(f"crawl path {display} does not exist\n  what to do: check the path (and the env config's "
                         "vars it uses), or create it and put data files there")
    if info.type == pafs.FileType.File:
        raise CrawlError(f"crawl path {display} is a file; a crawler crawls a folder\n  what to do: give the folder "
                         "that holds the files")
    delta = fs.get_file_info(root + "/_delta_log").type == pafs.FileType.Directory
    files: list[FileInfo] = []
    for fi in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if fi.type != pafs.FileType.File:
            continue
        rel = posixpath.relpath(fi.path, root)
        if any(_hidden(p) for p in rel.split("/")):
            continue
        mtime = fi.mtime.timestamp() if fi.mtime is not None else 0.0
        files.append(FileInfo(rel, int(fi.size or 0), mtime))
    files.sort(key=lambda f: f.rel)
    committed = _manifest_files(fs, root)
    if committed is not None:  # a Parquet table of this framework: only what its commits made
        files = [f for f in files if f.rel in committed]
    return files, delta


def _manifest_files(fs: Any, root: str) -> set[str] | None:
    """The files the framework's Parquet commit manifest lists (relative), or None when there is none."""
    import json

    from etl_framework.tables.parquet import MANIFEST

    try:
        with fs.open_input_stream(f"{root}/{MANIFEST}") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (FileNotFoundError, OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    return {str(x.get("path")) for x in data["files"] if isinstance(x, dict)}


# ------------------------------------------------------------------------------------------------ classification


def _strip_compression(name: str) -> str:
    low = name.lower()
    for ext in COMPRESSIONS:
        if low.endswith(ext) and not low.endswith(".parquet" + ext):
            return name[: -len(ext)]
    return name


def classify(fs: Any, root: str, f: FileInfo) -> str:
    """csv | json | parquet, by extension, else by content (Parquet magic, a JSON `{`/`[`, else text/CSV)."""
    name = _strip_compression(posixpath.basename(f.rel)).lower()
    if ".parquet" in name:
        return "parquet"
    ext = posixpath.splitext(name)[1]
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    with fs.open_input_file(root + "/" + f.rel) as fh:
        head = fh.read(64)
    if head[:4] == b"PAR1":
        return "parquet"
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    return "csv"


def _read_lines(fs: Any, path: str, limit: int) -> list[str]:
    size = 1024 * 1024
    with fs.open_input_stream(path, compression="detect") as fh:
        data = fh.read(size)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if len(data) == size and len(lines) > 1:
        lines = lines[:-1]  # the sample ends inside this line
    return lines[: limit + 1]


# ------------------------------------------------------------------------------------------------ schema inference


def _delimiter(line: str) -> str:
    """Glue's CSV classifier delimiters: comma, tab, pipe, semicolon, Ctrl-A; the most frequent in the header."""
    counts = {d: line.count(d) for d in (",", "\t", "|", ";", "\x01")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def infer_csv(lines: list[str], display: str) -> tuple[list[tuple[str, Any]], str]:
    """Columns of a CSV sample with Glue's header detection: the first row is a header when its values are
    non-empty, unique and not data-like (no number, boolean or date), and the rows below either have a non-string
    column or do not repeat the header values. No header is an error: the column names would be meaningless."""
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise CrawlError(f"{display} is empty")
    delim = _delimiter(lines[0])
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delim))
    header, data = [h.strip() for h in rows[0]], rows[1:]
    ncols = len(header)
    col_types: list[Any] = [None] * ncols
    for row in data:
        for i in range(min(ncols, len(row))):
            col_types[i] = ty.widen(col_types[i], ty.infer_text(row[i]))
    header_types = [ty.infer_text(h) for h in header]
    problems = []
    if any(h == "" for h in header):
        problems.append("it has an empty value")
    if len(set(header)) != len(header):
        problems.append("its values are not unique")
    if any(t not in ("string", None) for t in header_types):
        problems.append("it holds data-like values (" + ", ".join(
            h for h, t in zip(header, header_types, strict=True) if t not in ("string", None)) + ")")
    if not problems and data and all(t in ("string", None) for t in col_types):
        first_values = {tuple(r[:ncols]) for r in data[:50]}
        if tuple(rows[0][:ncols]) in first_values:
            problems.append("it repeats in the data below")
    if problems:
        sample = delim.join(rows[0])[:80]
        raise CrawlError(
            f"no header row in {display}: its first row ({sample!r}) does not look like column names: "
            + "; ".join(problems)
            + "\n  what to do: add a header row with the column names to each CSV file (Glue's CSV classifier "
              "needs one to name columns)"
        )
    cols = [(glue_name(h) if h != h.lower() or " " in h else h, t or "string")
            for h, t in zip(header, col_types, strict=True)]
    return cols, delim


def infer_json_lines(lines: list[str], display: str) -> list[tuple[str, Any]]:
    text = "\n".join(lines).strip()
    records: list[Any] = []
    if text.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError:
            # a truncated sample of a big array: fall back to line-wise objects
            records = []
    if not records:
        for n, line in enumerate(lines, 1):
            line = line.strip().rstrip(",")
            if not line or line in ("[", "]"):
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise CrawlError(f"{display}:{n}: not valid JSON ({e.msg})\n  what to do: write one JSON object "
                                 "per line (JSON Lines) or fix the record") from e
    cols: dict[str, Any] = {}
    for rec in records[:SAMPLE_ROWS]:
        if not isinstance(rec, dict):
            raise CrawlError(f"{display}: a JSON record is not an object ({str(rec)[:40]})")
        for k, v in rec.items():
            cols[k] = ty.widen(cols.get(k), ty.infer_json(v))
    if not cols:
        raise CrawlError(f"{display} holds no JSON records")
    return [(k, t or "string") for k, t in cols.items()]


def infer_parquet(fs: Any, path: str, display: str) -> list[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as fh:
            schema = pq.read_schema(fh)
    except Exception as e:
        raise CrawlError(f"{display} is not a readable Parquet file: {e}") from e
    return [(f.name, ty.from_arrow(f.type)) for f in schema]


def infer_delta(path: str, aws: Any = None) -> tuple[list[tuple[str, Any]], list[str]]:
    """Columns and partition columns from a Delta table's transaction log (no data file is read)."""
    from deltalake import DeltaTable

    opts: dict[str, str] = {}
    uri = path
    if path.startswith(("s3://", "s3a://")):
        uri = "s3://" + path.split("://", 1)[1]
        if getattr(aws, "endpoint_url", None):
            opts.update(AWS_ENDPOINT_URL=aws.endpoint_url, AWS_ALLOW_HTTP="true", AWS_S3_ALLOW_UNSAFE_RENAME="true")
        opts["AWS_REGION"] = getattr(aws, "region", None) or "us-east-1"
    try:
        dt = DeltaTable(uri, storage_options=opts or None)
        import pyarrow as pa

        schema = pa.schema(dt.schema().to_arrow())
    except Exception as e:
        raise CrawlError(f"{path} has a _delta_log/ but is not a readable Delta table: {e}") from e
    return [(f.name, ty.from_arrow(f.type)) for f in schema], list(dt.metadata().partition_columns)


# ------------------------------------------------------------------------------------------------ partitions


def parse_partition_dirs(f: FileInfo, display: str) -> list[tuple[str, str | None]]:
    dirs = f.rel.split("/")[:-1]
    out: list[tuple[str, str | None]] = []
    for d in dirs:
        key, eq, value = d.partition("=")
        if not eq or not key:
            raise CrawlError(
                f"folder '{d}' under {display} is not a Hive partition folder (key=value); found with file {f.rel}"
                "\n  what to do: name partition folders key=value (e.g. dt=2024-01-01), or crawl the folder that "
                "holds the data files"
            )
        value = unquote(value)
        out.append((unquote(key), None if value == HIVE_NULL else value))
    return out


def partition_type(key: str, values: list[str], existing: str | None, display: str) -> str:
    """The type of a partition key from its values; numbers widen (bigint -> double), any other mix is a
    conflict (a partition column cannot be both a date and text)."""
    found: dict[str, str] = {}
    for v in values:
        t = ty.infer_text(v)
        if t is not None:
            found.setdefault(t if t != "boolean" else "string", v)
    if existing:
        found.setdefault(existing, "(the catalog table's type)")
    kinds = set(found)
    if not kinds:
        return existing or "string"
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= {"bigint", "double"}:
        return "double"
    if existing == "string":
        return "string"
    examples = ", ".join(f"{t} ({key}={v})" for t, v in sorted(found.items()))
    raise CrawlError(
        f"partition key '{key}' under {display} has values of conflicting types: {examples}"
        f"\n  what to do: make every {key}=... folder hold the same kind of value, or move the odd folders away"
    )


# ------------------------------------------------------------------------------------------------ state records


# ------------------------------------------------------------------------------------------------ the crawl


@dataclass
class _Plan:
    table: Table
    exists: bool
    write_table: bool
    partitions: list[Partition]
    changes: list[dict[str, Any]]
    new_files: list[FileInfo]


def _schema_changes(old: Table, new_cols: list[Column], new_keys: list[Column]) -> list[dict[str, Any]]:
    """Differences between the catalog table and what this crawl read: added / removed columns, changed types."""
    changes: list[dict[str, Any]] = []
    old_types = {c.name: c.type for c in old.columns}
    new_types = {c.name: c.type for c in new_cols}
    for c in new_cols:
        if c.name not in old_types:
            changes.append({"change": "column_added", "column": c.name, "new_type": c.type})
        elif old_types[c.name] != c.type:
            wide = ty.render(ty.widen(old_types[c.name], c.type))
            if wide != old_types[c.name]:
                changes.append({"change": "type_changed", "column": c.name, "old_type": old_types[c.name],
                                "new_type": wide})
    for c in old.columns:
        if c.name not in new_types:
            changes.append({"change": "column_removed", "column": c.name, "old_type": c.type})
    old_keys = {k.name: k.type for k in old.partition_keys}
    for k in new_keys:
        if k.name in old_keys and old_keys[k.name] != k.type:
            changes.append({"change": "type_changed", "column": k.name, "old_type": old_keys[k.name],
                            "new_type": k.type, "partition_key": True})
    return changes


def _apply_changes(old: Table, new_cols: list[Column], new_keys: list[Column]) -> Table:
    """`update`: the table follows the newest data — types widened, new columns appended, removed ones dropped."""
    new_types = {c.name: c.type for c in new_cols}
    cols = []
    for c in old.columns:
        if c.name in new_types:
            cols.append(Column(c.name, ty.render(ty.widen(c.type, new_types[c.name])), c.comment))
    have = {c.name for c in cols}
    cols += [c for c in new_cols if c.name not in have]
    table = Table.from_dict(old.to_dict())
    table.columns = cols
    table.partition_keys = new_keys
    if table.classification == "json":
        table.serde_parameters["paths"] = ",".join(c.name for c in cols)
    return table


def plan_crawl(
    catalog: Catalog, fs: Any, root: str, location: str, display: str, database: str, table_name: str,
    seen: dict[str, tuple[int, float]], aws: Any = None, check_cancel: Callable[[], None] = lambda: None,
) -> _Plan:
    """Everything a crawl would do, decided before anything is written."""
    files, is_delta = list_files(fs, root, display)
    existing = catalog.get_table(database, table_name)
    if existing is None:
        seen = {}
    if is_delta:
        cols_t, part_cols = infer_delta(location if location.startswith("s3://") else root, aws)
        types = dict(cols_t)
        columns = [Column(n, ty.render(t)) for n, t in cols_t if n not in part_cols]
        keys = [Column(n, ty.render(types[n])) for n in part_cols]
        table = new_table(database, table_name, "delta", location, columns, keys)
        if existing is None:
            return _Plan(table, False, True, [], [], [])
        changes = _schema_changes(existing, columns, keys)
        return _Plan(table if changes else existing, True, bool(changes), [], changes, [])
    if not files:
        raise CrawlError(f"crawl path {display} holds no data files\n  what to do: put data files there (hidden "
                         "files starting with '_' or '.' are skipped), or point the crawler at the right folder")
    new_files = [f for f in files if seen.get(f.rel) != (f.size, f.mtime)]
    # Partition layout: every file at the same depth, under the same key=value keys.
    layouts: dict[tuple[str, ...], str] = {}
    parts_of: dict[str, list[tuple[str, str | None]]] = {}
    for f in files:
        parts = parse_partition_dirs(f, display)
        parts_of[f.rel] = parts
        layouts.setdefault(tuple(k for k, _ in parts), f.rel)
    if len(layouts) > 1:
        desc = "; ".join(f"[{', '.join(k) or 'no partition folders'}] (e.g. {ex})" for k, ex in layouts.items())
        raise CrawlError(f"files under {display} sit in different partition layouts: {desc}\n  what to do: keep "
                         "one layout of key=value folders under a crawled path")
    key_names = list(next(iter(layouts)))
    if existing is not None and [k.name for k in existing.partition_keys] != key_names:
        raise CrawlError(
            f"partition folders under {display} use keys [{', '.join(key_names)}] but table "
            f"{existing.full_name} has [{', '.join(k.name for k in existing.partition_keys)}]\n  what to do: "
            "move the data to the table's layout, or drop the table and crawl again"
        )
    if not new_files and existing is not None:
        return _Plan(existing, True, False, [], [], [])
    formats: dict[str, str] = {}
    for f in new_files:
        check_cancel()
        formats.setdefault(classify(fs, root, f), f.rel)
    if existing is not None and existing.classification not in formats and len(formats) == 1:
        formats.setdefault(existing.classification, f"(table {existing.full_name})")
    if len(formats) > 1:
        desc = ", ".join(f"{fmt} (e.g. {ex})" for fmt, ex in sorted(formats.items()))
        raise CrawlError(f"mixed formats under {display}: {desc}\n  what to do: keep one format per crawled "
                         "folder (Glue makes one table per format); move the other files to their own folder")
    fmt = next(iter(formats))
    # Schema: union of the new files' columns, types widened across files.
    merged: dict[str, Any] = {}
    delim = ","
    for f in new_files:
        check_cancel()
        path = root + "/" + f.rel
        shown = f"{display.rstrip('/')}/{f.rel}"
        if fmt == "csv":
            cols, delim = infer_csv(_read_lines(fs, path, SAMPLE_ROWS), shown)
        elif fmt == "json":
            cols = infer_json_lines(_read_lines(fs, path, SAMPLE_ROWS), shown)
        else:
            cols = infer_parquet(fs, path, shown)
        for name, t in cols:
            merged[name] = ty.widen(merged.get(name), t)
    # Partition keys and their types, from every new folder (and the table's existing types).
    old_key_types = {k.name: k.type for k in existing.partition_keys} if existing else {}
    keys: list[Column] = []
    for i, k in enumerate(key_names):
        values = [v for f in new_files if (v := parts_of[f.rel][i][1]) is not None]
        keys.append(Column(k, partition_type(k, values, old_key_types.get(k), display)))
    columns = [Column(n, ty.render(t)) for n, t in merged.items() if n not in key_names]
    partitions: dict[tuple[str, ...], Partition] = {}
    for f in new_files:
        vals = tuple(v if v is not None else HIVE_NULL for _, v in parts_of[f.rel])
        if vals and vals not in partitions:
            folder = "/".join(f.rel.split("/")[: len(key_names)])
            partitions[vals] = Partition(list(vals), f"{location.rstrip('/')}/{folder}/")
    if existing is None:
        table = new_table(database, table_name, fmt, location, columns, keys, csv_delimiter=delim)
        return _Plan(table, False, True, list(partitions.values()), [], new_files)
    changes = _schema_changes(existing, columns, keys)
    updated = _apply_changes(existing, columns, keys) if changes else existing
    return _Plan(updated, True, bool(changes), list(partitions.values()), changes, new_files)


def run_crawler(
    catalog: Catalog,
    state_db: Any,
    name: str,
    path: str,
    database: str,
    table: str | None = None,
    schema_change: str = "log",
    aws: Any = None,
    cancel: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
) -> CrawlerRunResult:
    """Run one crawler; never raises for a crawl problem: the result's state is FAILED with the message (the
    caller decides whether that fails a job). `cancel` set -> CANCELLED with nothing written. `state_db`: the env
    config (its state backend), a SQLite state file, or an open `CrawlerStore`."""
    from etl_framework.state import open_crawler_store

    owned = not hasattr(state_db, "start")
    store = open_crawler_store(state_db) if owned else state_db
    fs, root, location = open_fs(path, aws)
    table_name = table or glue_name(posixpath.basename(root.rstrip("/")))
    result = CrawlerRunResult(crawler=name, state="RUNNING", database=database, table=table_name, started=_now())
    run_id = store.start(name, database, table_name, path, schema_change)
    result.run_id = run_id
    say = progress or (lambda _m: None)

    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            raise _Cancelled()

    try:
        say(f"crawler {name}: crawling {path} into {database}.{table_name}")
        moved = store.last_path(name) not in (None, path)  # a crawler pointed elsewhere starts afresh
        plan = plan_crawl(catalog, fs, root, location, path, database, table_name,
                          {} if moved else store.seen(name), aws, check_cancel)
        check_cancel()
        policy_blocks = plan.exists and plan.changes and schema_change != "update"
        if plan.changes and schema_change == "fail":
            raise CrawlError(
                f"schema of {database}.{table_name} changed: " + describe_changes(plan.changes)
                + "\n  what to do: the crawler's schema_change is 'fail'; set it to 'update' to apply the change or "
                  "'log' to keep the table, or fix the data"
            )
        changes = [dict(c, applied=not policy_blocks) for c in plan.changes]
        if plan.table is not None and plan.write_table and not policy_blocks:
            if catalog.ensure_database(database):
                changes.insert(0, {"change": "database_created", "database": database})
            if plan.exists:
                catalog.update_table(plan.table)
            else:
                catalog.create_table(plan.table)
                changes.insert(0 if not changes else 1, {
                    "change": "table_created", "table": f"{database}.{table_name}",
                    "format": plan.table.format, "columns": len(plan.table.columns),
                    "partition_keys": [k.name for k in plan.table.partition_keys],
                })
        added = 0
        if plan.partitions:
            have = {tuple(p.values) for p in catalog.get_partitions(database, table_name)} if plan.exists else set()
            fresh = [p for p in plan.partitions if tuple(p.values) not in have]
            added = catalog.add_partitions(database, table_name, fresh) if fresh else 0
            if fresh:
                changes.append({"change": "partitions_added", "count": len(fresh),
                                "values": sorted(p.values for p in fresh)[:100]})
        if moved or (plan.table is not None and not plan.exists):
            store.forget(name)
        store.remember(name, plan.new_files)
        result.state = "SUCCEEDED"
        result.changes = changes
        result.stats = {"files_read": len(plan.new_files), "partitions_added": added,
                        "format": plan.table.format if plan.table else None}
        if not plan.new_files and plan.table is not None and not plan.table.is_delta:
            result.message = "no new files since the last crawl; nothing changed"
        elif policy_blocks:
            result.message = (f"schema change logged, table kept (schema_change: log): "
                              f"{describe_changes(plan.changes)}")
        else:
            result.message = f"{len(plan.new_files)} file(s) read, {added} partition(s) added"
    except _Cancelled:
        result.state, result.message = "CANCELLED", "cancelled before anything was written"
    except KeyboardInterrupt:
        result.state, result.message = "CANCELLED", "interrupted"
        result.ended = _now()
        store.finish(run_id, result)
        raise
    except (CrawlError, CatalogError) as e:
        result.state, result.message = "FAILED", str(e)
    except OSError as e:
        result.state, result.message = "FAILED", f"cannot read {path}: {e}"
    result.ended = _now()
    store.finish(run_id, result)
    if owned:
        store.close()
    say(f"crawler {name}: {result.state} — {result.message.splitlines()[0] if result.message else ''}")
    return result


def describe_changes(changes: list[dict[str, Any]]) -> str:
    parts = []
    for c in changes:
        kind = c.get("change")
        if kind == "column_added":
            parts.append(f"new column {c['column']} {c['new_type']}")
        elif kind == "column_removed":
            parts.append(f"column {c['column']} removed")
        elif kind == "type_changed":
            parts.append(f"column {c['column']} type {c['old_type']} -> {c['new_type']}")
    return ", ".join(parts)
