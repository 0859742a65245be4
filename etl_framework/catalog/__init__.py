"""The catalog: the Glue Data Catalog's model with two backends, `local` (SQLite) and `glue` (boto3)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etl_framework.catalog.base import Catalog
    from etl_framework.config.model import EnvConfig


def catalog_for(env_config: EnvConfig, project_root: Path | None = None) -> Catalog:
    """The catalog backend the env config names (`catalog.backend`); a relative local path resolves against
    `project_root` (the project discovery already makes it absolute)."""
    if env_config.catalog.backend == "glue":
        from etl_framework.catalog.glue import GlueCatalog

        return GlueCatalog(region=env_config.aws.region, endpoint_url=env_config.aws.endpoint_url)
    from etl_framework.catalog.local import LocalCatalog

    path = Path(env_config.catalog.path)
    if not path.is_absolute() and project_root is not None:
        path = project_root / path
    return LocalCatalog(path)
