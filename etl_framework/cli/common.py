"""What every command shares: turning errors into messages and exit codes (never a traceback), and output
helpers that keep `--json` alone on stdout."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from etl_framework.config.errors import ConfigErrors
from etl_framework.errors import EtlError


def err(message: str) -> None:
    """Progress and messages go to stderr, so stdout stays clean for --json."""
    click.echo(message, err=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def run_cli(group: click.Group, argv: list[str] | None = None) -> int:
    """Run the click group and map every known error to its exit code; unexpected errors get one line, and the
    traceback only with ETL_DEBUG=1."""
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
    except EtlError as e:
        click.echo(f"error: {e}", err=True)
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
        if os.environ.get("ETL_DEBUG"):
            raise
        click.echo(f"internal error: {type(e).__name__}: {e}\n  (set ETL_DEBUG=1 for the traceback)", err=True)
        return 1
