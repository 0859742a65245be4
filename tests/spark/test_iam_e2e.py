"""Production on AWS, end to end on a moto server WITH IAM enforcement (tests/moto_iam.py says how moto enforces and
what the test server adds): `etl deploy` with `iam: generate` and a KMS key, then the cloud job (s3a:// on moto,
Delta written, registered in the Glue catalog, run record and bookmark in DynamoDB) run with the generated job
role's credentials only - assumed through moto's STS, whose temporary keys moto authorizes with the role's
policies. The same credentials are denied a write outside the job's target and a secret the job does not name."""

from __future__ import annotations

import json
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.moto_iam import enforce, enforcing_moto

pytestmark = pytest.mark.slow
REGION = "us-east-1"
CSV = "zone_id,zone_name,region\n1,Alpha,eu\n2,Beta,eu\n3,Gamma,us\n"
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def boto(service: str, url: str, creds: dict[str, str]) -> Any:
    import boto3

    return boto3.client(service, endpoint_url=url, region_name=REGION, **creds)


def creds_env(monkeypatch: pytest.MonkeyPatch, creds: dict[str, str]) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["aws_secret_access_key"])
    if creds.get("aws_session_token"):
        monkeypatch.setenv("AWS_SESSION_TOKEN", creds["aws_session_token"])
    else:
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


def tiny_wheel(path: Path) -> Path:
    """A stand-in framework wheel: deploy uploads it as is (building the real one takes a minute)."""
    whl = path / "etl_framework-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("etl_framework-0.0.0.dist-info/METADATA", "Name: etl_framework\nVersion: 0.0.0\n")
    return whl


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A project deployed with `iam: generate` and a KMS alias by an admin user, on an enforcing moto server."""
    from etl_framework.config.project import Project
    from etl_framework.deploy.run import deploy

    mp = pytest.MonkeyPatch()
    with enforcing_moto() as url:
        anon = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        iam = boto("iam", url, anon)
        iam.create_user(UserName="etl-admin")
        iam.put_user_policy(UserName="etl-admin", PolicyName="admin", PolicyDocument=json.dumps(ADMIN_POLICY))
        key = iam.create_access_key(UserName="etl-admin")["AccessKey"]
        admin = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
        tag = uuid.uuid4().hex[:8]
        raw, lake, art = f"iamraw-{tag}", f"iamlake-{tag}", f"iamart-{tag}"
        s3 = boto("s3", url, anon)
        for b in (raw, lake, art):
            s3.create_bucket(Bucket=b)
        s3.put_object(Bucket=raw, Key="raw/zones/zones.csv", Body=CSV.encode())
        kms = boto("kms", url, anon)
        key_arn = kms.create_key()["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName=f"alias/etl-{tag}", TargetKeyId=key_arn)
        sm = boto("secretsmanager", url, anon)
        sm.create_secret(Name=f"zones_token_{tag}", SecretString="NA")
        sm.create_secret(Name=f"payroll_password_{tag}", SecretString="hunter2")
        root = tmp_path_factory.mktemp("iam") / "proj"
        (root / "conf").mkdir(parents=True)
        (root / "jobs").mkdir()
        (root / "conf" / "prod.yaml").write_text(textwrap.dedent(f"""
            vars: {{raw_root: "s3a://{raw}/raw", lake_root: "s3a://{lake}/lake"}}
            state: {{backend: dynamodb, table_prefix: "t{tag}_"}}
            catalog: {{backend: glue}}
            aws: {{region: {REGION}, endpoint_url: "{url}"}}
            deploy:
              project: iamtest
              s3_prefix: s3://{art}/etl
              name_prefix: "t{tag}_"
              iam: generate
              kms_key: alias/etl-{tag}
        """))
        (root / "jobs" / "zones_cloud.yaml").write_text(textwrap.dedent(f"""
            job: zones_cloud
            sources:
              zones:
                format: csv
                path: ${{env.raw_root}}/zones/
                options: {{header: true, nullValue: "${{secret:zones_token_{tag}}}"}}
                schema: {{zone_id: int, zone_name: string, region: string}}
                incremental: {{mode: files}}
            transform:
              - with_columns: {{zone_label: "concat(zone_name, '-', region)"}}
            target:
              format: delta
              path: ${{env.lake_root}}/curated/zones
              partition_by: [region]
            register: {{database: curated, table: zones_cloud}}
        """))
        (root / "jobs" / "nightly.yaml").write_text(textwrap.dedent("""
            workflow: nightly
            jobs: {zones_cloud: zones_cloud.yaml}
            crawlers:
              raw_zones: {path: "${env.raw_root}/zones/", database: raw}
            triggers:
              - {name: start, type: on_demand, actions: [{crawler: raw_zones}]}
              - name: after_crawl
                type: conditional
                conditions: [{crawler: raw_zones, state: SUCCEEDED}]
                actions: [{job: zones_cloud}]
        """))
        enforce(url)
        creds_env(mp, admin)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("ETL_AWS_ENDPOINT_URL", url)  # Secrets Manager (${secret:NAME}) on the moto server
        project = Project(root)
        wheel = tiny_wheel(root.parent)
        result = deploy(project, "prod", wheel_path=wheel)
        try:
            yield {"url": url, "root": root, "project": project, "admin": admin, "tag": tag, "raw": raw,
                   "lake": lake, "art": art, "key_arn": key_arn, "result": result, "wheel": wheel}
        finally:
            mp.undo()


@pytest.fixture
def s3a_restored(spark: Any) -> Iterator[None]:
    """The role's session token and provider leave the shared JVM's S3A settings as they were found."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    keys = ("fs.s3a.session.token", "fs.s3a.aws.credentials.provider", "fs.s3a.access.key", "fs.s3a.secret.key",
            "fs.s3a.endpoint")
    before = {k: conf.get(k) for k in keys}
    yield
    for k, v in before.items():
        if v is None:
            conf.unset(k)
        else:
            conf.set(k, v)


def assume(prod: dict[str, Any], role: str) -> dict[str, str]:
    """The role's temporary credentials. Its trust policy names glue.amazonaws.com, which a test cannot be: the test
    trusts itself instead (as one does to try a Glue role by hand); the permissions policy stays as generated."""
    url, admin = prod["url"], prod["admin"]
    me = boto("sts", url, admin).get_caller_identity()["Arn"]
    iam = boto("iam", url, admin)
    iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": me},
                                                "Action": "sts:AssumeRole"}]}))
    arn = iam.get_role(RoleName=role)["Role"]["Arn"]
    c = boto("sts", url, admin).assume_role(RoleArn=arn, RoleSessionName="glue-job")["Credentials"]
    return {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
            "aws_session_token": c["SessionToken"]}


def test_deploy_generates_one_least_privilege_role_per_job_and_encrypts_everything(prod: dict[str, Any]) -> None:
    url, admin, tag = prod["url"], prod["admin"], prod["tag"]
    glue, iam = boto("glue", url, admin), boto("iam", url, admin)
    job = glue.get_job(JobName=f"t{tag}_zones_cloud")["Job"]
    role = job["Role"].rsplit("/", 1)[-1]
    assert role == f"t{tag}_etl-iamtest-prod-job-zones_cloud"
    crawler = glue.get_crawler(Name=f"t{tag}_raw_zones")["Crawler"]
    assert crawler["Role"].endswith(f"/t{tag}_etl-iamtest-prod-crawlers")
    policy = iam.get_role_policy(RoleName=role, PolicyName="etl-least-privilege")["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["WriteTablesObjects"]["Resource"] == [f"arn:aws:s3:::{prod['lake']}/lake/curated/zones",
                                                          f"arn:aws:s3:::{prod['lake']}/lake/curated/zones/*"]
    assert by_sid["Secrets"]["Resource"] == [
        f"arn:aws:secretsmanager:{REGION}:123456789012:secret:zones_token_{tag}-??????"]
    assert by_sid["Kms"]["Resource"] == prod["key_arn"]
    resources = [r for s in policy["Statement"] if s["Sid"] != "Metrics"  # PutMetricData has no resource ARN
                 for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])]
    assert not [r for r in resources if r == "*" or r.endswith((":::*", ":*:*"))]

    # one security configuration (S3 SSE-KMS, CloudWatch SSE-KMS, bookmarks CSE-KMS), on every job and crawler
    name = f"t{tag}_etl-iamtest-prod"
    assert job["SecurityConfiguration"] == name and crawler["CrawlerSecurityConfiguration"] == name
    enc = glue.get_security_configuration(Name=name)["SecurityConfiguration"]["EncryptionConfiguration"]
    assert enc["S3Encryption"][0] == {"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": prod["key_arn"]}
    assert enc["CloudWatchEncryption"]["CloudWatchEncryptionMode"] == "SSE-KMS"
    assert enc["JobBookmarksEncryption"]["JobBookmarksEncryptionMode"] == "CSE-KMS"
    assert "server-side-encryption-algorithm=SSE-KMS" in job["DefaultArguments"]["--conf"]
    # every uploaded object carries SSE-KMS with the key
    s3 = boto("s3", url, admin)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=prod["art"])["Contents"]]
    assert len(keys) >= 4
    for k in keys:
        head = s3.head_object(Bucket=prod["art"], Key=k)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", prod["key_arn"]), k

    # the DynamoDB state table is encrypted with the key
    sse = boto("dynamodb", url, admin).describe_table(TableName=f"t{tag}_state")["Table"]["SSEDescription"]
    assert (sse["SSEType"], sse["KMSMasterKeyArn"]) == ("KMS", prod["key_arn"])
    # nothing public: the bucket's public access block is checked (a warning here), never changed
    assert any(f"S3 bucket {prod['art']} does not block public access" in w for w in prod["result"].warnings)

    # the policy is part of the idempotent diff: a second deploy changes nothing
    from etl_framework.deploy.run import deploy

    again = deploy(prod["project"], "prod", wheel_path=prod["wheel"], dry_run=True)
    assert not again.plan.pending, [c.to_json() for c in again.plan.pending]


def test_the_job_runs_with_its_generated_role_only_and_is_denied_everything_else(
        spark: Any, prod: dict[str, Any], monkeypatch: pytest.MonkeyPatch, s3a_restored: None) -> None:
    from botocore.exceptions import ClientError

    from etl_framework.engine.job import run_job
    from etl_framework.state.dynamodb import DynamoRunStore

    url, tag = prod["url"], prod["tag"]
    role = assume(prod, f"t{tag}_etl-iamtest-prod-job-zones_cloud")
    creds_env(monkeypatch, role)
    result = run_job(prod["root"] / "jobs" / "zones_cloud.yaml", project=prod["project"], env="prod", spark=spark,
                     quiet=True)
    assert result.status == "SUCCEEDED", result.error
    admin = prod["admin"]
    table = boto("glue", url, admin).get_table(DatabaseName="curated", Name="zones_cloud")["Table"]
    assert table["StorageDescriptor"]["Location"].rstrip("/") == f"s3://{prod['lake']}/lake/curated/zones"
    assert spark.read.format("delta").load(f"s3a://{prod['lake']}/lake/curated/zones").count() == 3
    run = DynamoRunStore(prod["project"].env_config("prod")).get_run(result.run_id)
    assert run is not None and run["status"] == "SUCCEEDED"
    # the run published its numbers to CloudWatch (namespace etl_framework, dimensions job and env)
    published = boto("cloudwatch", url, admin).list_metrics(Namespace="etl_framework")["Metrics"]
    names = {m["MetricName"] for m in published
             if {d["Name"]: d["Value"] for d in m["Dimensions"]} == {"job": "zones_cloud", "env": "prod"}}
    assert {"RowsRead", "RowsWritten", "Duration", "BookmarkLag"} <= names, names

    s3, sm = boto("s3", url, role), boto("secretsmanager", url, role)
    s3.put_object(Bucket=prod["lake"], Key="lake/curated/zones/_probe", Body=b"x")  # its own target: allowed
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=prod["lake"], Key="lake/curated/other/x.parquet", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert sm.get_secret_value(SecretId=f"zones_token_{tag}")["SecretString"] == "NA"
    with pytest.raises(ClientError) as denied:
        sm.get_secret_value(SecretId=f"payroll_password_{tag}")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403  # moto: code "403", AWS: AccessDenied...
