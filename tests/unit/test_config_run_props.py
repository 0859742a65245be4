"""`${run.event_files}` (set by the scheduler on event-triggered runs) is a known run property only for jobs of
a workflow that has an event trigger; elsewhere it is an unknown reference with its position."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl_framework.cli import cli
from etl_framework.cli.common import run_cli

JOB = """job: loader
sources:
  raw: {format: csv, path: ../in, options: {header: true}}
transform:
  - filter: "'${run.event_files}' <> ''"
target: {format: parquet, path: ../out}
"""
WF = """workflow: wf
jobs: {loader: loader.yaml}
triggers:
  - {name: go, type: %s, %s actions: [{job: loader}]}
"""


@pytest.mark.parametrize(("kind", "extra", "code"), [
    ("event", "watch: {path: ../in, pattern: '*.csv'},", 0),
    ("on_demand", "", 2),
])
def test_event_run_properties(tmp_path: Path, kind: str, extra: str, code: int,
                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "local.yaml").write_text("vars: {}\n")
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "loader.yaml").write_text(JOB)
    (tmp_path / "jobs" / "wf.yaml").write_text(WF % (kind, extra))
    assert run_cli(cli, ["--project-dir", str(tmp_path), "validate", str(tmp_path / "jobs" / "loader.yaml")]) == code
    if code:
        assert "loader.yaml:5:" in capsys.readouterr().err
