"""Bookmark cursors without Spark: new/rewritten/deleted files, watermark deltas, reconciliation from a Delta
table's own commits (written here by delta-rs, as an independent writer) and from a Parquet manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
from deltalake import CommitProperties, Transaction, write_deltalake

from etl_framework.incremental import (
    Bookmark,
    BookmarkDelta,
    SourceCursor,
    app_id,
    committed_deltas,
    deleted_files,
    list_files,
    new_files,
    reconcile,
)
from etl_framework.state.bookmarks import SqliteBookmarkStore
from etl_framework.tables.parquet import MANIFEST


def deltas_from_delta_table(path: str, job: str, after: int) -> list[BookmarkDelta]:
    return committed_deltas("delta", path, job, after)


def deltas_from_manifest(path: str, job: str, after: int) -> list[BookmarkDelta]:
    return committed_deltas("parquet", path, job, after)


def _write(p: Path, text: str, mtime: float) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    os.utime(p, (mtime, mtime))


def test_listing_skips_hidden_and_applies_pattern(tmp_path: Path) -> None:
    _write(tmp_path / "d=1" / "a.csv", "x\n1\n", 1000)
    _write(tmp_path / "d=1" / "_SUCCESS", "", 1000)
    _write(tmp_path / "_staging" / "b.csv", "x\n", 1000)
    _write(tmp_path / "c.json", "{}", 1000)
    names = [Path(f.path).name for f in list_files(str(tmp_path), "*.csv")]
    assert names == ["a.csv"]


def test_new_rewritten_and_deleted_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _write(a, "x\n1\n", 1000)
    _write(b, "x\n2\n", 1000)
    cursor = SourceCursor(mode="files")
    first = new_files(list_files(str(tmp_path)), cursor)
    assert {Path(f.path).name for f in first} == {"a.csv", "b.csv"}
    cursor.files = {f.path: f.key() for f in first}
    assert new_files(list_files(str(tmp_path)), cursor) == []
    _write(a, "x\n1\n3\n", 2000)  # rewritten in place: new size and mtime
    assert [Path(f.path).name for f in new_files(list_files(str(tmp_path)), cursor)] == ["a.csv"]
    b.unlink()
    assert [Path(p).name for p in deleted_files(list_files(str(tmp_path)), cursor)] == ["b.csv"]


def test_delta_apply_advances_watermark_only_upwards() -> None:
    bm = Bookmark(job="j")
    d1 = BookmarkDelta(job="j", version=1, run_id="r1", watermarks={"s": {"column": "u", "watermark": 10}})
    d2 = BookmarkDelta(job="j", version=2, run_id="r2", watermarks={"s": {"column": "u", "watermark": 5}})
    out = reconcile(bm, [d1, d2])
    assert out.sources["s"].watermark == 10 and out.version == 2 and out.run_id == "r2"


def test_reconcile_from_delta_commits_written_by_another_writer(tmp_path: Path) -> None:
    table = str(tmp_path / "t")
    for version, files in [(1, {"/in/a.csv": [1, 1.0]}), (2, {"/in/b.csv": [2, 2.0]})]:
        delta = BookmarkDelta(job="j", version=version, run_id=f"r{version}", files={"src": files})
        write_deltalake(
            table, pa.table({"x": [version]}), mode="append",
            commit_properties=CommitProperties(
                custom_metadata={"userMetadata": delta.to_metadata()},
                app_transactions=[Transaction(app_id=app_id("j"), version=version)],
            ),
        )
    # The state store only saw version 1 (a crash before it recorded version 2): the table fills the gap.
    cached = reconcile(Bookmark(job="j"), deltas_from_delta_table(table, "j", 0)[:1])
    assert cached.version == 1
    missing = deltas_from_delta_table(table, "j", cached.version)
    assert [d.version for d in missing] == [2]
    truth = reconcile(cached, missing)
    assert set(truth.sources["src"].files) == {"/in/a.csv", "/in/b.csv"}
    assert deltas_from_delta_table(table, "j", 2) == []
    assert deltas_from_delta_table(str(tmp_path / "absent"), "j", 0) == []


def test_reconcile_from_parquet_manifest(tmp_path: Path) -> None:
    delta = BookmarkDelta(job="j", version=3, run_id="r3", files={"s": {"/a": [1, 1.0]}})
    item = json.loads(delta.to_metadata())["etl_bookmark"]
    (tmp_path / MANIFEST).write_text(json.dumps({"metadata": {"etl_bookmark": item}, "files": []}))
    assert [d.run_id for d in deltas_from_manifest(str(tmp_path), "j", 2)] == ["r3"]
    assert deltas_from_manifest(str(tmp_path), "j", 3) == []


def test_store_roundtrip_history_and_reset_point(tmp_path: Path) -> None:
    store = SqliteBookmarkStore(tmp_path / "state.db")
    assert store.get("j").version == 0
    bm = Bookmark(job="j", version=1, run_id="r1", sources={"s": SourceCursor(mode="files", files={"/a": [1, 1]})})
    store.put(bm)
    store.put(Bookmark(job="j", version=2, run_id="r2"), action="commit")
    again = SqliteBookmarkStore(tmp_path / "state.db")  # another process sees it
    assert again.get("j").version == 2
    assert again.at_run("j", "r1").sources["s"].files == {"/a": [1, 1]}
    assert [h["action"] for h in again.history("j")] == ["commit", "commit"]
