"""`ctx`: what a `python:` transform step (and any stage) gets besides the DataFrame.

It mirrors what a Glue job script has at hand: the job's params (`getResolvedOptions`), the workflow run properties
(`get_workflow_run_properties` / `put_workflow_run_properties`), the Spark session and a logger.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class RunProperties(Protocol):
    """Workflow run properties, readable and writable by the jobs of a workflow run (Glue semantics)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


class LocalRunProperties:
    """In-memory run properties, for a job run outside a workflow (or a workflow engine that persists later)."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(initial or {})
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._data)


def properties_dict(props: Any) -> dict[str, Any]:
    """The run properties as a plain dict, whatever object holds them."""
    if props is None:
        return {}
    for name in ("as_dict", "to_dict", "all"):
        fn = getattr(props, name, None)
        if callable(fn):
            return dict(fn())
    if isinstance(props, dict):
        return dict(props)
    return {}


@dataclass
class JobContext:
    """Given to python steps as `ctx`: `fn(df, ctx) -> df`."""

    job: str
    run_id: str
    env: str
    params: dict[str, Any]
    spark: Any
    logger: logging.Logger
    run_properties: Any = field(default_factory=LocalRunProperties)
    workflow_run_id: str | None = None
    project_root: Path | None = None
    job_path: Path | None = None
    views: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def get_run_property(self, key: str, default: Any = None) -> Any:
        return self.run_properties.get(key, default)

    def put_run_property(self, key: str, value: Any) -> None:
        self.run_properties.put(key, value)

    def get_workflow_run_properties(self) -> dict[str, Any]:
        """Glue's name for reading all run properties."""
        return properties_dict(self.run_properties)

    def put_workflow_run_properties(self, values: dict[str, Any]) -> None:
        """Glue's name for writing run properties."""
        for k, v in values.items():
            self.run_properties.put(k, v)

    def secret(self, name: str) -> str:
        """A secret's value at the moment of use (environment variable NAME, else AWS Secrets Manager)."""
        from etl_framework.config.interpolate import resolve_secrets
        from etl_framework.redaction import protect_spark

        value = str(resolve_secrets("${secret:" + name + "}"))
        protect_spark(self.spark)
        return value

    def view(self, name: str) -> Any:
        """A source's DataFrame by its key."""
        return self.views[name]
