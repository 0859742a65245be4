"""Target write locks with leases: what both state backends share, and the run's side of a lock (SPEC §13).

A lock is held on a table's key (`tables.fs.target_key`: symlinks resolved, `s3a://` spelled `s3://`). Two keys
conflict when one is the other or lies inside it, so a job writing `/lake/a` and another writing `/lake/a/b` (or
the same folder through a symlink) exclude each other. A run holds the keys of its target and of its quarantine
table.

A holder is alive while (1) its run record says RUNNING and (2) on this host its process exists, on another host
its lease has not expired. The holding run renews the lease from a thread every `LEASE_SECONDS / 4`; a Glue run that
is OOM-killed, stopped or timed out stops renewing, and the next run takes the lock over once the lease is past,
recording the old run as FAILED with the reason. A run that finds its lease was taken over stops before it commits.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any, Protocol

LEASE_SECONDS = float(os.environ.get("ETL_LOCK_LEASE_SECONDS", "120"))


def overlaps(a: str, b: str) -> bool:
    """Whether two lock keys name the same table or one lies inside the other."""
    a, b = a.rstrip("/") or "/", b.rstrip("/") or "/"
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def when(epoch: float | None) -> str:
    if not epoch:
        return "never"
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def dead_reason(holder: dict[str, Any], run_status: str | None, now: float | None = None) -> str | None:
    """Why the holder of a lock no longer holds it, or None while it is alive."""
    from etl_framework.state.db import pid_alive

    if run_status is not None and run_status != "RUNNING":
        return f"its run ended ({run_status})"
    if holder.get("host") == socket.gethostname():
        if not pid_alive(holder.get("pid")):
            return f"its process (pid {holder.get('pid')}) ended without finishing the run"
        return None
    lease = holder.get("lease_until")
    now = time.time() if now is None else now
    if lease is None or float(lease) < now:
        return (f"its lease expired at {when(lease)} with no heartbeat since {when(holder.get('heartbeat_at'))} "
                f"(the process on {holder.get('host')} was killed, stopped or timed out)")
    return None


def takeover_error(holder: dict[str, Any], reason: str, run_id: str, target: str) -> str:
    return f"{reason}; run {run_id} took over the write lock of {target}"


def unlock_error(holder: dict[str, Any], by: str) -> str:
    return (f"the write lock of {holder.get('target')} was released by hand ({by}); this run no longer holds it "
            "and did not commit after that")


def unlocker() -> str:
    """Who released a lock by hand, for the log and the holder's run record."""
    import getpass

    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in a container is not an error
        user = "unknown"
    return f"etl runs --unlock by {user} on {socket.gethostname()} at {when(time.time())}"


class LockStore(Protocol):
    """The lock half of a run store (SQLite and DynamoDB implement it)."""

    def acquire_target_lock(self, targets: str | list[str], run_id: str, job: str) -> None: ...
    def renew_target_lock(self, targets: list[str], run_id: str) -> bool: ...
    def release_target_lock(self, targets: str | list[str], run_id: str) -> None: ...


def as_keys(targets: str | list[str] | tuple[str, ...]) -> list[str]:
    return [targets] if isinstance(targets, str) else list(dict.fromkeys(targets))


class HeldLock:
    """The run's side of its locks: a thread renews the lease; `check()` says whether they are still ours."""

    def __init__(self, store: LockStore, keys: list[str], run_id: str) -> None:
        self.store, self.keys, self.run_id = store, keys, run_id
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="etl-lock-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 4):
            try:
                if not self.store.renew_target_lock(self.keys, self.run_id):
                    self.lost = "another run took over this run's write lock (its lease had expired)"
                    return
            except Exception:  # noqa: BLE001, S112 - a missed beat is retried; the lease covers three more
                continue

    def check(self) -> str | None:
        """None while the locks are ours; else why not (the run must not commit)."""
        return self.lost

    def release(self) -> None:
        self._stop.set()
        self.store.release_target_lock(self.keys, self.run_id)
