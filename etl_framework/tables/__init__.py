"""Table formats (SPEC §11): one module per format behind `base.TableFormat`; every caller goes through here.

Adding a format is one module with a `TableFormat` subclass, its line in `FORMATS`, and its line in the contract
suite (tests/spark/test_table_contract.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_framework.tables.base import CommitRecord, CommitRequest, TableFormat, WriteResult
from etl_framework.tables.delta import DeltaFormat
from etl_framework.tables.fs import Storage
from etl_framework.tables.iceberg import IcebergFormat
from etl_framework.tables.parquet import ParquetFormat

if TYPE_CHECKING:
    from etl_framework.config.model import EnvConfig

FORMATS: dict[str, TableFormat] = {f.name: f for f in (DeltaFormat(), ParquetFormat(), IcebergFormat())}

__all__ = ["FORMATS", "CommitRecord", "CommitRequest", "Storage", "TableFormat", "WriteResult", "detect_format",
           "storage_for", "table_format"]


def table_format(name: str) -> TableFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown table format '{name}' (one of {', '.join(FORMATS)})") from None


def detect_format(path: str, storage: Storage) -> str | None:
    """The format of the table in a folder (by its marker), or None."""
    for fmt in FORMATS.values():
        if fmt.detect(path, storage):
            return fmt.name
    return None


def storage_for(env_config: EnvConfig | None, project_root: Path | str | None = None) -> Storage:
    """How this env reaches its tables without Spark (AWS endpoint, the embedded Iceberg catalog's file)."""
    if env_config is None:
        return Storage()
    base = Storage.from_aws(env_config.aws)
    glue = env_config.catalog.backend == "glue"
    ice = None if glue else str(iceberg_catalog_file(env_config, project_root))
    return Storage(region=base.region, endpoint_url=base.endpoint_url, iceberg_catalog=ice, glue_catalog=glue)


def iceberg_catalog_file(env_config: Any, project_root: Path | str | None) -> Path:
    """The local Iceberg JDBC catalog lives beside the local catalog file (`.etl/iceberg_catalog.db`)."""
    p = Path(env_config.catalog.path)
    if not p.is_absolute():
        p = Path(project_root or ".") / p
    return p.resolve().with_name("iceberg_catalog.db")
