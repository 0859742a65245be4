"""State (SPEC §6, §7, §13): one interface per concern (`state/base.py`) — job runs and target locks, workflow runs
and their slots, bookmarks, crawler runs — with a SQLite and a DynamoDB implementation, chosen here and nowhere
else from the env config's `state.backend`; `StateView` (`state/view.py`) is the read-only view the report uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etl_framework.state.base import BookmarkStore, CrawlerStore, RunStore, WorkflowRunStore

BACKENDS = ("sqlite", "dynamodb")


class State:
    """The stores of one env's state backend, each opened on first use (a DynamoDB backend shares one client)."""

    def __init__(self, env_config: Any) -> None:
        self.env_config = env_config
        self.backend = getattr(env_config.state, "backend", "sqlite")
        if self.backend not in BACKENDS:
            from etl_framework.errors import EtlError

            raise EtlError(f"state backend '{self.backend}' is not one of {', '.join(BACKENDS)}\n"
                           "  what to do: set state: {backend: sqlite} (or dynamodb) in the env config")
        self._open: dict[str, Any] = {}
        self._dynamo: Any = None

    @property
    def where(self) -> str:
        """Where the state lives, for messages."""
        st = self.env_config.state
        return f"DynamoDB table {st.table_prefix}state" if self.backend == "dynamodb" else str(st.path)

    def _store(self, kind: str) -> Any:
        if kind not in self._open:
            self._open[kind] = self._make(kind)
        return self._open[kind]

    def _make(self, kind: str) -> Any:
        if self.backend == "dynamodb":
            from etl_framework.state import dynamodb as d

            if self._dynamo is None:
                self._dynamo = d.DynamoState.from_env_config(self.env_config)
            cls = {"runs": d.DynamoRunStore, "workflows": d.DynamoWorkflowStore, "bookmarks": d.DynamoBookmarkStore,
                   "crawlers": d.DynamoCrawlerStore}[kind]
            return cls(state=self._dynamo)
        path = self.env_config.state.path
        if kind == "runs":
            from etl_framework.state.runs import SqliteRunStore

            return SqliteRunStore(path)
        if kind == "workflows":
            from etl_framework.state.workflows import SqliteWorkflowStore

            return SqliteWorkflowStore(path)
        if kind == "bookmarks":
            from etl_framework.state.bookmarks import SqliteBookmarkStore

            return SqliteBookmarkStore(path)
        from etl_framework.state.crawlers import SqliteCrawlerStore

        return SqliteCrawlerStore(path)

    @property
    def runs(self) -> RunStore:
        return self._store("runs")  # type: ignore[no-any-return]

    @property
    def workflows(self) -> WorkflowRunStore:
        return self._store("workflows")  # type: ignore[no-any-return]

    @property
    def bookmarks(self) -> BookmarkStore:
        return self._store("bookmarks")  # type: ignore[no-any-return]

    @property
    def crawlers(self) -> CrawlerStore:
        return self._store("crawlers")  # type: ignore[no-any-return]

    def view(self) -> Any:
        from etl_framework.state.view import StateView

        return StateView(self)

    def close(self) -> None:
        for store in self._open.values():
            close = getattr(store, "close", None)
            if callable(close):
                close()
        self._open.clear()


def open_state(env_config: Any) -> State:
    """The one factory of the state stores."""
    return State(env_config)


def open_crawler_store(env_config: Any) -> CrawlerStore:
    """An env config's crawler store; a path (a SQLite state file) is accepted for tests and tools."""
    if isinstance(env_config, str | Path):
        from etl_framework.state.crawlers import SqliteCrawlerStore

        return SqliteCrawlerStore(env_config)
    return open_state(env_config).crawlers
