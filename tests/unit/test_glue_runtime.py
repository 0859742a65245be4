"""The Glue adapter with a fake `awsglue` package on sys.path (the real one is not installable here) and a real moto
server for S3 (project files) and Glue (workflow run properties)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etl_framework.errors import EtlError
from etl_framework.runtime import glue as rt

REGION = "us-east-1"

FAKE = {
    "__init__.py": "EVENTS = []\n",
    "utils.py": """
        from awsglue import EVENTS
        from etl_framework.runtime.args import resolve_options

        def getResolvedOptions(args, options):
            EVENTS.append(("getResolvedOptions", list(options)))
            return resolve_options(args, options)
    """,
    "context.py": """
        from awsglue import EVENTS

        class GlueContext:
            def __init__(self, sc):
                EVENTS.append(("GlueContext", sc))
                self.spark_session = ("spark-of", sc)
    """,
    "job.py": """
        from awsglue import EVENTS

        class Job:
            def __init__(self, glue_context):
                self.glue_context = glue_context

            def init(self, name, args):
                EVENTS.append(("Job.init", name, dict(args)))

            def commit(self):
                EVENTS.append(("Job.commit",))
    """,
}


@pytest.fixture
def fake_awsglue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    pkg = tmp_path / "fakeglue" / "awsglue"
    pkg.mkdir(parents=True)
    for name, code in FAKE.items():
        (pkg / name).write_text(textwrap.dedent(code))
    monkeypatch.syspath_prepend(str(pkg.parent))
    import pyspark.context

    monkeypatch.setattr(pyspark.context.SparkContext, "getOrCreate", classmethod(lambda cls, conf=None: "sc"))
    import awsglue

    yield awsglue.EVENTS
    for mod in [m for m in sys.modules if m == "awsglue" or m.startswith("awsglue.")]:
        del sys.modules[mod]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from etl_framework.config.model import AwsConfig

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    return AwsConfig(region=REGION, endpoint_url=moto_url)


GLUE_ARGV = ["script.py", "--JOB_ID", "j_1", "--JOB_RUN_ID", "jr_0a1b", "--JOB_NAME", "prod_zones",
             "--job-bookmark-option", "job-bookmark-disable", "--job_config", "s3://proj/etl/project/jobs/z.yaml",
             "--env", "prod", "--project_dir", "s3://proj/etl/project/", "--limit", "7", "--enable-metrics", "true"]


def test_not_in_glue_without_awsglue_or_without_a_glue_job_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETL_RUNTIME", raising=False)
    assert not rt.awsglue_available()
    assert not rt.in_glue(GLUE_ARGV)
    monkeypatch.setenv("ETL_RUNTIME", "glue")
    assert rt.in_glue(["script.py"])


def test_in_glue_with_awsglue_and_a_job_run_id(fake_awsglue: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ETL_RUNTIME", raising=False)
    assert rt.in_glue(GLUE_ARGV)
    assert not rt.in_glue(["etl_job.py", "--job_config", "jobs/a.yaml"])  # spark-submit with awsglue installed
    monkeypatch.setenv("ETL_RUNTIME", "local")
    assert not rt.in_glue(GLUE_ARGV)


def test_session_uses_glue_context_and_job_init_commit(fake_awsglue: list[Any]) -> None:
    s = rt.GlueJobSession.start(GLUE_ARGV)
    assert ("getResolvedOptions", ["JOB_NAME", "job_config"]) in fake_awsglue
    assert ("GlueContext", "sc") in fake_awsglue
    init = next(e for e in fake_awsglue if e[0] == "Job.init")
    assert init[1] == "prod_zones" and init[2]["job_config"] == "s3://proj/etl/project/jobs/z.yaml"
    assert s.spark == ("spark-of", "sc")
    assert ("Job.commit",) not in fake_awsglue
    s.commit()
    assert fake_awsglue[-1] == ("Job.commit",)


def test_missing_job_name_in_glue_is_an_error(fake_awsglue: list[Any]) -> None:
    with pytest.raises(EtlError, match="JOB_NAME"):
        rt.GlueJobSession.start(["script.py", "--job_config", "a.yaml"])


def test_run_properties_go_through_the_glue_api(aws: Any) -> None:
    g = rt.aws_client("glue", aws)
    g.create_workflow(Name="wf_props", DefaultRunProperties={"region": "eu"})
    run_id = g.start_workflow_run(Name="wf_props")["RunId"]
    args = rt.parse_job_args(["s.py", "--job_config", "j.yaml", "--WORKFLOW_NAME", "wf_props",
                              "--WORKFLOW_RUN_ID", run_id])
    props = rt.run_properties_for(args, aws)
    assert props is not None
    assert props.get("region") == "eu" and props.get("nope", 1) == 1
    props.put("rows", 42)  # Glue keeps strings
    other = rt.GlueRunProperties("wf_props", run_id, rt.aws_client("glue", aws))  # another job of the run
    assert other.get("rows") == "42" and other["region"] == "eu" and "rows" in other
    assert g.get_workflow_run_properties(Name="wf_props", RunId=run_id)["RunProperties"] == {
        "region": "eu", "rows": "42"}
    assert other.run_vars()["id"] == run_id
    assert rt.run_properties_for(rt.parse_job_args(["s.py", "--job_config", "j.yaml"]), aws) is None


def _upload_project(aws: Any, bucket: str, files: dict[str, str]) -> None:
    s3 = rt.aws_client("s3", aws)
    s3.create_bucket(Bucket=bucket)
    for key, body in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())


def test_fetch_project_downloads_the_deployed_files(aws: Any, tmp_path: Path) -> None:
    _upload_project(aws, "proj-a", {"etl/project/conf/prod.yaml": "vars: {}\n",
                                    "etl/project/jobs/sub/z.yaml": "job: z\n", "etl/other/x": "no"})
    root = rt.fetch_project("s3://proj-a/etl/project/", tmp_path / "p", aws=aws)
    assert (root / "conf" / "prod.yaml").read_text() == "vars: {}\n"
    assert (root / "jobs" / "sub" / "z.yaml").is_file()
    assert not (root / "other").exists()
    assert rt.local_job_path("s3://proj-a/etl/project/jobs/sub/z.yaml", "s3://proj-a/etl/project", root) == \
        root / "jobs" / "sub" / "z.yaml"
    with pytest.raises(EtlError, match="not under --project_dir"):
        rt.local_job_path("s3://elsewhere/z.yaml", "s3://proj-a/etl/project", root)
    with pytest.raises(EtlError, match="no project files"):
        rt.fetch_project("s3://proj-a/nothing/", tmp_path / "q", aws=aws)


JOB_YAML = """
job: zones
params: {limit: 1}
sources: {zones: {format: csv, path: "s3://data/zones/"}}
target: {path: "s3://data/lake/zones"}
"""


@pytest.mark.parametrize("status, code", [("SUCCEEDED", 0), ("FAILED", 1)])
def test_run_in_glue_runs_the_same_job_and_commits_only_on_success(
        fake_awsglue: list[Any], aws: Any, monkeypatch: pytest.MonkeyPatch, status: str, code: int) -> None:
    import etl_framework.engine.job as engine

    bucket = f"proj-{status.lower()}"
    conf = f"aws: {{region: {REGION}, endpoint_url: '{aws.endpoint_url}'}}\n"
    _upload_project(aws, bucket, {"etl/project/conf/prod.yaml": conf, "etl/project/jobs/z.yaml": JOB_YAML})
    g = rt.aws_client("glue", aws)
    g.create_workflow(Name=f"wf_{bucket}", DefaultRunProperties={"day": "2026-11-25"})
    wr = g.start_workflow_run(Name=f"wf_{bucket}")["RunId"]
    seen: dict[str, Any] = {}

    class Result:
        exit_code = code

    Result.status = status

    def fake_run_job(job_path: Path, **kw: Any) -> Any:
        seen.update(kw, job_path=job_path, day=kw["run_properties"].get("day"))
        return Result()

    monkeypatch.setattr(engine, "run_job", fake_run_job)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)  # boto3's own override: Glue has no env config yet
    argv = [a.replace("s3://proj/", f"s3://{bucket}/") for a in GLUE_ARGV]
    argv[argv.index("--job_config") + 1] = f"s3://{bucket}/etl/project/jobs/z.yaml"
    argv += ["--WORKFLOW_NAME", f"wf_{bucket}", "--WORKFLOW_RUN_ID", wr]
    assert rt.run_in_glue(argv) == code
    assert seen["job_path"].read_text() == JOB_YAML
    assert seen["env"] == "prod" and seen["run_id"] == "jr_0a1b" and seen["workflow_run_id"] == wr
    assert seen["params"] == {"limit": "7"}  # declared params only: not Glue's --enable-metrics
    assert seen["spark"] == ("spark-of", "sc")
    assert seen["day"] == "2026-11-25"  # run properties from Glue's API
    assert (("Job.commit",) in fake_awsglue) == (status == "SUCCEEDED")
