"""Semantic checks beyond the model (filled in next)."""

from __future__ import annotations

from typing import Any


def check_job(loaded: Any, project: Any, run_known: bool = False) -> list:
    return []


def check_workflow(loaded: Any, project: Any) -> list:
    return []
