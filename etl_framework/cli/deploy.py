"""`etl deploy --env ENV [--dry-run] [--prune] [--json]`: the project's jobs, crawlers, workflows and triggers on
AWS Glue (SPEC §8). Progress and the diff go to stderr; `--json` prints the plan/result alone on stdout."""

from __future__ import annotations

import time
from typing import Any

import click

from etl_framework.cli.common import err, print_json

SYMBOL = {"create": "+", "update": "~", "replace": "±", "delete": "-", "orphan": "!", "unchanged": "="}


def _short(value: Any, limit: int = 70) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render(result: Any, verbose: bool = False) -> list[str]:
    plan = result.plan
    lines: list[str] = []
    for c in plan.changes:
        if c.action == "unchanged" and not (verbose or result.dry_run):
            continue
        head = f"  {SYMBOL.get(c.action, '?')} {c.action:<9} {c.kind:<8} {c.name}"
        if c.note and c.kind == "artifact":
            head += f"  ({c.note})"
        elif c.action == "orphan":
            head += "  (not defined by the project; --prune removes it)" if not result.prune else ""
        elif c.note:
            head += f"  ({c.note})"
        lines.append(head)
        if (getattr(result, "offline", False) or verbose) and c.action == "create" and c.kind not in ("role", "artifact"):
            import json

            lines += [f"      {ln}" for ln in json.dumps(c.spec(), indent=2, default=str).splitlines()]
            continue
        if c.kind == "role" and result.dry_run and c.action in ("create", "update", "replace") and c.resource:
            import json

            lines.append("      policy:")  # what the role may do, for review before anything is deployed
            doc = json.dumps(getattr(c.resource, "spec", {}).get("PolicyDocument"), indent=2)
            lines += [f"        {ln}" for ln in doc.splitlines()]
            if c.action == "create":
                continue
        for f, (old, new) in c.fields.items():
            if f == "definition" and c.diff:  # a state machine: the definition's unified diff
                lines.append("      definition:")
                lines += [f"        {ln}" for ln in c.diff]
                continue
            lines.append(f"      {f}: {_short(old)} -> {_short(new)}")
    return lines


def register(group: click.Group) -> None:
    @group.command("deploy")
    @click.option("--env", "env_opt", default=None, help="environment config conf/<env>.yaml (default: the global --env)")
    @click.option("--dry-run", is_flag=True, help="print the diff and change nothing")
    @click.option("--offline", is_flag=True, help="with --dry-run: read nothing from AWS (no credentials needed) and "
                  "print every resource in full as it would be created (also what a dry run without credentials "
                  "does)")
    @click.option("--prune", is_flag=True, help="also delete this project's and env's Glue resources (tagged "
                  "etl:project and etl:env) and S3 files (under its own prefix) that it no longer defines")
    @click.option("--yes", is_flag=True, help="confirm a --prune that deletes more than it creates")
    @click.option("--wheel", "wheel_path", type=click.Path(dir_okay=False),
                  help="deploy this framework wheel instead of building one")
    @click.option("--verbose", "-v", is_flag=True, help="list unchanged resources too (a dry run always does)")
    @click.option("--json", "as_json", is_flag=True, help="machine-readable plan/result on stdout")
    @click.pass_context
    def deploy_cmd(ctx: click.Context, env_opt: str | None, dry_run: bool, offline: bool, prune: bool, yes: bool,
                   wheel_path: str | None, verbose: bool, as_json: bool) -> None:
        """Create or update the project's Glue jobs, crawlers, workflows and triggers (idempotent)."""
        from etl_framework.config.project import Project
        from etl_framework.deploy.run import deploy

        obj = ctx.obj or {}
        env = env_opt or obj.get("env") or "local"
        project = Project.discover(obj.get("project_dir"))
        t0 = time.monotonic()
        err(f"deploy: project {project.root}, env {env}{' (dry run)' if dry_run else ''}")
        result = deploy(project, env, dry_run=dry_run, prune=prune, progress=lambda m: err(f"  .. {m}"),
                        wheel_path=wheel_path, yes=yes, offline=offline)
        for w in result.warnings:
            err(f"warning: {w}")
        for line in render(result, verbose):
            err(line)
        s = result.plan.summary()
        unchanged = s.get("unchanged", 0)
        todo = {k: s.get(k, 0) for k in ("create", "update", "replace")}
        orphans = s.get("orphan", 0) + s.get("delete", 0)
        counts = ", ".join(f"{n} to {k}" for k, n in todo.items() if n)
        took = f"{time.monotonic() - t0:.1f}s"
        if not result.plan.pending and not (prune and orphans):
            err(f"nothing to change: {unchanged} resources up to date"
                + (f"; {orphans} orphaned (run with --prune to remove)" if orphans and not prune else "")
                + f" ({took})")
        elif dry_run:
            err(f"dry run: {counts or 'nothing to create or update'}"
                + (f", {orphans} to delete" if prune and orphans else "")
                + f", {unchanged} unchanged; nothing was changed ({took})")
            if result.needs_yes and not yes:
                err(f"note: this prune deletes more than it creates ({orphans} to delete, {todo['create']} to "
                    "create): without --dry-run it needs --yes")
        else:
            done = len(result.applied)
            err(f"deployed: {done} change{'s' if done != 1 else ''} applied"
                + (f" ({counts})" if counts else "")
                + (f", {orphans} deleted" if prune and orphans else "")
                + f", {unchanged} unchanged ({took})")
        if as_json:
            print_json(result.to_json())
