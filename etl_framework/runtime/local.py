"""The local branch of `scripts/etl_job.py` (spark-submit): Glue-style arguments in, the same `run_job` as
`etl run`, the exit code of SPEC §9 out. The Glue branch is `runtime/glue.py`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from etl_framework.config.errors import ConfigErrors
from etl_framework.errors import EtlError


def resolve_job_path(job_config: str, project_root: Path | None) -> Path:
    """`--job_config` relative to the working directory, else to the project root."""
    p = Path(job_config).expanduser()
    if p.is_absolute() or p.exists() or project_root is None:
        return p.resolve()
    return (project_root / p).resolve()


def run_local(argv: list[str]) -> int:
    """Run one job from Glue-style arguments: `--JOB_NAME n --job_config jobs/x.yaml --env local [--k v ...]`."""
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job
    from etl_framework.runtime.args import pairs, parse_job_args

    try:
        args = parse_job_args(argv)
        project_dir = pairs(argv[1:]).get("project_dir") or os.environ.get("ETL_PROJECT_DIR")
        if project_dir:
            project = Project.discover(project_dir)
        else:
            project = Project.discover(start=Path(args.job_config).expanduser().resolve().parent)
        job_path = resolve_job_path(args.job_config, project.root)
        # Inside a workflow run (subprocess executor, --WORKFLOW_RUN_ID): the run's properties, readable and
        # writable through ctx as with Glue's get/put_workflow_run_properties.
        from etl_framework.state.workflows import run_properties_for

        props = run_properties_for(project.env_config(args.env).state.path, args.workflow_run_id)
        if props is None and args.run_properties is not None:  # started by an Airflow DAG run
            from etl_framework.engine.context import LocalRunProperties

            props = LocalRunProperties(args.run_properties)
        result = run_job(job_path, project=project, env=args.env, params=args.params or None,
                         run_properties=props, workflow_run_id=args.workflow_run_id, run_id=args.job_run_id)
        if result.exception is not None:
            print(f"error: {result.exception.render()}", file=sys.stderr)
        if args.job_name and args.job_name != result.job:
            print(f"note: --JOB_NAME {args.job_name} differs from the job file's name {result.job}",
                  file=sys.stderr)
        return int(result.exit_code)
    except KeyboardInterrupt as e:  # SIGTERM from the workflow's cancel, Ctrl-C: recorded STOPPED, one line
        print(str(e) or "stopped", file=sys.stderr)
        return 130
    except ConfigErrors as e:
        for err in e.errors:
            print(str(err), file=sys.stderr)
        return 2
    except EtlError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
