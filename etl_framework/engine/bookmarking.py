"""Incremental sources in the stage chain (SPEC §6): plan what to read before Spark starts, carry the bookmark
delta into the target's own commit, and cache the new bookmark after it.

The order is what makes it exactly-once:
1. under the target lock, reconcile the cached bookmark with the target's commits (the table is the truth);
2. list each `files` source and keep only unseen / rewritten files — if no incremental source has anything new,
   the run ends here, without Spark ("no new input for trips since run …");
3. extract reads exactly those files; `watermark` sources are filtered to `column > watermark` after extract;
4. the write commits the data *and* the bookmark delta together (Delta: `txnAppId`/`txnVersion` + userMetadata;
   Parquet: the commit manifest);
5. only then is the state store's cache updated — a crash before this step is repaired by step 1 of the next run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from etl_framework.errors import JobFailed
from etl_framework.incremental import (
    Bookmark,
    BookmarkDelta,
    FileEntry,
    app_id,
    current_bookmark,
    deleted_files,
    list_files,
    new_files,
)

if TYPE_CHECKING:
    from etl_framework.config.model import EnvConfig, JobConfig
    from etl_framework.engine.job import JobRunState
    from etl_framework.log import JobLog
    from etl_framework.tables import Storage


@dataclass
class IncrementalPlan:
    job: str
    bookmark: Bookmark
    delta: BookmarkDelta
    files: dict[str, list[FileEntry]] = field(default_factory=dict)  # files sources: what to read
    watermark_sources: dict[str, str] = field(default_factory=dict)  # source -> column
    # jdbc sources: the database filters `low < key <= hi` (stages/jdbc.py), which adds `hi` to the delta
    jdbc_sources: dict[str, list[str]] = field(default_factory=dict)
    # catalog sources with mode files: listed by extract from the table's partitions (after the crawl stage)
    catalog_sources: list[str] = field(default_factory=list)
    nothing_new: bool = False
    message: str = ""

    def apply(self, state: JobRunState) -> None:
        """Point extract at the new files and put the bookmark delta into the write's commit."""
        for name, entries in self.files.items():
            state.source_paths[name] = [e.path for e in entries]
        self._set_commit(state)
        if self.watermark_sources:
            state.extras.setdefault("after_extract", []).append(self.filter_watermarks)
        state.extras["bookmark_before"] = self.bookmark.to_json()
        state.extras["incremental_plan"] = self

    def _set_commit(self, state: JobRunState) -> None:
        state.commit_metadata["etl_bookmark"] = _delta_json(self.delta)
        # Delta dedupes on this id; other formats ignore it (the bookmark in the commit is enough)
        state.write_options["txnAppId"] = app_id(self.job)
        state.write_options["txnVersion"] = self.delta.version

    def filter_watermarks(self, state: JobRunState) -> None:
        """Keep rows above each watermark and record the new high value (one aggregation per source)."""
        from pyspark.sql import functions as F

        for name, column in self.watermark_sources.items():
            df = state.views[name]
            if column not in df.columns:
                raise JobFailed(self.job, "extract", f"source '{name}' has no watermark column '{column}' "
                                f"(columns: {', '.join(df.columns)})",
                                "fix incremental.column, or the source's schema")
            dtype = df.schema[column].dataType
            cursor = self.bookmark.sources.get(name)
            old = cursor.watermark if cursor and cursor.mode == "watermark" and cursor.column == column else None
            if old is not None:
                bound = state.spark.range(1).select(F.lit(old).cast(dtype).alias("b")).first()["b"]
                if bound is None:
                    raise JobFailed(
                        self.job, "extract",
                        f"the watermark of source '{name}' ({old!r}) cannot be compared with column '{column}', "
                        f"which is now {dtype.simpleString()} — its type changed since the bookmark was written",
                        f"check the source; to start over, run `etl bookmarks reset {self.job}` (then every row "
                        "is read again)")
                df = df.filter(F.col(column) > F.lit(bound))
            stats = df.agg(F.max(column).alias("hi"), F.sum(F.col(column).isNull().cast("long")).alias("nulls"))
            row = stats.first()
            if row["nulls"]:
                state.log.warning(f"source '{name}': {row['nulls']:,} row(s) with NULL in watermark column "
                                  f"'{column}' are skipped (a watermark cannot place them)", "extract")
            df = df.filter(F.col(column).isNotNull())
            df.createOrReplaceTempView(name)
            state.views[name] = df
            if row["hi"] is not None:
                self.delta.watermarks[name] = {"column": column, "watermark": _json_value(row["hi"])}
            else:
                state.log.info(f"source '{name}': no rows above watermark {old!r}", "extract")
            state.metrics.setdefault("extract", {}).setdefault("watermarks", {})[name] = {
                "column": column, "before": old, "after": _json_value(row["hi"]) if row["hi"] is not None else old,
            }
        self._set_commit(state)

    def commit(self, store: Any, state: JobRunState | None = None) -> Bookmark:
        """After the write committed: cache the new bookmark (the table already has it)."""
        new = self.delta.apply(self.bookmark)
        store.put(new, action="commit")
        if state is not None:
            state.extras["bookmark_after"] = new.to_json()
        return new


def _delta_json(delta: BookmarkDelta) -> dict[str, Any]:
    out = {"job": delta.job, "version": delta.version, "run_id": delta.run_id, "files": delta.files,
           "watermarks": delta.watermarks}
    if delta.locations:
        out["locations"] = delta.locations
    return out


def _json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat(sep=" ") if isinstance(v, dt.datetime) else v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    return v


def plan_incremental(config: JobConfig, env_config: EnvConfig, store: Any, run_id: str,
                     log: JobLog, storage: Storage | None = None) -> IncrementalPlan | None:
    """Decide what each incremental source reads; None when the job has no incremental source."""
    incremental = {k: s for k, s in config.sources.items() if s.incremental is not None}
    if not incremental:
        return None
    aws = env_config.aws.model_dump()
    bookmark = current_bookmark(store, config.job, config.target.format, config.target.path, storage)
    delta = BookmarkDelta(job=config.job, version=bookmark.version + 1, run_id=run_id)
    plan = IncrementalPlan(job=config.job, bookmark=bookmark, delta=delta)
    anything_new = False
    for name, src in incremental.items():
        inc = src.incremental
        assert inc is not None
        if inc.mode == "watermark" and src.format == "jdbc":
            plan.jdbc_sources[name] = inc.columns
            anything_new = True  # one max() query in the database tells, once Spark is up
            continue
        if inc.mode == "watermark":
            plan.watermark_sources[name] = str(inc.column or "")
            anything_new = True  # only the data can tell
            continue
        if src.format == "catalog":
            # listed by extract, after the crawl stage, from the catalog's partitions (stages/extract.py)
            plan.catalog_sources.append(name)
            anything_new = True
            continue
        if not src.path:
            raise JobFailed(config.job, "extract", f"source '{name}': incremental mode 'files' needs a file "
                            "path source", "use mode: watermark")
        cursor = bookmark.cursor(name, "files")
        try:
            listing = list_files(src.path, aws=aws)
        except FileNotFoundError:
            raise JobFailed(config.job, "extract", f"source '{name}': input path {src.path} does not exist",
                            "check the path (and env vars), or land the input first") from None
        fresh = new_files(listing, cursor)
        gone = deleted_files(listing, cursor)
        if gone:
            log.warning(f"source '{name}': {len(gone)} bookmarked file(s) no longer exist (their rows are "
                        f"already in the target), e.g. {gone[0]}", "extract")
        rewritten = [f for f in fresh if f.path in cursor.files]
        if rewritten:
            log.warning(f"source '{name}': {len(rewritten)} file(s) changed since they were read and are read "
                        f"again in full, e.g. {rewritten[0].path}", "extract")
        plan.files[name] = fresh
        delta.files[name] = {f.path: f.key() for f in fresh}
        if fresh:
            anything_new = True
        log.info(f"source '{name}': {len(fresh)} new file(s) of {len(listing)}", "extract")
    if not anything_new:
        since = f"since run {bookmark.run_id}" if bookmark.run_id else "(every file is already bookmarked)"
        names = ", ".join(incremental)
        plan.nothing_new = True
        plan.message = f"no new input for {names} {since}"
    return plan
