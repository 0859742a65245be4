"""The hook `etl show RUN_ID` calls (cli/runs.py): the quality gate's stored results as a table."""

from __future__ import annotations

from typing import Any

from etl_framework.quality.report import quality_table


def render_quality(console: Any, details: Any) -> None:
    """Print the gate's summary line and one table row per expectation (details: what run_quality stored)."""
    results = details.get("results", []) if isinstance(details, dict) else details
    console.print()
    if isinstance(details, dict) and details.get("summary"):
        console.print(str(details["summary"]), markup=False)
    if isinstance(results, list) and results:
        console.print(quality_table(results))
