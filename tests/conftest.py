"""Shared fixtures: the repository root (itself an etl project) and a throwaway project per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Tests use small data: every Spark process they start (in-process and `etl` subprocesses) takes the quick-start
# JIT, which saves ~3 s per process on 2 cores (runtime/spark.py: QUICK_START_ENV).
os.environ.setdefault("ETL_SPARK_QUICK_START", "1")


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example project (conf/, jobs/, spark-conf/) in a temp dir, with its own state and data."""
    root = tmp_path / "proj"
    root.mkdir()
    for name in ("conf", "jobs", "spark-conf"):
        if (REPO / name).exists():
            shutil.copytree(REPO / name, root / name)
    return root


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local[2] SparkSession for the whole test run (created only when a test asks for it)."""
    from etl_framework.runtime.spark import get_spark

    session = get_spark(REPO, {"spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()
