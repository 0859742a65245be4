"""Test hook for the crash tests (tests/e2e): `ETL_FAULT_KILL_AT=<point>` kills the process with SIGKILL exactly at
a named point of a write or a run, so exactly-once can be checked at every point that matters."""

from __future__ import annotations

import os
import signal


def fault(point: str) -> None:
    """Die exactly here when ETL_FAULT_KILL_AT names this point."""
    if os.environ.get("ETL_FAULT_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
