"""The HTML run report (`etl report`): one self-contained static file per job run or workflow run.

`write_report` is what `etl run` / `etl workflow run` call after a run to leave a picture of it behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["default_report_path", "write_report"]


def default_report_path(project: Any, run_id: str) -> Path:
    """`<project>/reports/<run_id>.html` (git-ignored)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return Path(project.root) / "reports" / f"{safe}.html"


def write_report(
    project: Any,
    run_id: str | None = None,
    workflow_run_id: str | None = None,
    out: str | Path | None = None,
    env: str = "local",
) -> Path:
    """Render the report of a job run (`run_id`) or workflow run (`workflow_run_id`; neither: the latest
    run) and
    write it atomically; return its path. Raises UsageError (exit 2) naming recent runs for an unknown id."""
    from etl_framework.report.load import build_report
    from etl_framework.report.render import render

    report = build_report(project, env, run_id=run_id, workflow_run_id=workflow_run_id)
    rid = report.workflow.run_id if report.workflow else report.job_runs[0].run_id
    path = Path(out) if out else default_report_path(project, rid)
    path = path.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    from etl_framework.redaction import redact_text

    tmp.write_text(redact_text(render(report)), encoding="utf-8")  # no secret this process resolved, ever
    os.replace(tmp, path)
    return path
