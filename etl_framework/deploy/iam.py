"""Least-privilege IAM derived from the YAML (`deploy: {iam: generate}`, SPEC §13): one role per job, one for the
project's crawlers and one for the orchestrator (Glue event rules / Step Functions and its schedules), each with one
inline policy naming exactly the S3 prefixes, catalog tables, state table, secrets, log groups and KMS key that the
project's files say it uses.

Pure: no AWS call. ARNs that need the account are written with `{partition}`, `{region}`, `{account}` and
`{kms_key_arn}` placeholders, filled in by `fill` once deploy knows them (so `etl iam show` works offline too).

Why each grant is there (reviewers ask):
- S3 reads: GetObject under each source prefix, ListBucket on its bucket limited to that prefix (`s3:prefix`).
- S3 writes (target, quarantine, bad records): Get/Put/Delete under the table's prefix. Delete is what the table
  formats need: Spark's commit protocol renames (S3A: copy + delete) its `_temporary` files into place, Delta and
  Iceberg clean up expired log/metadata files, and an aborted write removes its own files.
- S3A (Spark's S3 client outside Glue) probes each ancestor of a path it creates as a file (HEAD `lake/curated`):
  GetObject on those exact keys (not prefixes), which lets it see that no file is in the way and nothing more.
- Code: the deploy's own upload prefix read-only; Glue's `--TempDir` and the Step Functions run properties
  (`tmp/`, `runs/`) read/write.
- Glue Data Catalog: the catalog, database and table ARNs the job reads (catalog sources) or registers; crawlers:
  their databases' tables (a crawler names its tables after the folders).
- DynamoDB: the state table and its indexes (`state: {backend: dynamodb}`) - item operations only, deploy made it.
- Secrets: GetSecretValue on the named secrets only (`NAME-??????`: Secrets Manager appends 6 characters).
- CloudWatch Logs: the job's own continuous-log group and Glue's standard groups; PutMetricData in the
  `etl_framework` namespace; EventBridge PutEvents on the default bus (quality events).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from etl_framework.config.errors import ConfigError
from etl_framework.config.interpolate import SECRET_REF

VERSION = "2012-10-17"
INLINE_POLICY_LIMIT = 10240  # IAM: characters of all inline policies of a role (whitespace not counted)
ROLE_PATH = "/etl/"  # generated roles live here: --prune looks for its orphans nowhere else
METRICS_NAMESPACE = "etl_framework"
ARN = "arn:{partition}"
READ_S3 = ["s3:GetObject"]
WRITE_S3 = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
GLUE_READ = ["glue:GetDatabase", "glue:GetTable", "glue:GetTables", "glue:GetPartition", "glue:GetPartitions",
             "glue:BatchGetPartition"]
GLUE_WRITE = ["glue:CreateTable", "glue:UpdateTable", "glue:DeleteTable", "glue:CreatePartition",
              "glue:BatchCreatePartition", "glue:UpdatePartition", "glue:BatchUpdatePartition"]
DYNAMO_ITEMS = ["dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"]
KMS_USE = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
           "kms:DescribeKey"]
LOG_WRITE = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:AssociateKmsKey"]
GLUE_LOG_GROUPS = ("/aws-glue/jobs/output", "/aws-glue/jobs/error", "/aws-glue/jobs/logs-v2")
TRUST = {"job": ["glue.amazonaws.com"], "crawlers": ["glue.amazonaws.com"],
         "orchestrator": ["states.amazonaws.com", "events.amazonaws.com", "scheduler.amazonaws.com"]}


@dataclass
class RolePlan:
    """One generated role: its name, who may assume it, and its one inline policy."""

    name: str
    purpose: str  # job:NAME | crawlers | orchestrator
    trust: dict[str, Any]
    policy: dict[str, Any]

    @property
    def arn(self) -> str:
        return f"arn:{{partition}}:iam::{{account}}:role{ROLE_PATH}{self.name}"


def role_name(name_prefix: str, project: str, env: str, what: str) -> str:
    """`<prefix>etl-<project>-<env>-<what>`, at most IAM's 64 characters (a hash keeps long names distinct)."""
    name = re.sub(r"[^\w+=,.@-]", "-", f"{name_prefix}etl-{project}-{env}-{what}")
    if len(name) > 64:
        name = name[:55] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return name


def trust_policy(services: list[str]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": [{"Effect": "Allow", "Principal": {"Service": sorted(services)},
                                                "Action": "sts:AssumeRole"}]}


def split(uri: str) -> tuple[str, str]:
    """s3://bucket/a/b/ -> (bucket, 'a/b')."""
    rest = re.sub(r"^s3[an]?://", "", uri)
    bucket, _, key = rest.partition("/")
    return bucket, key.strip("/")


def is_s3(uri: str | None) -> bool:
    return bool(uri) and str(uri).startswith(("s3://", "s3a://", "s3n://"))


def s3_statements(sid: str, uris: list[str], actions: list[str]) -> list[dict[str, Any]]:
    """Objects under each prefix (the prefix itself too: a single-file path), ListBucket limited to the prefixes
    per bucket, and GetObject on the ancestors' exact keys (S3A's 'is a file in the way' probe)."""
    objects: list[str] = []
    listing: dict[str, list[str]] = {}
    ancestors: list[str] = []
    for uri in uris:
        bucket, key = split(uri)
        if key:
            objects += [f"{ARN}:s3:::{bucket}/{key}", f"{ARN}:s3:::{bucket}/{key}/*"]
            listing.setdefault(bucket, []).extend([key, f"{key}/*"])
            parts = key.split("/")
            ancestors += [f"{ARN}:s3:::{bucket}/{'/'.join(parts[:i])}" for i in range(1, len(parts))]
        else:  # a whole bucket
            objects.append(f"{ARN}:s3:::{bucket}/*")
            listing.setdefault(bucket, [])
    out: list[dict[str, Any]] = []
    if objects:
        out.append({"Sid": sid + "Objects", "Effect": "Allow", "Action": sorted(set(actions)),
                    "Resource": sorted(set(objects))})
    for bucket, prefixes in sorted(listing.items()):
        st: dict[str, Any] = {"Sid": sid + "List" + _sid(bucket), "Effect": "Allow",
                              "Action": ["s3:ListBucket"], "Resource": f"{ARN}:s3:::{bucket}"}
        if prefixes:
            st["Condition"] = {"StringLike": {"s3:prefix": sorted(set(prefixes))}}
        out.append(st)
    return out + _ancestor_statement(sid, ancestors, objects)


def _ancestor_statement(sid: str, ancestors: list[str], objects: list[str]) -> list[dict[str, Any]]:
    left = sorted(set(ancestors) - set(objects))
    return [{"Sid": sid + "Parents", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": left}] if left else []


def _sid(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text.title())[:40]


def glue_arns(tables: list[tuple[str, str]]) -> list[str]:
    """Catalog, database and table ARNs: Glue authorizes a table call against all three."""
    base = f"{ARN}:glue:{{region}}:{{account}}"
    out = {f"{base}:catalog"}
    for db, table in tables:
        out.add(f"{base}:database/{db}")
        out.add(f"{base}:table/{db}/{table}")
    return sorted(out)


def secret_arn(name: str) -> str:
    return f"{ARN}:secretsmanager:{{region}}:{{account}}:secret:{name}-??????"


def dynamo_arns(table: str) -> list[str]:
    base = f"{ARN}:dynamodb:{{region}}:{{account}}:table/{table}"
    return [base, base + "/index/*"]


def job_log_group(project: str, env: str, job: str) -> str:
    return f"/aws-glue/jobs/etl/{project}/{env}/{job}"


def log_arns(groups: list[str]) -> list[str]:
    base = f"{ARN}:logs:{{region}}:{{account}}:log-group:"
    return sorted({base + g + suffix for g in groups for suffix in ("", ":*")})


def secret_names(value: Any) -> list[str]:
    """Every `${secret:NAME}` in a loaded config (env vars and param defaults already filled in)."""
    found: list[str] = []
    if isinstance(value, str):
        found += SECRET_REF.findall(value)
    elif isinstance(value, dict):
        for v in value.values():
            found += secret_names(v)
    elif isinstance(value, list | tuple):
        for v in value:
            found += secret_names(v)
    return sorted(set(found))


DYNAMIC_SECRET = re.compile(r"\$\{secret:[^}]*\$\{(?!env\.)([^{}]+)\}")


def dynamic_secret_errors(doc: Any, job: str, display: str) -> list[ConfigError]:
    """A secret whose name depends on a param or a run value is known only at run time: a generated policy
    cannot name it (granting `*` would defeat the point). Env values are fixed per deploy and fine."""
    errors: list[ConfigError] = []

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        if isinstance(value, str):
            for m in DYNAMIC_SECRET.finditer(value):
                line, col = doc.scalar_pos(path, m.start()) if hasattr(doc, "scalar_pos") else doc.pos(path)
                key = ".".join(str(p) for p in path)
                errors.append(ConfigError(display, line, col, (
                    f"job {job}, key {key}: the secret's name depends on ${{{m.group(1)}}}, known only at run time; "
                    "deploy.iam: generate grants secretsmanager:GetSecretValue on named secrets only - write the "
                    "secret's full name (or take it from ${env.NAME})")))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))

    walk(doc.data, ())
    return errors


# --------------------------------------------------------------------------------------------------- policies


def _policy(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": [s for s in statements if s.get("Resource")]}


def job_policy(cfg: Any, env_cfg: Any, *, project: str, env: str, s3_root: str, glue_job: str,
               workflows: list[str] = (), state_machine_runs: bool = False) -> dict[str, Any]:
    """The one inline policy of a job's role. `cfg`: JobConfig (interpolated for the env)."""
    from etl_framework.config.model import JobConfig

    assert isinstance(cfg, JobConfig)
    d = env_cfg.deploy
    st: list[dict[str, Any]] = []
    reads = [s.path for s in cfg.sources.values() if is_s3(s.path)]
    writes = [p for p in cfg.tables_written() if is_s3(p)]
    if reads:
        st += s3_statements("ReadSources", reads, READ_S3)
    if writes:
        st += s3_statements("WriteTables", writes, WRITE_S3)
    st += s3_statements("ReadCode", [s3_root.rstrip("/") + "/" + p for p in ("scripts", "wheels", "jars",
                                                                             "project")], READ_S3)
    scratch = [s3_root.rstrip("/") + "/tmp"] + ([s3_root.rstrip("/") + "/runs"] if state_machine_runs else [])
    spark_ui = cfg.glue.spark_ui if cfg.glue is not None and cfg.glue.spark_ui is not None else d.spark_ui
    if spark_ui:  # the Spark UI's event logs (--spark-event-logs-path)
        scratch.append(s3_root.rstrip("/") + "/sparkui")
    st += s3_statements("Scratch", scratch, WRITE_S3)
    read_tables = [tuple(s.table.split(".", 1)) for s in cfg.sources.values() if s.format == "catalog" and s.table]
    crawled = [(c.database, c.table or "*") for c in cfg.crawl]
    written = [(cfg.register.database, cfg.register.table)] if cfg.register else []
    if cfg.target.format == "iceberg" and env_cfg.catalog.backend == "glue" and not written:
        written = [("default", "*")]
    if read_tables or crawled:
        st.append({"Sid": "CatalogRead", "Effect": "Allow", "Action": GLUE_READ,
                   "Resource": glue_arns(read_tables + crawled)})
    if written:
        st.append({"Sid": "CatalogWrite", "Effect": "Allow", "Action": sorted(set(GLUE_READ + GLUE_WRITE)),
                   "Resource": glue_arns(written)})
    if workflows:  # Glue workflow run properties (read at start, written by a job)
        st.append({"Sid": "RunProperties", "Effect": "Allow",
                   "Action": ["glue:GetWorkflowRunProperties", "glue:PutWorkflowRunProperties"],
                   "Resource": [f"{ARN}:glue:{{region}}:{{account}}:workflow/{w}" for w in sorted(workflows)]})
    if env_cfg.state.backend == "dynamodb":
        st.append({"Sid": "StateTable", "Effect": "Allow", "Action": DYNAMO_ITEMS,
                   "Resource": dynamo_arns(f"{env_cfg.state.table_prefix}state")})
    secrets = secret_names(cfg.model_dump(by_alias=True))
    if secrets:
        st.append({"Sid": "Secrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                   "Resource": [secret_arn(s) for s in secrets]})
    st.append({"Sid": "Logs", "Effect": "Allow", "Action": LOG_WRITE,
               "Resource": log_arns([job_log_group(project, env, cfg.job), *GLUE_LOG_GROUPS])})
    st.append({"Sid": "Metrics", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": "*",
               "Condition": {"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}}})
    st.append({"Sid": "QualityEvents", "Effect": "Allow", "Action": ["events:PutEvents"],
               "Resource": f"{ARN}:events:{{region}}:{{account}}:event-bus/default"})
    if d is not None and d.kms_key:
        st.append({"Sid": "Kms", "Effect": "Allow", "Action": KMS_USE, "Resource": "{kms_key_arn}"})
    return _policy(st)


def crawler_policy(crawlers: list[tuple[str, str, str | None]], kms: bool) -> dict[str, Any]:
    """The crawlers' role: read each crawled prefix, create/update the tables of their databases."""
    st = s3_statements("ReadCrawled", [p for p, _, _ in crawlers if is_s3(p)], READ_S3)
    st.append({"Sid": "Catalog", "Effect": "Allow", "Action": sorted(set(GLUE_READ + GLUE_WRITE)),
               "Resource": glue_arns([(db, "*") for _, db, _ in crawlers])})
    st.append({"Sid": "Logs", "Effect": "Allow", "Action": LOG_WRITE,
               "Resource": log_arns(["/aws-glue/crawlers", "/aws-glue/crawlers-role/*"])})
    if kms:
        st.append({"Sid": "Kms", "Effect": "Allow", "Action": KMS_USE, "Resource": "{kms_key_arn}"})
    return _policy(st)


def orchestrator_policy(jobs: list[str], crawlers: list[str], workflows: list[str], state_machines: list[str],
                        runs_prefix: str | None, pass_roles: list[str], kms: bool,
                        started_workflows: list[str] | None = None) -> dict[str, Any]:
    """What the orchestrator starts and polls: the project's jobs and crawlers, its workflows (EventBridge
    notifyEvent; StartWorkflowRun by the schedules of workflows whose one Glue start trigger is another), its state
    machines (schedules and rules start executions) and the run properties objects."""
    base = f"{ARN}:glue:{{region}}:{{account}}"
    st: list[dict[str, Any]] = []
    if jobs:
        st.append({"Sid": "Jobs", "Effect": "Allow",
                   "Action": ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"],
                   "Resource": [f"{base}:job/{j}" for j in sorted(jobs)]})
    if crawlers:
        st.append({"Sid": "Crawlers", "Effect": "Allow", "Action": ["glue:StartCrawler", "glue:GetCrawler"],
                   "Resource": [f"{base}:crawler/{c}" for c in sorted(crawlers)]})
    if workflows:
        st.append({"Sid": "Workflows", "Effect": "Allow", "Action": ["glue:NotifyEvent"],
                   "Resource": [f"{base}:workflow/{w}" for w in sorted(workflows)]})
    if started_workflows:
        st.append({"Sid": "StartWorkflows", "Effect": "Allow", "Action": ["glue:StartWorkflowRun"],
                   "Resource": [f"{base}:workflow/{w}" for w in sorted(started_workflows)]})
    if state_machines:
        arns = [f"{ARN}:states:{{region}}:{{account}}:stateMachine:{m}" for m in sorted(state_machines)]
        st.append({"Sid": "StateMachines", "Effect": "Allow", "Action": ["states:StartExecution",
                                                                         "states:ListExecutions"],
                   "Resource": arns})
    if runs_prefix:
        st += s3_statements("RunProperties", [runs_prefix], ["s3:GetObject", "s3:PutObject"])
    if pass_roles:
        st.append({"Sid": "PassJobRoles", "Effect": "Allow", "Action": ["iam:PassRole"],
                   "Resource": sorted(pass_roles),
                   "Condition": {"StringEquals": {"iam:PassedToService": "glue.amazonaws.com"}}})
    if kms:
        st.append({"Sid": "Kms", "Effect": "Allow", "Action": KMS_USE, "Resource": "{kms_key_arn}"})
    if not st:
        st.append({"Sid": "Nothing", "Effect": "Deny", "Action": "*", "Resource": "*"})
    return _policy(st)


def fill(value: Any, **names: str) -> Any:
    """Fill the `{partition}`/`{region}`/`{account}`/`{kms_key_arn}` placeholders in a policy (recursively)."""
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: fill(v, **names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, **names) for v in value]
    return value


def policy_json(policy: dict[str, Any]) -> str:
    return json.dumps(policy, indent=2, sort_keys=False)
