#!/usr/bin/env python
"""Generate docs/reference.md: the YAML reference (every key of job files, workflow files and env configs,
with
its type, default, allowed values and description) from the pydantic config model, and the CLI reference from
the click group. `tests/unit/test_report_reference.py` regenerates it and fails when the committed file
differs,
so the reference cannot drift from the code.

    python scripts/gen_reference.py           # write docs/reference.md (and README.md's generated blocks)
    python scripts/gen_reference.py --check   # exit 1 if either is stale
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from etl_framework.config import model as M

OUT = ROOT / "docs" / "reference.md"
README = ROOT / "README.md"

FILE_KINDS: list[tuple[str, type[BaseModel], str]] = [
    ("Job file", M.JobConfig, "`jobs/<name>.yaml`, top-level key `job:`; run with `etl run FILE`."),
    (
        "Workflow file",
        M.WorkflowConfig,
        "`jobs/<name>.yaml`, top-level key `workflow:`; run with `etl workflow run FILE`.",
    ),
    ("Environment config", M.EnvConfig, "`conf/<env>.yaml`, chosen with `--env` (default `local`)."),
]

# Descriptions of keys whose model field has none (the model's own `description` wins when it has one).
# A key here that no longer exists in the model fails tests/unit/test_report_reference.py.
NOTES: dict[str, str] = {
    "JobConfig.job": "the job's name, unique in the project (also the Glue job name)",
    "JobConfig.description": "free text, shown by `etl plan` and deployed as the Glue job description",
    "JobConfig.sources": "extract: each source becomes a temp view named by its key",
    "JobConfig.crawl": "optional crawls run first: discover schema and partitions into the catalog",
    "JobConfig.transform": "ordered steps; each reads the previous step's result",
    "JobConfig.quality": "the quality gate on the transformed data, before any write",
    "JobConfig.target": "the partitioned write",
    "JobConfig.register": "catalog / Athena registration of the target",
    "JobConfig.retries": "attempts and backoff of the whole job",
    "JobConfig.glue": "Glue-only settings (deploy)",
    "Incremental.mode": "files: remember processed files; watermark: remember the highest value of `column`",
    "Source.format": "`catalog` reads location, format and schema from the catalog (Glue from_catalog)",
    "Source.incremental": "bookmark of the source; absent: every run reads everything",
    "CrawlSpec.database": "catalog database of the crawled table",
    "CrawlSpec.schema_change": "log: keep the table and record the change; update: update it; "
    "fail: stop the job",
    "TransformStep.drop": "columns to drop",
    "TransformStep.dedupe": "keep one row per key",
    "TransformStep.join": "join with another source view",
    "TransformStep.union": "append other source views",
    "TransformStep.aggregate": "group and aggregate",
    "Dedupe.keys": "columns that identify a row",
    "Join.how": "join type",
    "Union.by_name": "match columns by name (else by position)",
    "Union.allow_missing_columns": "fill columns missing on one side with nulls (by_name only)",
    "Union.distinct": "drop duplicate rows after the union",
    "Aggregate.group_by": "grouping columns (empty: one row for the whole data)",
    "Expectation.on_fail": "fail: stop before any write; quarantine: move failing rows aside (row-level "
    "expectations only); warn: record and go on",
    "Target.format": "table format written",
    "Target.path": "table location (local path or s3://)",
    "Target.partition_by": "partition columns (Hive-style key=value folders)",
    "Target.mode": "overwrite_partitions replaces only the partitions present in the data; merge upserts on "
    "merge_keys",
    "Register.database": "catalog database (created when missing)",
    "Register.table": "catalog table name",
    "Register.description": "table description in the catalog",
    "Retries.backoff_seconds": "wait before the second attempt",
    "Retries.backoff_rate": "each further wait is the previous one times this",
    "GlueJobSettings.worker_type": "Glue worker type of this job",
    "GlueJobSettings.number_of_workers": "Glue workers of this job",
    "WorkflowConfig.workflow": "the workflow's name (also the Glue workflow name)",
    "WorkflowConfig.description": "free text",
    "WorkflowConfig.run_properties": "initial run properties, readable and writable by the jobs of a run "
    "(`${run.X}`)",
    "WorkflowConfig.crawlers": "crawler name -> crawler",
    "WorkflowConfig.triggers": "what starts the nodes (Glue triggers)",
    "WorkflowCrawler.path": "folder to crawl",
    "WorkflowCrawler.database": "catalog database of the crawled table",
    "WorkflowCrawler.schema_change": "log: keep the table and record the change; update: update it; "
    "fail: fail "
    "the crawler",
    "Trigger.name": "unique in the workflow",
    "Trigger.type": "on_demand: starts a run; scheduled: on a cron; conditional: when watched nodes reach a "
    "state; event: on file arrival",
    "Trigger.logical": "and: every condition must hold; any: one is enough",
    "Trigger.conditions": "conditional triggers: the nodes and states watched",
    "Trigger.watch": "event triggers: the folder watched",
    "Trigger.batch": "event triggers: batching of events",
    "Trigger.actions": "nodes started together when the trigger fires",
    "Trigger.enabled": "a disabled trigger never fires",
    "Condition.job": "watched job (exactly one of job or crawler)",
    "Condition.crawler": "watched crawler",
    "Condition.state": "jobs: SUCCEEDED, STOPPED, FAILED or TIMEOUT; "
    "crawlers: SUCCEEDED, FAILED or CANCELLED",
    "Watch.path": "folder watched for new files",
    "Watch.pattern": "glob of the file names that count",
    "Batch.size": "fire at this many events",
    "Batch.window_seconds": "or when this long has passed since the batch's first event",
    "Action.job": "job to start (exactly one of job or crawler)",
    "Action.crawler": "crawler to start",
    "Action.timeout_minutes": "overrides the job's timeout_minutes",
    "EnvConfig.state": "where run records, checkpoints and bookmarks live",
    "EnvConfig.catalog": "where tables are registered",
    "EnvConfig.aws": "AWS client settings",
    "EnvConfig.deploy": "`etl deploy` settings (cloud environments)",
    "StateConfig.backend": "sqlite: one local file; dynamodb: for Glue and many machines",
    "CatalogConfig.backend": "local: embedded SQLite catalog; glue: the Glue Data Catalog",
    "AwsConfig.region": "AWS region",
    "DeployConfig.glue_version": "Glue version of the jobs (5.0 = Spark 3.5.4, Python 3.11)",
    "DeployConfig.worker_type": "default Glue worker type",
    "DeployConfig.number_of_workers": "default Glue workers per job",
}


# --------------------------------------------------------------------------------------------- YAML part


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _text(text: str) -> str:
    """Prose for a Markdown table cell: angle brackets would be read as HTML tags."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _anchor(cls: type) -> str:
    return cls.__name__.lower()


def _is_model(t: Any) -> bool:
    return inspect.isclass(t) and issubclass(t, BaseModel)


def _args_without_none(t: Any) -> tuple[list[Any], bool]:
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        args = list(typing.get_args(t))
        return [a for a in args if a is not type(None)], type(None) in args
    return [t], False


def type_text(t: Any, nested: list[type[BaseModel]]) -> str:
    """A reader's name for an annotation; models met on the way are collected into `nested`."""
    args, _ = _args_without_none(t)
    if len(args) > 1:
        return " or ".join(type_text(a, nested) for a in args)
    t = args[0]
    origin = typing.get_origin(t)
    if origin is Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(t))
    if origin is list:
        (item,) = typing.get_args(t) or (Any,)
        return f"list of {type_text(item, nested)}"
    if origin is dict:
        k, v = typing.get_args(t) or (str, Any)
        return f"map of {type_text(k, nested)} → {type_text(v, nested)}"
    if _is_model(t):
        if t not in nested:
            nested.append(t)
        return f"[{t.__name__}](#{_anchor(t)})"
    if t is Any:
        return "any"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        t, getattr(t, "__name__", str(t))
    )


def default_text(f: FieldInfo) -> str:
    if f.is_required():
        return "**required**"
    if f.default_factory is not None:
        value = f.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "see section"
        return f"`{json.dumps(value)}`"
    if f.default is None or f.default is PydanticUndefined:
        return "—"
    return f"`{json.dumps(f.default)}`"


def constraints_text(f: FieldInfo) -> str:
    out = []
    for m in f.metadata:
        for attr, sym in (
            ("ge", "≥"),
            ("gt", ">"),
            ("le", "≤"),
            ("lt", "<"),
            ("min_length", "min items"),
            ("max_length", "max items"),
            ("pattern", "pattern"),
        ):
            v = getattr(m, attr, None)
            if v is not None:
                out.append(f"{sym} `{v}`" if attr == "pattern" else f"{sym} {v}")
    return ", ".join(out)


def model_section(cls: type[BaseModel], nested: list[type[BaseModel]]) -> list[str]:
    lines = [f'<a id="{_anchor(cls)}"></a>', f"#### {cls.__name__}", ""]
    doc = inspect.cleandoc(cls.__doc__ or "")
    if doc and cls.__doc__ is not BaseModel.__doc__ and "Unknown keys are errors" not in doc:
        lines += [" ".join(doc.split()), ""]
    lines += ["| key | type | default | constraints | description |", "|---|---|---|---|---|"]
    for name, f in cls.model_fields.items():
        key = f.alias or name
        desc = f.description or NOTES.get(f"{cls.__name__}.{name}", "")
        lines.append(
            f"| `{key}` | {_cell(type_text(f.annotation, nested))} | {_cell(default_text(f))} | "
            f"{_cell(constraints_text(f))} | {_cell(_text(desc))} |"
        )
    extra = cls.model_config.get("extra")
    if extra == "allow":
        lines += [
            "",
            (
                "Any other key is passed to the expectation as its keyword argument (GX's own names, "
                "`mostly` included)."
            ),
        ]
    elif extra == "forbid":
        lines += ["", "Any other key is an error."]
    return lines + [""]


def yaml_reference() -> str:
    lines = [
        "## YAML reference",
        "",
        (
            "Generated from `etl_framework/config/model.py`. Every string value may use `${env.X}`, "
            "`${params.X}`, `${run.X}` and `${secret:NAME}`; relative paths resolve against the "
            "file that names them."
        ),
        "",
    ]
    done: set[type] = set()
    for title, root, where in FILE_KINDS:
        lines += [f"### {title}", "", where, ""]
        queue: list[type[BaseModel]] = [root]
        while queue:
            cls = queue.pop(0)
            if cls in done:
                continue
            done.add(cls)
            found: list[type[BaseModel]] = []
            lines += model_section(cls, found)
            queue += [c for c in found if c not in done and c not in queue]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI part


def _commands(
    group: click.Group, ctx: click.Context, prefix: str
) -> list[tuple[str, click.Command, click.Context]]:
    out = []
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx)
        out.append((f"{prefix} {name}", cmd, sub))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, sub, f"{prefix} {name}")
    return out


def _param_rows(cmd: click.Command, ctx: click.Context) -> list[str]:
    rows = []
    for p in cmd.get_params(ctx):
        if isinstance(p, click.Argument):
            req = "required" if p.required else "optional"
            rows.append(
                f"| `{p.make_metavar(ctx) if _takes_ctx(p) else p.make_metavar()}` | argument, {req} |"
            )
            continue
        if p is cmd.get_help_option(ctx) or p.name in ("help", "_click_default_help"):
            continue
        rec = p.get_help_record(ctx)
        if rec is None:
            continue
        opts, help_text = rec
        rows.append(f"| `{_cell(opts)}` | {_cell(_text(help_text))} |")
    return rows


def _takes_ctx(p: click.Parameter) -> bool:
    return "ctx" in inspect.signature(p.make_metavar).parameters


def cli_reference() -> str:
    from etl_framework.cli import cli

    root_ctx = click.Context(cli, info_name="etl", **cli.context_settings)
    lines = [
        "## CLI reference",
        "",
        (
            "Generated from the click commands of `etl_framework.cli`. Every command "
            "takes `-h`/`--help`. Exit codes: 0 success, 1 a run failed, 2 bad config or usage, 3 a quality "
            "gate failed."
        ),
        "",
        "### etl",
        "",
        inspect.cleandoc(cli.help or ""),
        "",
        "| option | description |",
        "|---|---|",
        *_param_rows(cli, root_ctx),
        "",
    ]
    for path, cmd, ctx in _commands(cli, root_ctx, "etl"):
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        lines += [f"### {path}", "", f"`{path} {usage}`".rstrip(), ""]
        help_text = inspect.cleandoc(cmd.help or cmd.short_help or "").split("\f")[0].strip()
        if help_text:
            lines += [_text(help_text), ""]
        rows = _param_rows(cmd, ctx)
        if rows:
            lines += ["| option | description |", "|---|---|", *rows, ""]
    return "\n".join(lines)


HEADER = (
    "# Reference\n\n<!-- generated by scripts/gen_reference.py from the config model and the CLI; do not "
    "edit by hand: run `python scripts/gen_reference.py` -->\n"
)


def render() -> str:
    return f"{HEADER}\n{yaml_reference()}\n{cli_reference()}".rstrip() + "\n"


def fill_blocks(text: str) -> str:
    """Fill the generated blocks a document marks with `<!-- generated:NAME -->` ... `<!-- /generated:NAME -->`
    (NAME: yaml-reference or cli-reference), so the README can carry the reference too and stay in sync."""
    parts = {"yaml-reference": yaml_reference, "cli-reference": cli_reference}
    for name, make in parts.items():
        start, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
        i = text.find(start)
        j = text.find(end, i + len(start)) if i >= 0 else -1
        if i >= 0 and j >= 0:
            text = text[: i + len(start)] + "\n" + make().strip() + "\n" + text[j:]
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file is stale, without writing it")
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    ap.add_argument(
        "--readme", type=Path, default=README, help="also fill its generated blocks (if it has any)"
    )
    args = ap.parse_args(argv)
    wanted = {args.output: render()}
    if args.readme.is_file():
        current = args.readme.read_text()
        filled = fill_blocks(current)
        if filled != current or "<!-- generated:" in current:
            wanted[args.readme] = filled
    stale = [p for p, text in wanted.items() if (p.read_text() if p.is_file() else "") != text]
    if args.check:
        for p in stale:
            print(f"{p} is stale: run `python scripts/gen_reference.py`", file=sys.stderr)
        if not stale:
            print("reference is up to date", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(wanted[p])
        print(f"wrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
