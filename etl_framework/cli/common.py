"""What every command shares: turning errors into messages and exit codes (never a traceback), output helpers
that keep `--json` alone on stdout, and redaction of every resolved secret from all the command prints."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from etl_framework.config.errors import ConfigErrors
from etl_framework.errors import EtlError, Stopped


def err(message: str) -> None:
    """Progress and messages go to stderr, so stdout stays clean for --json."""
    click.echo(message, err=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def run_cli(group: click.Group, argv: list[str] | None = None) -> int:
    """Run the click group and map every known error to its exit code; unexpected errors get one line, and the
    traceback only with ETL_DEBUG=1. stdout, stderr and logging pass through redaction meanwhile (SPEC §13)."""
    from etl_framework.redaction import redacted_output

    with redacted_output():
        return _run_cli(group, argv)


def _aws_unreachable(e: BaseException) -> str | None:
    """A clean message for botocore's connection/timeout errors (they already name the endpoint)."""
    if not type(e).__module__.startswith("botocore"):
        return None
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    if not isinstance(e, (BotoConnectionError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError)):
        return None
    from etl_framework.aws import settings

    s = settings()
    return (f"AWS did not answer: {e} (after {s['max_attempts']} attempts, {s['connect_timeout']:g} s to connect, "
            f"{s['read_timeout']:g} s per read)\n  what to do: check aws.endpoint_url / aws.region in the env config "
            "and the network; ETL_AWS_CONNECT_TIMEOUT, ETL_AWS_READ_TIMEOUT and ETL_AWS_MAX_ATTEMPTS tune the limits")


def _short(e: EtlError) -> str:
    """A failed run's message as the terminal shows it: long Spark messages cut, the whole text a command away."""
    from etl_framework.errors import JobFailed, shorten

    if not isinstance(e, JobFailed) or len(e.message) <= 600:
        return str(e)
    more = f" (the whole message: etl show {e.run_id} --log)" if e.run_id else ""
    text = f"job {e.job}, stage {e.stage}: {shorten(e.message)}{more}"
    return text + (f"\n  what to do: {e.hint}" if e.hint else "")


def _run_cli(group: click.Group, argv: list[str] | None = None) -> int:
    try:
        rv = group.main(args=argv, prog_name="etl", standalone_mode=False)
        # click returns ctx.exit(n)'s code here instead of raising; a command's own return value is not a code
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except ConfigErrors as e:
        for error in e.errors:
            click.echo(str(error), err=True)
        n = len(e.errors)
        click.echo(f"{n} config error{'s' if n != 1 else ''}", err=True)
        return 2
    except Stopped as e:  # one line, no traceback: the run is recorded STOPPED and its locks are free
        click.echo(str(e), err=True)
        return e.exit_code
    except EtlError as e:
        click.echo(f"error: {_short(e)}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return 2
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__ or e.__context__, KeyboardInterrupt):  # click wraps Ctrl-C / SIGTERM
            click.echo("interrupted", err=True)
            return 130
        click.echo("aborted", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as e:  # the last line of defence against tracebacks
        aws = _aws_unreachable(e)
        if aws is not None:
            click.echo(f"error: {aws}", err=True)
            return 1
        if os.environ.get("ETL_DEBUG"):
            raise
        click.echo(f"internal error: {type(e).__name__}: {e}\n  (set ETL_DEBUG=1 for the traceback)", err=True)
        return 1


def prestart_spark(start: Path, project_dir: str | None, env: str, veto: str) -> None:
    """Start Spark's JVM while a command still reads its configs (`runtime.spark.prestart`), guessing the session
    from spark-defaults.conf and the env file's `spark:` block. No guess when `start` (the job or workflow file) or
    the env file matches `veto`: settings that give the command another session, or none in this process.
    ETL_SPARK_PRESTART=0 turns the guess off."""
    import re

    if os.environ.get("ETL_SPARK_PRESTART") == "0":
        return
    from etl_framework.config.project import project_for
    from etl_framework.runtime.spark import prestart

    try:
        project = project_for(start, project_dir)
        path = project.env_file(env)
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        if re.search(veto, start.read_text(encoding="utf-8")) or re.search(veto, text):
            return
        overrides = None
        if re.search(r"^spark\s*:", text, re.MULTILINE):
            from ruamel.yaml import YAML

            data = YAML(typ="safe", pure=True).load(text)
            overrides = data.get("spark") if isinstance(data, dict) else None
            if overrides is not None and not isinstance(overrides, dict):
                return
    except Exception:  # noqa: BLE001 - a guess only: the command reads the configs and reports their problems
        return
    prestart(project.root, overrides or None)
