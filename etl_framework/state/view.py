"""The read-only view of the state that the report (and anything else that only looks) uses: it asks the stores
through their interfaces, so a report works on every backend and never guesses a table's schema."""

from __future__ import annotations

from typing import Any


class StateView:
    def __init__(self, state: Any) -> None:
        self.state = state

    @property
    def where(self) -> str:
        return str(self.state.where)

    def job_run(self, run_id: str) -> dict[str, Any] | None:
        return self.state.runs.get_run(run_id)  # type: ignore[no-any-return]

    def workflow_run(self, run_id: str) -> dict[str, Any] | None:
        return self.state.workflows.get_run(run_id)  # type: ignore[no-any-return]

    def recent_runs(self, limit: int = 5, top_level: bool = False) -> list[tuple[str, str, str, str]]:
        """(started_at, kind, run_id, name and state) of the newest job and workflow runs, newest first;
        `top_level`: without the job runs of a workflow run."""
        out = [(str(r.get("started_at") or ""), "workflow run", r["run_id"], f"{r['workflow']} {r['state']}")
               for r in self.state.workflows.list_runs(limit=limit)]
        jobs = self.state.runs.list_runs(limit=limit * 20 if top_level else limit)
        out += [(str(r.get("started_at") or ""), "job run", r["run_id"], f"{r['job']} {r['status']}")
                for r in jobs if not (top_level and r.get("workflow_run_id"))]
        out.sort(key=lambda t: t[0], reverse=True)
        return out[:limit]

    def bookmark_entries(self, job: str) -> list[dict[str, Any]]:
        return self.state.bookmarks.entries(job)  # type: ignore[no-any-return]

    def crawler_runs(self, crawler: str) -> list[dict[str, Any]]:
        return self.state.crawlers.runs(crawler, limit=500)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.state.close()
