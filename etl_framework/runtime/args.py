"""Glue-style job arguments, parsed the same way locally (spark-submit) and on AWS Glue.

AWS Glue starts a job script as `script.py --JOB_NAME x --JOB_RUN_ID jr_... --job-bookmark-option ... --k v ...` and
scripts read them with `awsglue.utils.getResolvedOptions(sys.argv, [names])`. `resolve_options` reproduces that
function's documented behaviour (argparse, no abbreviations, every requested name required, unknown arguments
ignored, the last occurrence wins, `--TempDir`/`--RedshiftTempDir` mirrored, `job_bookmark_option` defaulting to
`job-bookmark-disable`, reserved names refused) without needing `awsglue`, which is not installable here.
`parse_job_args` builds on it: the framework's own arguments plus job params given as `--k v`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any

from etl_framework.errors import UsageError

BOOKMARK_OPTIONS = ("job-bookmark-enable", "job-bookmark-pause", "job-bookmark-disable")
CONTINUATION_OPTIONS = ("continuation-enabled", "continuation-readonly", "continuation-ignore")
BOOKMARK_RANGE = ("--job-bookmark-from", "--job-bookmark-to")
ID_PARAMS = ("--JOB_ID", "--JOB_RUN_ID", "--SECURITY_CONFIGURATION")

# Arguments Glue itself passes or consumes; never job params.
GLUE_ARGS = {
    "JOB_NAME", "JOB_ID", "JOB_RUN_ID", "SECURITY_CONFIGURATION", "TempDir", "RedshiftTempDir",
    "WORKFLOW_NAME", "WORKFLOW_RUN_ID", "RUN_PROPERTIES", "conf", "scriptLocation", "job_config", "env",
    "project_dir", "run_properties_uri",
}
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class GlueArgumentError(UsageError):
    """The arguments do not satisfy `getResolvedOptions` (Glue raises its own GlueArgumentError)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # raise instead of sys.exit, as Glue does
        raise GlueArgumentError(message)


def resolve_options(argv: list[str], options: list[str]) -> dict[str, Any]:
    """`awsglue.utils.getResolvedOptions(argv, options)`: argv[0] is the script and is skipped.

    Returns every requested option plus Glue's own optional ones (`JOB_ID`, `JOB_RUN_ID`,
    `SECURITY_CONFIGURATION`, `TempDir`, `RedshiftTempDir`, `job_bookmark_option`, ...), as Glue does."""
    parser = _Parser(allow_abbrev=False, add_help=False)
    for reserved in ("continuation-option", "job-bookmark-option", "encryption-type", "enable-data-lineage"):
        if reserved in options:
            raise RuntimeError("Using reserved arguments " + reserved)
    parser.add_argument("--job-bookmark-option", choices=BOOKMARK_OPTIONS, required=False)
    parser.add_argument("--continuation-option", choices=CONTINUATION_OPTIONS, required=False)
    for opt in BOOKMARK_RANGE:
        if opt[2:] in options:
            raise RuntimeError("Using reserved arguments " + opt)
        parser.add_argument(opt, required=False)
    for opt in ID_PARAMS:
        if opt in options:  # as in Glue: compared with the dashes, so `JOB_ID` passes through and is required
            raise RuntimeError("Using reserved arguments " + opt)
        if opt[2:] not in options:
            parser.add_argument(opt, required=False)
    parser.add_argument("--encryption-type", choices=["sse-s3"])
    parser.add_argument("--enable-data-lineage", required=False)
    options = [o for o in options if o not in {"RedshiftTempDir", "TempDir"}]
    parser.add_argument("--RedshiftTempDir", required=False)
    parser.add_argument("--TempDir", required=False)
    for opt in options:
        parser.add_argument("--" + opt, required=True)
    parsed, _extra = parser.parse_known_args(argv[1:])
    out = vars(parsed)
    if out.get("TempDir") is not None:
        out["RedshiftTempDir"] = out["TempDir"]
    elif out.get("RedshiftTempDir") is not None:
        out["TempDir"] = out["RedshiftTempDir"]
    continuation = out.pop("continuation_option", None)
    if out.get("job_bookmark_option") is None:
        if continuation is None:
            out["job_bookmark_option"] = "job-bookmark-disable"
        else:
            out["job_bookmark_option"] = BOOKMARK_OPTIONS[CONTINUATION_OPTIONS.index(continuation)]
    absent = [o for o in BOOKMARK_RANGE if out.get(o[2:].replace("-", "_")) is None]
    if out["job_bookmark_option"] == "job-bookmark-pause":
        if len(absent) == 1:
            raise GlueArgumentError("Missing option or value for " + absent[0])
    elif not absent:
        raise GlueArgumentError("Invalid option(s)" + " ".join(BOOKMARK_RANGE))
    return out


def pairs(argv: list[str]) -> dict[str, str]:
    """Every `--key value` / `--key=value` of argv (the last occurrence wins), as Glue hands them to a job."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("--") and len(tok) > 2:
            key = tok[2:]
            if "=" in key:
                key, value = key.split("=", 1)
                out[key] = value
            elif i + 1 < len(argv) and not (argv[i + 1].startswith("--") and len(argv[i + 1]) > 2):
                out[key] = argv[i + 1]
                i += 1
            else:
                out[key] = ""
        i += 1
    return out


@dataclass
class JobArgs:
    """The arguments of one job run, wherever it runs."""

    job_config: str
    env: str = "local"
    job_name: str | None = None
    workflow_name: str | None = None
    workflow_run_id: str | None = None
    job_run_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    run_properties_uri: str | None = None  # Step Functions: the run's properties as one S3 JSON object
    # `--RUN_PROPERTIES JSON`: the run properties of a run started outside a Glue workflow (an Airflow DAG run)
    run_properties: dict[str, Any] | None = None

    @property
    def in_workflow(self) -> bool:
        return bool(self.workflow_name and self.workflow_run_id)


def parse_job_args(argv: list[str]) -> JobArgs:
    """The framework's arguments (`--job_config` required; `--env` default local; `--JOB_NAME`,
    `--WORKFLOW_NAME`, `--WORKFLOW_RUN_ID` optional) and every other `--k v` whose key is an identifier as a job
    param (Glue's own dashed options such as `--enable-metrics` and its reserved names are not params)."""
    try:
        resolved = resolve_options(argv, ["job_config"])
    except GlueArgumentError as e:
        raise UsageError(
            f"{e}\n  what to do: pass the job file, e.g. `etl_job.py --JOB_NAME trips_clean "
            "--job_config jobs/trips_clean.yaml --env local [--min_distance 0.5]`"
        ) from None
    raw = pairs(argv[1:])
    params = {k: v for k, v in raw.items() if PARAM_NAME.match(k) and k not in GLUE_ARGS}
    return JobArgs(
        job_config=resolved["job_config"],
        env=raw.get("env") or "local",
        job_name=raw.get("JOB_NAME") or None,
        workflow_name=raw.get("WORKFLOW_NAME") or None,
        workflow_run_id=raw.get("WORKFLOW_RUN_ID") or None,
        job_run_id=resolved.get("JOB_RUN_ID"),
        params=params,
        run_properties_uri=raw.get("run_properties_uri") or None,
        run_properties=parse_run_properties(raw["RUN_PROPERTIES"]) if raw.get("RUN_PROPERTIES") else None,
    )


def parse_run_properties(text: str) -> dict[str, Any]:
    """`--RUN_PROPERTIES` / `etl run --run-properties`: a JSON object of run properties."""
    import json

    try:
        value = json.loads(text)
    except ValueError as e:
        raise UsageError(f"run properties {text!r} are not JSON ({e})") from None
    if not isinstance(value, dict):
        raise UsageError(f"run properties {text!r}: expected a JSON object, e.g. {{\"region\": \"eu\"}}")
    return value


def coerce_param(value: str, default: Any) -> Any:
    """Glue passes every argument as a string: give it the type of the param's default in the job file."""
    if isinstance(default, bool):
        low = value.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise UsageError(f"param value {value!r} is not a boolean")
    try:
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise UsageError(f"param value {value!r} is not a {type(default).__name__}") from None
    return value


def typed_params(raw: dict[str, str], defaults: dict[str, Any]) -> dict[str, Any]:
    """Params from the command line, typed like the job's defaults (unknown names stay strings)."""
    return {k: coerce_param(v, defaults[k]) if k in defaults else v for k, v in raw.items()}


def to_glue_arguments(params: dict[str, Any]) -> dict[str, str]:
    """Job params as Glue `DefaultArguments` / trigger action `Arguments`: `{"--k": "v"}` (strings only)."""
    def text(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    return {f"--{k}": text(v) for k, v in params.items()}
