"""`etl schema [--kind job|workflow|env|all]`: the JSON Schema of the config files, generated from the model, for
editors (`# yaml-language-server: $schema=...`) and CI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from etl_framework.cli.common import err


def register(group: click.Group) -> None:
    @group.command("schema")
    @click.option("--kind", type=click.Choice(["all", "job", "workflow", "env"]), default="all", show_default=True,
                  help="all: one schema that accepts a job or a workflow file")
    @click.option("--write", "write_dir", type=click.Path(file_okay=False, path_type=Path),
                  help="write job/workflow/env .schema.json files into this folder instead of printing")
    def schema(kind: str, write_dir: Path | None) -> None:
        """Print the JSON Schema of job and workflow files (generated from the config model)."""
        from etl_framework.config.schema import combined_schema, json_schema, write_schemas

        if write_dir is not None:
            for p in write_schemas(write_dir):
                err(f"wrote {p}")
            return
        data = combined_schema() if kind == "all" else json_schema(kind)
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
