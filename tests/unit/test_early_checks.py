"""`etl validate` finds, before any Spark start, a partition column the job cannot produce and a catalog table
name with a typo (issue 22 part 4), each with did-you-mean; a missing table at run time is named the same way."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from etl_framework.catalog.base import Column, TableNotFound, new_table, put_table, require_table
from etl_framework.catalog.local import LocalCatalog
from etl_framework.cli import cli
from etl_framework.cli.common import run_cli
from etl_framework.config.lineage import output_columns
from etl_framework.config.model import JobConfig

JOB = """\
job: daily
sources:
  orders:
    format: csv
    path: {raw}
    schema: {{order_id: long, amount: double, ts: timestamp}}
  shops:
    format: catalog
    table: {table}
transform:
{steps}
target:
  format: delta
  path: {lake}/daily
  partition_by: [{part}]
"""


def _project(tmp_path: Path, *, table: str = "shop.stores", part: str = "order_date",
             steps: str = "  - with_columns: {order_date: to_date(ts)}") -> Path:
    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    raw = tmp_path / "raw" / "orders"
    (raw / "dt=2024-01-01").mkdir(parents=True)
    (raw / "dt=2024-01-01" / "a.csv").write_text("1,2.0,2024-01-01 00:00:00\n")
    (root / "conf" / "local.yaml").write_text("catalog: {backend: local, path: ../.etl/catalog.db}\n")
    cat = LocalCatalog(root / ".etl" / "catalog.db")
    (root / ".etl").mkdir()
    put_table(cat, new_table("shop", "stores", "parquet", str(tmp_path / "stores"),
                             [Column("store_id", "int"), Column("name", "string")], []))
    cat.close()
    (root / "jobs" / "daily.yaml").write_text(JOB.format(raw=raw, table=table, steps=steps, lake=tmp_path / "lake",
                                                        part=part))
    return root


def _validate(root: Path) -> tuple[int, list[dict]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_cli(cli, ["--project-dir", str(root), "validate", "--json"])
    return rc, [e for r in json.loads(out.getvalue()) for e in r["errors"]]


def test_good_job_passes_and_hive_folder_columns_count(tmp_path: Path) -> None:
    root = _project(tmp_path, part="dt")  # `dt` comes from the dt=... folders, not the declared schema
    rc, errors = _validate(root)
    assert rc == 0, errors


def test_bad_partition_column_with_did_you_mean(tmp_path: Path) -> None:
    root = _project(tmp_path, part="order_dat")
    rc, errors = _validate(root)
    assert rc == 2
    (e,) = errors
    text = (root / "jobs" / "daily.yaml").read_text().splitlines()
    assert e["line"] == next(i for i, t in enumerate(text, 1) if "partition_by" in t)
    assert "partition column 'order_dat' is not a column the job produces" in e["message"]
    assert "did you mean 'order_date'?" in e["message"]


def test_catalog_typo_in_source_and_sql_with_did_you_mean(tmp_path: Path) -> None:
    steps = ("  - sql: |\n      SELECT o.*, to_date(o.ts) AS order_date FROM orders o\n"
             "      JOIN shop.stoers s ON s.store_id = o.order_id\n")
    root = _project(tmp_path, table="shop.stors", steps=steps)
    rc, errors = _validate(root)
    assert rc == 2
    msgs = sorted((e["line"], e["message"]) for e in errors)
    assert len(msgs) == 2, msgs
    assert "catalog table 'shop.stors'" in msgs[0][1] and "did you mean 'shop.stores'?" in msgs[0][1]
    assert "catalog table 'shop.stoers'" in msgs[1][1] and "did you mean 'shop.stores'?" in msgs[1][1]
    text = (root / "jobs" / "daily.yaml").read_text().splitlines()
    assert msgs[1][0] == next(i for i, t in enumerate(text, 1) if "shop.stoers" in t)  # the SQL line naming it


def test_tables_the_project_makes_are_no_typo(tmp_path: Path) -> None:
    root = _project(tmp_path, table="shop.orders_quarantine")
    (root / "jobs" / "load.yaml").write_text(
        "job: load\nsources: {o: {format: csv, path: /nowhere}}\ntarget: {path: /tmp/x}\n"
        "register: {database: shop, table: orders}\n")
    rc, errors = _validate(root)
    assert rc == 0, errors


@pytest.mark.parametrize("steps", [
    "  - python: mymod:fn",                                      # a python step: unknown columns
    "  - sql: SELECT *, upper(ts) FROM orders",                  # Spark names the expression itself
    "  - sql: SELECT * FROM orders JOIN shop.unknown_tbl u ON true",  # not in the catalog: typo error only
])
def test_unknown_columns_say_nothing(tmp_path: Path, steps: str) -> None:
    root = _project(tmp_path, part="whatever", steps=steps)
    _rc, errors = _validate(root)
    assert not [e for e in errors if "partition column" in e["message"]], errors


def test_lineage_through_steps() -> None:
    cfg = JobConfig.model_validate({
        "job": "j", "target": {"path": "/t"},
        "sources": {"a": {"format": "csv", "path": "/no/such/file.csv", "schema": {"id": "int", "v": "double"}},
                    "b": {"format": "csv", "path": "/no/such/b.csv", "schema": {"id": "int", "w": "int"}}},
        "transform": [{"rename": {"v": "value"}}, {"join": {"with": "b", "on": "id"}},
                      {"select": ["id", "value * 2 AS dbl", "w"]}, {"aggregate": {"group_by": ["id"],
                                                                                  "aggs": {"n": "count(*)"}}}]})
    assert output_columns(cfg) is None  # the source folder does not exist: partitions cannot be listed
    cfg.sources["a"].path = __file__
    cfg.sources["b"].path = __file__
    assert output_columns(cfg) == ["id", "n"]


def test_missing_table_at_run_time_has_did_you_mean(tmp_path: Path) -> None:
    cat = LocalCatalog(tmp_path / "c.db")
    put_table(cat, new_table("shop", "orders", "parquet", str(tmp_path), [Column("id", "int")], []))
    with pytest.raises(TableNotFound, match="did you mean 'shop.orders'"):
        require_table(cat, "shop.ordres")


def test_validate_starts_no_jvm(tmp_path: Path) -> None:
    root = _project(tmp_path, part="order_dat")
    code = ("import sys\nfrom etl_framework.cli import cli\nfrom etl_framework.cli.common import run_cli\n"
            f"rc = run_cli(cli, ['--project-dir', {str(root)!r}, 'validate'])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'great_expectations', 'py4j'))\n"
            "print(rc, heavy)\n")
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "2 []", res.stdout + res.stderr
    assert "did you mean 'order_date'?" in res.stderr and "Traceback" not in res.stderr
