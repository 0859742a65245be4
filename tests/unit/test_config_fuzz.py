"""Property: whatever happens to the example YAML files (lines deleted, duplicated, values retyped, junk inserted,
truncated), `etl validate` exits 0 or 2 and never prints a traceback or an internal error."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl_framework.cli import cli
from etl_framework.cli.common import run_cli
from tests.conftest import REPO

EXAMPLES = sorted(p.name for p in (REPO / "jobs").glob("*.yaml"))
JUNK = ["", "null", "~", "[", "]", "{", "}", "{a: 1}", "[1, 2]", "1", "-1", "1e999", "0.5", "true", "'x", '"x',
        "${env.zz}", "${", "${params.nope}", "${run.zz}", "${secret:X}", "$${x}", "cron(", "cron(0 2 * * ? *)",
        "\t", "::", "- a", "&a", "*a", "!!python/object:os.system", "expect_x", "SELECT", "SELECT * FROM",
        "a" * 300, "é☃", "%YAML 1.1", "---", "...", "? x", "|", ">", "#", "merge", "catalog", "FAILED",
        "on_demand", "conditional", "raw_trips", "trips_clean", "x.y", "<<: *a"]


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(EXAMPLES))
    lines = (REPO / "jobs" / name).read_text().splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "retype", "insert", "truncate", "indent", "dedent"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "retype":
            line = lines[i]
            if ":" in line:
                key, _, _ = line.partition(":")
                lines[i] = f"{key}: {draw(st.sampled_from(JUNK))}"
            else:
                lines[i] = line + " " + draw(st.sampled_from(JUNK))
        elif op == "insert":
            indent = " " * draw(st.integers(0, 6))
            lines.insert(i, indent + draw(st.sampled_from(JUNK)) + draw(st.sampled_from(["", ": ", ": x"])))
        elif op == "truncate":
            text = "\n".join(lines)
            cut = draw(st.integers(0, len(text)))
            lines = text[:cut].splitlines()
        elif op == "indent":
            lines[i] = "  " + lines[i]
        elif op == "dedent":
            lines[i] = lines[i].lstrip()
    return name, "\n".join(lines) + "\n"


_ROOT = Path(tempfile.mkdtemp(prefix="etl-fuzz-"))


def _project() -> Path:
    root = _ROOT / "proj"
    if not root.exists():
        for sub in ("conf", "jobs"):
            shutil.copytree(REPO / sub, root / sub)
    return root


@settings(max_examples=int(__import__("os").environ.get("FUZZ_N", "120")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation())
def test_validate_never_crashes_on_mutated_examples(mut: tuple[str, str]) -> None:
    name, text = mut
    root = _project()
    target = root / "jobs" / name
    original = (REPO / "jobs" / name).read_text()
    target.write_text(text)
    try:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = run_cli(cli, ["--project-dir", str(root), "validate"])
        output = out.getvalue() + err.getvalue()
        assert rc in (0, 2), output
        assert "Traceback" not in output
        assert "internal error" not in output, output
        if rc == 2:
            assert any(line.count(":") >= 3 for line in output.splitlines()), output  # file:line:col: message
    finally:
        target.write_text(original)


KEYS = ["job", "workflow", "params", "sources", "transform", "quality", "target", "crawl", "register", "format",
        "path", "table", "sql", "filter", "join", "with", "on", "union", "dedupe", "keys", "order_by", "expect",
        "column", "on_fail", "mode", "merge_keys", "partition_by", "triggers", "jobs", "crawlers", "name", "type",
        "actions", "conditions", "state", "schedule", "logical", "watch", "batch", "run_properties", "schema",
        "incremental", "aggregate", "aggs", "group_by", "select", "with_columns", "cast", "python", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                    st.sampled_from(JUNK + KEYS), st.text(max_size=8))
trees = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                     st.dictionaries(st.sampled_from(KEYS), kids, max_size=4)),
                     max_leaves=25)


@settings(max_examples=int(__import__("os").environ.get("FUZZ_N", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["job", "workflow"]), st.dictionaries(st.sampled_from(KEYS), trees, max_size=8))
def test_validate_never_crashes_on_random_structures(kind: str, body: dict) -> None:
    import json

    root = _project()
    target = root / "jobs" / "zz_random.yaml"
    body = {kind: "fuzz", **body}
    target.write_text(json.dumps(body, default=str))  # JSON is YAML
    try:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = run_cli(cli, ["--project-dir", str(root), "validate", str(target)])
        output = out.getvalue() + err.getvalue()
        assert rc in (0, 2), output
        assert "Traceback" not in output and "internal error" not in output, output
    finally:
        target.unlink()
