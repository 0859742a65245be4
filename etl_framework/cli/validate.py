"""`etl validate [PATHS...]`: check job and workflow files (and env configs) without starting Spark.

Files or folders (default: the project's jobs/); a file is a job or a workflow by its top-level key. Prints
`ok  <file>` per good file and `file:line:col: message` per error to stderr, exits 2 if any error; `--json` puts
the results alone on stdout. Imports neither pyspark nor great_expectations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from etl_framework.cli.common import err, print_json


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if f.is_file() and f.suffix in (".yaml", ".yml") and not any(x.startswith(".") for x in rel):
                    out.append(f)
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def validate_paths(paths: list[Path], project: Any, env: str) -> list[dict[str, Any]]:
    """`project`: a Project, or a function file -> Project (each file checked in its own project)."""
    """One result per file: {file, kind, ok, errors}. A file's errors include those found in the files it loads
    (a workflow's jobs, the env config), so the same error may appear under several files; the text output
    prints each once."""
    from etl_framework.config.errors import ConfigError, ConfigErrors
    from etl_framework.config.load import file_kind, load_job, load_workflow
    from etl_framework.config.loader import load_yaml
    from etl_framework.config.model import EnvConfig
    from etl_framework.config.project import display_path
    from etl_framework.errors import EtlError

    results = []
    for f in _files(paths):
        shown = display_path(f.resolve()) if f.exists() else str(f)
        kind: str | None = None
        errors: list[ConfigError] = []
        try:
            if not f.exists():
                raise ConfigErrors([ConfigError(shown, 1, 1, "file not found")])
            doc = load_yaml(f, display=shown)
            kind = file_kind(doc.data)
            if kind is None and set(doc.data) <= set(EnvConfig.model_fields):
                kind = "env"
            proj = project(f) if callable(project) else project
            if kind == "job":
                load_job(f, proj, env)
            elif kind == "workflow":
                load_workflow(f, proj, env)
            elif kind == "env":
                from etl_framework.config.loader import validate_model

                _, errs = validate_model(doc, EnvConfig)
                if errs:
                    raise ConfigErrors(errs)
            else:
                raise ConfigErrors([ConfigError(shown, 1, 1, "neither a job file ('job: NAME' at the top) nor a "
                                                             "workflow file ('workflow: NAME')")])
        except ConfigErrors as e:
            errors = list(e.errors)
        except EtlError as e:
            errors = [ConfigError(shown, 1, 1, str(e).replace("\n", " "))]
        results.append({"file": shown, "kind": kind, "ok": not errors, "errors": errors})
    return results


def register(group: click.Group) -> None:
    @group.command("validate")
    @click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="results as JSON on stdout")
    @click.pass_context
    def validate(ctx: click.Context, paths: tuple[Path, ...], as_json: bool) -> None:
        """Check job and workflow files (default: the project's jobs/) without starting Spark."""
        from etl_framework.config.errors import ConfigErrors
        from etl_framework.config.project import Project
        from etl_framework.errors import UsageError

        obj = ctx.obj or {}
        env = obj.get("env", "local")
        explicit = obj.get("project_dir")
        projects: dict[Path, Project] = {}

        def project_of(path: Path) -> Project:
            """The file's project (nearest parent holding conf/), else the working directory's, else a bare one
            with the default local environment."""
            try:
                proj = Project.discover(explicit, start=path)
            except UsageError:
                if explicit:
                    raise
                try:
                    proj = Project.discover()
                except UsageError:
                    first = path.expanduser().resolve()
                    proj = Project(first if first.is_dir() else first.parent)
            return projects.setdefault(proj.root, proj)

        targets = list(paths) or [Project.discover(explicit).jobs_dir]
        try:
            results = validate_paths(targets, project_of, env)
        except ConfigErrors as e:  # the env config itself is broken
            results = [{"file": e.errors[0].file, "kind": "env", "ok": False, "errors": e.errors}]
        bad = [r for r in results if not r["ok"]]
        if as_json:
            print_json([{**r, "errors": [e.__dict__ for e in r["errors"]]} for r in results])
        else:
            for r in results:
                if r["ok"]:
                    err(f"ok  {r['file']}")
            if not results:
                err("no job or workflow files found")
        if bad:
            # run_cli prints every error as file:line:col: message and exits 2
            raise ConfigErrors([e for r in results for e in r["errors"]])
