"""The thin AWS Glue adapter: what differs when `scripts/etl_job.py` runs as a Glue job script.

Inside Glue the script gets `--JOB_NAME`, `--JOB_RUN_ID`, `--job_config`, `--env`, `--project_dir` and params from
Glue, makes its SparkSession through `GlueContext`, wraps the run in `Job.init` / `Job.commit`, fetches the project
files `etl deploy` uploaded (conf/, jobs/) from S3, and reads/writes workflow run properties through Glue's
`get_workflow_run_properties` / `put_workflow_run_properties`. Everything else (stages, state, catalog) is the same
code as locally. `awsglue` is imported only inside these functions: it is not installable here, and its absence
never breaks a local run.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_framework.errors import EtlError
from etl_framework.runtime.args import JobArgs, parse_job_args

if TYPE_CHECKING:
    from etl_framework.config.model import AwsConfig


def awsglue_available() -> bool:
    return importlib.util.find_spec("awsglue") is not None


def in_glue(argv: list[str]) -> bool:
    """True inside an AWS Glue job run: `awsglue` is importable and Glue passed a `--JOB_RUN_ID` (a local
    spark-submit does not). `ETL_RUNTIME=glue|local` overrides the guess."""
    forced = os.environ.get("ETL_RUNTIME", "").lower()
    if forced in ("glue", "local"):
        return forced == "glue"
    return awsglue_available() and any(a == "--JOB_RUN_ID" or a.startswith("--JOB_RUN_ID=") for a in argv)


def aws_client(service: str, aws: AwsConfig | None = None, **kwargs: Any) -> Any:
    """A boto3 client with the env config's region and endpoint override (a moto server in tests)."""
    from etl_framework.aws import client

    return client(service, aws.region if aws else None, aws.endpoint_url if aws else None, **kwargs)


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/key/part` -> (bucket, key/part); s3a:// and s3n:// are accepted too."""
    for scheme in ("s3://", "s3a://", "s3n://"):
        if uri.startswith(scheme):
            rest = uri[len(scheme):]
            bucket, _, key = rest.partition("/")
            return bucket, key
    raise EtlError(f"{uri!r} is not an s3:// URI")


class _PropertyMapping:
    """The mapping interface the engine gives jobs as `ctx.run_properties`, over a backend's `as_dict`/`update`."""

    run_id: str

    def as_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def update(self, values: dict[str, Any]) -> None:
        raise NotImplementedError

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)

    def __getitem__(self, key: str) -> Any:
        props = self.as_dict()
        if key not in props:
            raise KeyError(key)
        return props[key]

    def __contains__(self, key: object) -> bool:
        return key in self.as_dict()

    def put(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __setitem__(self, key: str, value: Any) -> None:
        self.put(key, value)

    def get_all(self) -> dict[str, Any]:
        return self.as_dict()

    def run_vars(self) -> dict[str, Any]:
        """What `${run.X}` sees: the properties plus `id` (the workflow run id)."""
        return {**self.as_dict(), "id": self.run_id}


@dataclass
class GlueRunProperties(_PropertyMapping):
    """Workflow run properties of the current Glue workflow run (Glue API), with the interface the engine gives
    jobs as `ctx.run_properties`: `get(key, default)`, `put(key, value)`, `update(mapping)`, `as_dict()`.

    Glue stores run properties as strings; `put` writes through at once so that later jobs of the run see it."""

    workflow_name: str
    run_id: str
    client: Any
    _cache: dict[str, str] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, str]:
        resp = self.client.get_workflow_run_properties(Name=self.workflow_name, RunId=self.run_id)
        self._cache = dict(resp.get("RunProperties") or {})
        return dict(self._cache)

    def update(self, values: dict[str, Any]) -> None:
        props = {k: v if isinstance(v, str) else str(v) for k, v in values.items()}
        self.client.put_workflow_run_properties(Name=self.workflow_name, RunId=self.run_id, RunProperties=props)
        if self._cache is not None:
            self._cache.update(props)


@dataclass
class S3RunProperties(_PropertyMapping):
    """Run properties of a Step Functions execution (`deploy.orchestrator: step_functions`): one JSON object per
    execution, written by the state machine at the start and read by it before a Choice on a property. Same interface
    as GlueRunProperties. Values that are numbers (or text that reads as a finite number) are stored as JSON
    numbers, so that the state machine's numeric Choice rules compare them as the local engine does. A write is a
    read-modify-write of the object: two jobs of one wave writing at the same moment may lose one write (write
    properties from one job per wave, as Glue run properties are best written)."""

    uri: str
    run_id: str
    client: Any

    def as_dict(self) -> dict[str, Any]:
        import json

        bucket, key = split_s3(self.uri)
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as e:  # a missing object is an empty property set; anything else is raised
            if "NoSuchKey" in str(e) or "404" in str(e) or "Not Found" in str(e):
                return {}
            raise
        data = json.loads(body or b"{}")
        return data if isinstance(data, dict) else {}

    def update(self, values: dict[str, Any]) -> None:
        import json

        from etl_framework.workflow_graph import as_number

        props = self.as_dict()
        for k, v in values.items():
            num = as_number(v) if isinstance(v, str) else None  # "0.91" -> 0.91; numbers stay as they are
            props[k] = v if num is None else num
        bucket, key = split_s3(self.uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=json.dumps(props).encode(),
                               ContentType="application/json")


def run_properties_for(args: JobArgs, aws: AwsConfig | None = None, client: Any = None,
                       ) -> GlueRunProperties | S3RunProperties | None:
    """The run properties of the workflow run that started this job (a Glue workflow run, or a Step Functions
    execution when `--run_properties_uri` is given), or None outside a workflow."""
    if args.run_properties_uri:
        return S3RunProperties(args.run_properties_uri, args.workflow_run_id or "", client or aws_client("s3", aws))
    if not args.in_workflow:
        if args.run_properties is not None:  # a job run started by an Airflow DAG run, not by a Glue workflow
            from etl_framework.engine.context import LocalRunProperties

            return LocalRunProperties(args.run_properties)  # type: ignore[return-value]
        return None
    return GlueRunProperties(args.workflow_name or "", args.workflow_run_id or "", client or aws_client("glue", aws))


def fetch_project(project_uri: str, dest: Path | None = None, aws: AwsConfig | None = None, client: Any = None) -> Path:
    """Download the project files `etl deploy` uploaded under `<s3_prefix>/project/` (conf/, jobs/, ...) into a
    local folder, so that `load_job` resolves relative paths and reads the env config exactly as locally."""
    bucket, prefix = split_s3(project_uri.rstrip("/") + "/")
    s3 = client or aws_client("s3", aws)
    root = dest or Path(tempfile.mkdtemp(prefix="etl_project_"))
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix):]
            if not rel or rel.endswith("/"):
                continue
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            n += 1
    if n == 0 or not (root / "conf").is_dir():
        raise EtlError(
            f"no project files under {project_uri}\n  what to do: run `etl deploy --env ENV` (it uploads conf/ and "
            "jobs/ there) and check the job's --project_dir argument"
        )
    return root


def local_job_path(job_config: str, project_uri: str, project_root: Path) -> Path:
    """Map the job's `--job_config` (an S3 URI under the project prefix, or a path relative to the project) to
    the downloaded copy."""
    prefix = project_uri.rstrip("/") + "/"
    if job_config.startswith(prefix):
        return project_root / job_config[len(prefix):]
    if "://" in job_config:
        raise EtlError(f"--job_config {job_config} is not under --project_dir {project_uri}")
    return project_root / job_config


@dataclass
class GlueJobSession:
    """GlueContext + Job for one Glue job run: `start` calls `Job.init`, `commit` calls `Job.commit` (only after a
    successful run, as Glue's bookmarks expect)."""

    args: JobArgs
    resolved: dict[str, Any]
    glue_context: Any
    job: Any
    spark: Any

    @classmethod
    def start(cls, argv: list[str]) -> GlueJobSession:
        from awsglue.context import GlueContext
        from awsglue.job import Job
        from awsglue.utils import getResolvedOptions
        from pyspark.context import SparkContext

        args = parse_job_args(argv)
        resolved = getResolvedOptions(argv, ["JOB_NAME", "job_config"])
        glue_context = GlueContext(SparkContext.getOrCreate())
        job = Job(glue_context)
        job.init(resolved["JOB_NAME"], resolved)
        return cls(args, resolved, glue_context, job, glue_context.spark_session)

    def commit(self) -> None:
        self.job.commit()


@dataclass
class GlueEntry:
    """What `scripts/etl_job.py` needs inside Glue: the session, the local copy of the project, the job file and
    the run properties. `prepare(argv)` does it all."""

    session: GlueJobSession
    project_root: Path
    job_path: Path
    run_properties: GlueRunProperties | S3RunProperties | None

    @classmethod
    def prepare(cls, argv: list[str], aws: AwsConfig | None = None) -> GlueEntry:
        """Start the Glue job, fetch the project and open the run properties (with the env config's `aws:`
        block once the project is there, so that an endpoint override applies to them too)."""
        from etl_framework.config.project import Project

        session = GlueJobSession.start(argv)
        args = session.args
        project_uri = _arg(argv, "project_dir")
        if project_uri and "://" in project_uri:
            root = fetch_project(project_uri, aws=aws)
            job_path = local_job_path(args.job_config, project_uri, root)
        else:
            root = Path(project_uri or ".").resolve()
            job_path = root / args.job_config
        if aws is None:
            aws = Project(root).env_config(args.env).aws
        return cls(session, root, job_path, run_properties_for(args, aws))


def declared_params(job_path: Path) -> set[str]:
    """The params a job file declares: only these of Glue's `--k v` arguments are job params."""
    from etl_framework.config.loader import load_yaml

    data = load_yaml(job_path).data
    params = data.get("params") if isinstance(data, dict) else None
    return set(params) if isinstance(params, dict) else set()


def run_in_glue(argv: list[str]) -> int:
    """The Glue branch of `scripts/etl_job.py`: GlueContext + Job.init, the same `run_job` as locally, Job.commit
    only when the run succeeded. Returns the exit code (non-zero makes Glue mark the job run FAILED)."""
    from etl_framework.config.project import Project
    from etl_framework.engine.job import run_job

    entry = GlueEntry.prepare(argv)
    args = entry.session.args
    declared = declared_params(entry.job_path)
    params = {k: v for k, v in args.params.items() if k in declared}
    result = run_job(entry.job_path, project=Project(entry.project_root), env=args.env, params=params,
                     run_properties=entry.run_properties, workflow_run_id=args.workflow_run_id,
                     spark=entry.session.spark, run_id=args.job_run_id)
    if result.status == "SUCCEEDED":
        entry.session.commit()
    return int(result.exit_code)


def _arg(argv: list[str], name: str) -> str | None:
    from etl_framework.runtime.args import pairs

    return pairs(argv[1:]).get(name)
