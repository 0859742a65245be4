"""Alerting locally (SPEC §13): a failing job and a quality failure each POST one JSON notification to a webhook
server started here on 127.0.0.1; a dead or hanging webhook leaves the run's result as it was, with a warning and a
record of the failed notification in the run record."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from etl_framework.config.model import EnvConfig
from etl_framework.state.runs import SqliteRunStore
from tests.spark.test_runtime_helpers import job, run, trips, write_csv


class Hook:
    """A webhook receiver: every POST body, parsed; `hang` seconds of silence before answering."""

    def __init__(self, hang: float = 0.0) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if hang:
                    time.sleep(hang)
                hook.bodies.append(body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def env_with(**notifications: Any) -> EnvConfig:
    return EnvConfig.model_validate({"notifications": notifications})


def dead_url() -> str:
    """A free port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def test_a_failing_job_posts_one_json_notification(spark: Any, tmp_path: Path, hook: Hook) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_csv(src, trips(range(3)))
    cfg = job(src, out, transform=[{"sql": "SELECT no_such_column FROM previous"}])
    res = run(spark, cfg, tmp_path / "state.db", env_config=env_with(webhook=hook.url))
    assert res.status == "FAILED" and res.exit_code != 3
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert {k: body[k] for k in ("event", "job", "run_id", "state", "source")} == {
        "event": "failed", "job": "rt_job", "run_id": res.run_id, "state": "FAILED", "source": "etl_framework"}
    assert "no_such_column" in body["error"] and body["report"]


def test_a_quality_failure_posts_its_summary_and_success_stays_quiet(spark: Any, tmp_path: Path,
                                                                     hook: Hook) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_csv(src, trips(range(4)) + [",2024-01-01 10:00:00,1,1.0,1.0"])  # a null trip_id
    quality = [{"expect": "expect_column_values_to_not_be_null", "column": "trip_id"}]
    env = env_with(webhook=hook.url)
    res = run(spark, job(src, out, quality=quality), tmp_path / "state.db", env_config=env)
    assert res.exit_code == 3
    assert [b["event"] for b in hook.bodies] == ["quality_failed"]
    q = hook.bodies[0]["quality"]
    assert q["rows_in"] == 5 and q["failed"] == ["expect_column_values_to_not_be_null(trip_id)"]

    ok = run(spark, job(src, tmp_path / "ok"), tmp_path / "state.db", env_config=env)
    assert ok.ok and len(hook.bodies) == 1  # succeeded is opt-in


def test_a_dead_or_hanging_webhook_never_changes_the_run(spark: Any, tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_csv(src, trips(range(3)))
    hanging = Hook(hang=3.0)
    try:
        for i, url in enumerate([dead_url(), hanging.url]):
            env = env_with(webhook=url, events=["succeeded", "failed"], timeout_seconds=0.5, attempts=2)
            t0 = time.monotonic()
            res = run(spark, job(src, tmp_path / f"out{i}"), tmp_path / "state.db", env_config=env)
            assert res.ok and res.exit_code == 0  # the run's result is its own
            assert time.monotonic() - t0 < 60
            store = SqliteRunStore(tmp_path / "state.db")
            try:
                record = store.get_run(res.run_id)
            finally:
                store.close()
            sent = record["details"]["notifications"]
            assert [(n["event"], n["target"], n["delivered"]) for n in sent] == [("succeeded", "webhook", False)]
            assert ("timed out" in sent[0]["result"]) == (i == 1), sent
    finally:
        hanging.close()
