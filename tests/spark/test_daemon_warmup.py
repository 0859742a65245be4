"""The daemon's warm-up (`runtime.warmup`): its throwaway jobs run through the real engine and leave nothing behind.
Its failures are swallowed at daemon start, so this is where a job of it that stopped working would show."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest

from etl_framework.runtime import warmup


def test_warm_up_runs_its_jobs_and_deletes_its_project(spark: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(warmup, "ROUNDS", 1)
    assert warmup.warm_up(spark) is True
    assert list(tmp_path.iterdir()) == []
