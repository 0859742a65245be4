"""One local[2] SparkSession for the whole test run (SPEC: share the session, keep data small)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from etl_framework.runtime.spark import get_spark

    session = get_spark(REPO, {"spark.sql.shuffle.partitions": "2"})
    yield session
    session.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/spark/" in str(item.fspath):
            item.add_marker(pytest.mark.spark)
