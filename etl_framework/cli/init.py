"""`etl init DIR`: a new project (conf/, jobs/, spark-conf/, a little sample data) that validates and runs as is."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from etl_framework.cli.common import err

LOCAL_YAML = """\
# yaml-language-server: $schema=../jobs/.schemas/env.schema.json
# Local environment (the default): files on this machine, embedded SQLite state and catalog.
# Relative paths resolve against this file: ../data/raw is <project>/data/raw.
vars:
  raw_root: ../data/raw
  lake_root: ../data/lake
state:
  backend: sqlite
  path: ../.etl/state.db
catalog:
  backend: local
  path: ../.etl/catalog.db
spark:
  spark.sql.shuffle.partitions: 4
"""

DEV_YAML = """\
# yaml-language-server: $schema=../jobs/.schemas/env.schema.json
# An AWS environment (etl --env dev ...): replace the bucket, region and role with yours.
vars:
  raw_root: s3://my-bucket/raw
  lake_root: s3://my-bucket/lake
state:
  backend: dynamodb
  table_prefix: etl_dev_
catalog:
  backend: glue
aws:
  region: us-east-1
deploy:
  project: PROJECT_NAME                 # tagged on every Glue resource: --prune deletes only this project's
  s3_prefix: s3://my-bucket/etl-artifacts   # files go under <s3_prefix>/<project>/<env>/
  role: arn:aws:iam::123456789012:role/my-glue-role
"""

JOB_YAML = """\
# yaml-language-server: $schema=.schemas/job.schema.json
# A first job: read the sample orders (CSV), keep the paid ones, publish them as a Delta table by day.
# Run it: etl run jobs/orders_clean.yaml
job: orders_clean
description: Paid orders, partitioned by order day
params:
  min_amount: 0
sources:
  orders:
    format: csv
    path: ${env.raw_root}/orders/
    options: {header: true}
    schema: {order_id: long, ordered_at: timestamp, customer: string, amount: double, status: string}
    incremental: {mode: files}
transform:
  - sql: SELECT * FROM orders WHERE status = 'paid' AND amount > ${params.min_amount}
  - with_columns:
      order_date: to_date(ordered_at)
  - dedupe: {keys: [order_id], order_by: ordered_at DESC}
quality:
  - {expect: expect_column_values_to_not_be_null, column: order_id, on_fail: fail}
  - {expect: expect_column_values_to_be_between, column: amount, min_value: 0, max_value: 100000, on_fail: warn}
target:
  format: delta
  path: ${env.lake_root}/orders
  partition_by: [order_date]
  mode: append
register: {database: sales, table: orders}
"""

WORKFLOW_YAML = """\
# yaml-language-server: $schema=.schemas/workflow.schema.json
# A first workflow: run it with `etl workflow run jobs/daily.yaml`; draw it with `etl plan jobs/daily.yaml`.
workflow: daily
jobs:
  orders_clean: orders_clean.yaml
triggers:
  - {name: start, type: on_demand, actions: [{job: orders_clean}]}
  - name: every_morning
    type: scheduled
    schedule: cron(0 6 * * ? *)
    actions: [{job: orders_clean}]
"""

ORDERS_CSV = """\
order_id,ordered_at,customer,amount,status
1,2026-01-05 09:12:00,alice,120.50,paid
2,2026-01-05 10:40:00,bob,35.00,cancelled
3,2026-01-06 14:03:00,carol,80.25,paid
4,2026-01-06 16:30:00,alice,12.00,paid
"""

GITIGNORE = ".etl/\ndata/lake/\nreports/\n"


def create_project(root: Path, force: bool = False) -> list[Path]:
    """Write the project files; refuse to overwrite an existing project unless `force`."""
    from etl_framework.config.schema import write_schemas
    from etl_framework.deploy.spec import default_project_name
    from etl_framework.errors import UsageError
    from etl_framework.runtime.spark import packaged_conf_dir

    existing = [p for p in ("conf", "jobs", "spark-conf") if (root / p).exists()]
    if existing and not force:
        raise UsageError(f"{root} already holds {', '.join(existing)}/\n  what to do: choose a new directory, or "
                         "pass --force to overwrite the generated files")
    files = {
        "conf/local.yaml": LOCAL_YAML,
        "conf/dev.yaml": DEV_YAML.replace("PROJECT_NAME", default_project_name(root)),
        "jobs/orders_clean.yaml": JOB_YAML,
        "jobs/daily.yaml": WORKFLOW_YAML,
        "data/raw/orders/part-0.csv": ORDERS_CSV,
        ".gitignore": GITIGNORE,
    }
    written = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    (root / "spark-conf").mkdir(parents=True, exist_ok=True)
    for f in packaged_conf_dir().iterdir():
        if f.is_file():
            shutil.copyfile(f, root / "spark-conf" / f.name)
            written.append(root / "spark-conf" / f.name)
    written += write_schemas(root / "jobs" / ".schemas")
    return written


def register(group: click.Group) -> None:
    @group.command("init")
    @click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
    @click.option("--force", is_flag=True, help="overwrite the generated files of an existing project")
    def init(directory: Path, force: bool) -> None:
        """Create a project (conf/, jobs/, spark-conf/, sample data) that validates and runs as is."""
        root = directory.expanduser().resolve()
        written = create_project(root, force)
        err(f"created {len(written)} files in {root}")
        err(f"next: cd {directory} && etl validate && etl plan jobs/daily.yaml && etl run jobs/orders_clean.yaml")
