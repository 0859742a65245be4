"""`etl schema` is generated from the model, validates the example files with `jsonschema`, and the copies the
examples point at (`# yaml-language-server: $schema=...`) are in sync."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from etl_framework.cli import cli
from etl_framework.cli.common import run_cli
from etl_framework.config.schema import KINDS, schema_text
from tests.conftest import REPO


def etl_schema(*args: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_cli(cli, ["schema", *args]) == 0
    return json.loads(out.getvalue())


def example_files() -> list[Path]:
    return sorted((REPO / "jobs").glob("*.yaml")) + sorted((REPO / "conf").glob("*.yaml"))


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_schema_validates_examples(path: Path) -> None:
    data = YAML(typ="safe").load(path.read_text())
    kind = "env" if path.parent.name == "conf" else "workflow" if "workflow" in data else "job"
    jsonschema.validate(data, etl_schema("--kind", kind))
    if kind != "env":
        jsonschema.validate(data, etl_schema())  # the combined schema accepts both file kinds


def test_schema_rejects_a_bad_file() -> None:
    bad = {"job": "x", "sources": {"s": {"format": "csvv", "path": "p"}}, "target": {"path": "t"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, etl_schema("--kind", "job"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"workflow": "w", "triggers": [], "bogus": 1}, etl_schema())


def test_expect_lists_gx_expectation_types() -> None:
    s = etl_schema("--kind", "job")
    enum = s["$defs"]["Expectation"]["properties"]["expect"]["enum"]
    assert "expect_column_values_to_not_be_null" in enum and len(enum) > 50


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_examples_name_a_schema_that_exists_and_is_current(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    m = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert m, f"{path} must start with a yaml-language-server $schema line"
    target = (path.parent / m.group(1)).resolve()
    assert target.is_file()
    kind = target.name.split(".")[0]
    assert kind in KINDS
    assert target.read_text() == schema_text(kind), "run: etl schema --write jobs/.schemas"
