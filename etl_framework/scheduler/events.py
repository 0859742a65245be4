"""Event triggers: file arrival -> durable events -> Glue EventBatchingCondition batches.

Detection: a listing of the watched folder (recursive, like an S3 prefix) is the source of truth — it also sees what
landed while the scheduler was down; watchdog's OS notifications only make a listing happen sooner. A file becomes
an event once it is stable: seen twice with the same size and mtime, the two looks at least `settle_seconds` apart
(or its mtime already that old), so a file still being written is not taken. Names starting with `.` or `_` (temp
files, `_SUCCESS`, `.crc`) are never events, as for Glue crawlers. `pattern` is matched (fnmatch) against the file
name, or against the path relative to the watched folder when it holds a `/`.

Batching (Glue): a batch closes at `batch.size` events, or when `batch.window_seconds` have passed since its first
event; the run gets the batch's files as the run property `event_files` (Glue's `aws:eventIds` twin).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from etl_framework.scheduler.store import Event, SchedulerStore

EVENT_FILES = "event_files"  # run property: list of the batch's files (absolute paths), in arrival order
EVENT_BATCH_ID = "event_batch_id"
EVENT_TRIGGER = "event_trigger"


def matches(pattern: str, rel_path: str) -> bool:
    if "/" in pattern:
        return fnmatch.fnmatchcase(rel_path, pattern)
    return fnmatch.fnmatchcase(rel_path.rsplit("/", 1)[-1], pattern)


def list_files(root: Path, pattern: str, skip: set[str] | frozenset[str] = frozenset()
               ) -> Iterator[tuple[str, int, int]]:
    """(absolute path, size, mtime_ns) of every matching regular file under root, except those in `skip` (not even
    stat'ed: a folder of thousands of old files stays cheap to poll); hidden/underscore names skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        for name in sorted(filenames):
            if name.startswith((".", "_")):
                continue
            full = os.path.join(dirpath, name)
            if full in skip:
                continue
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if not matches(pattern, rel):
                continue
            try:
                st = os.stat(full)
            except OSError:  # removed between listing and stat
                continue
            if stat.S_ISREG(st.st_mode):
                yield full, st.st_size, st.st_mtime_ns


@dataclass
class _Candidate:
    size: int
    mtime_ns: int
    since: datetime  # when this (size, mtime) was first seen


@dataclass
class WatchState:
    """What one event trigger's watcher keeps in memory (all of it can be rebuilt from the store and a listing)."""

    known: set[str]
    candidates: dict[str, _Candidate] = field(default_factory=dict)
    missing_reported: bool = False
    baselined: bool = False


class EventScanner:
    """Turns listings into durable events, exactly once per (workflow, trigger, file)."""

    def __init__(
        self, store: SchedulerStore, settle_seconds: float = 2.0, wall: Callable[[], float] = time.time,
        *, backfill: bool = False, on_baseline: Callable[[str, str, str, int, int], None] | None = None,
    ) -> None:
        self.store = store
        self.backfill = backfill  # `etl scheduler --backfill`: files there at the first start are events too
        self.on_baseline = on_baseline  # (workflow, trigger, root, files baselined, files released): to the log
        self.settle = timedelta(seconds=settle_seconds)
        self.wall = wall
        self.states: dict[tuple[str, str], WatchState] = {}

    def state(self, workflow: str, trigger: str) -> WatchState:
        key = (workflow, trigger)
        if key not in self.states:
            self.states[key] = WatchState(known=self.store.known_paths(workflow, trigger))
        return self.states[key]

    def has_candidates(self, workflow: str, trigger: str) -> bool:
        st = self.states.get((workflow, trigger))
        return bool(st and st.candidates)

    def scan(
        self, workflow: str, trigger: str, root: str | Path, pattern: str, now: datetime,
        on_missing: Callable[[str], None] | None = None,
    ) -> list[Event]:
        """One look at the watched folder; returns the files that became events in this look."""
        st = self.state(workflow, trigger)
        root = Path(root)
        if not st.baselined:
            self._baseline(workflow, trigger, root, pattern, now, st)
        if not root.is_dir():
            if not st.missing_reported and on_missing:
                on_missing(str(root))
            st.missing_reported = True
            return []
        st.missing_reported = False
        seen: set[str] = set()
        stable: list[tuple[str, int, int]] = []
        wall_now = self.wall()
        for path, size, mtime_ns in list_files(root, pattern, st.known):
            seen.add(path)
            cand = st.candidates.get(path)
            if cand is None or (cand.size, cand.mtime_ns) != (size, mtime_ns):
                st.candidates[path] = _Candidate(size, mtime_ns, now)
                continue
            quiet_for = wall_now - mtime_ns / 1e9
            if now - cand.since >= self.settle or quiet_for >= self.settle.total_seconds():
                stable.append((path, size, mtime_ns))
        for gone in set(st.candidates) - seen:
            del st.candidates[gone]
        if not stable:
            return []
        stable.sort(key=lambda s: (s[2], s[0]))
        added = self.store.record_events(workflow, trigger, stable, now)
        for path, _, _ in stable:
            del st.candidates[path]
            st.known.add(path)
        return [Event(workflow, trigger, path, size, mtime_ns, now) for path, size, mtime_ns in added]


    def first_start(self, workflow: str, trigger: str, root: Path, pattern: str, now: datetime) -> None:
        """Take (or, with backfill, release) the trigger's baseline now, before the scheduler says it started."""
        st = self.state(workflow, trigger)
        if not st.baselined:
            self._baseline(workflow, trigger, root, pattern, now, st)

    def _baseline(self, workflow: str, trigger: str, root: Path, pattern: str, now: datetime,
                  st: WatchState) -> None:
        """First start of a trigger: what is already there is the baseline, unless --backfill (then a baseline
        taken earlier is released to fire too)."""
        st.baselined = True
        if self.backfill:
            released = self.store.release_baseline(workflow, trigger)
            if not self.store.has_baseline(workflow, trigger):
                self.store.take_baseline(workflow, trigger, [], now)
            if self.on_baseline:
                self.on_baseline(workflow, trigger, str(root), 0, released)
            st.known = self.store.known_paths(workflow, trigger)
            return
        if self.store.has_baseline(workflow, trigger):
            return
        files = list(list_files(root, pattern, st.known)) if root.is_dir() else []
        n = self.store.take_baseline(workflow, trigger, files, now)
        st.known |= {p for p, _, _ in files} if n else set()
        if self.on_baseline:
            self.on_baseline(workflow, trigger, str(root), n, 0)


@dataclass(frozen=True)
class ClosedBatch:
    workflow: str
    trigger: str
    batch_id: int
    firing_id: int
    files: list[str]
    reason: str  # size | window


def batch_properties(trigger: str, files: list[str]) -> Callable[[int], dict[str, Any]]:
    return lambda batch_id: {EVENT_FILES: list(files), EVENT_BATCH_ID: batch_id, EVENT_TRIGGER: trigger}


def close_batches(
    store: SchedulerStore, workflow: str, trigger: str, size: int, window_seconds: float, now: datetime,
) -> list[ClosedBatch]:
    """Close every batch Glue would close now: full batches of `size`, then the rest if its first event is at
    least `window_seconds` old. Each batch and its firing are written atomically."""
    pending = store.pending_events(workflow, trigger)
    groups: list[tuple[list[Event], str]] = []
    i = 0
    while len(pending) - i >= size:
        groups.append((pending[i:i + size], "size"))
        i += size
    rest = pending[i:]
    if rest and now - rest[0].seen_at >= timedelta(seconds=window_seconds):
        groups.append((rest, "window"))
    out: list[ClosedBatch] = []
    for events, reason in groups:
        files = [e.path for e in events]
        res = store.close_batch(workflow, trigger, files, reason, now, batch_properties(trigger, files))
        if res is not None:
            out.append(ClosedBatch(workflow, trigger, res[0], res[1], files, reason))
    return out


class Notifier:
    """OS file notifications (watchdog) for the watched folders: a change marks the folder dirty and wakes the
    loop. Anything that fails here (no inotify, too many watches) only means we rely on the listing poll."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake
        self.dirty: set[str] = set()
        self._lock = threading.Lock()
        self._watches: dict[str, Any] = {}
        self._observer: Any = None
        self.error: str | None = None
        try:
            from watchdog.observers import Observer

            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
        except Exception as e:  # noqa: BLE001
            self.error = f"{type(e).__name__}: {e}"
            self._observer = None

    @property
    def active(self) -> bool:
        return self._observer is not None

    def watch(self, root: str) -> bool:
        """Watch an existing folder (idempotent); False when only polling will see it."""
        if self._observer is None or root in self._watches or not os.path.isdir(root):
            return root in self._watches
        from watchdog.events import FileSystemEventHandler

        notifier = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                with notifier._lock:
                    notifier.dirty.add(root)
                notifier.wake.set()

        try:
            self._watches[root] = self._observer.schedule(Handler(), root, recursive=True)
        except Exception as e:  # noqa: BLE001
            self.error = f"{type(e).__name__}: {e}"
            return False
        return True

    def unwatch_missing(self) -> None:
        """Drop watches of folders that were removed (they are re-added when the folder comes back)."""
        for root in [r for r in self._watches if not os.path.isdir(r)]:
            with contextlib.suppress(Exception):
                self._observer.unschedule(self._watches.pop(root))

    def take_dirty(self) -> set[str]:
        with self._lock:
            out, self.dirty = self.dirty, set()
        return out

    def stop(self) -> None:
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(timeout=5)
