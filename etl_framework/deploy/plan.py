"""Plan and apply: compare the desired state with what S3 and Glue hold, then make only the differences.

Every resource is read back before anything is written, so a second deploy writes nothing and an interrupted
deploy is completed by the next one (what was made is `unchanged`, the rest is created). Tags are part of the diff:
a resource missing one of ours, or one of the user's `tags` (or holding another value), gets it (TagResource) on the
next deploy (a tag removed from the YAML is left on the resource: others may tag it too), and a resource tagged as another
project's or env's is never taken over. Resources with the name prefix that carry all three of our tags
(`etl:managed-by=etl_framework`, `etl:project=PROJECT`, `etl:env=ENV`, each read back with GetTags, never trusted
to a List* tag filter alone) and files under `<s3_prefix>/<project>/<env>/` that the project no longer defines are
listed as orphans and deleted only with `--prune`.

Emulators: moto (5.2) has no UpdateJob, UpdateCrawler or UpdateTrigger. Against an `aws.endpoint_url`, an update
that fails because the API is not implemented falls back to delete + create of that resource (said in the output);
against AWS the Update* APIs are used.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from etl_framework.deploy.spec import (
    ENV_TAG,
    MANAGED_TAG,
    PROJECT_TAG,
    Artifact,
    DesiredState,
    Resource,
)
from etl_framework.errors import EtlError

SHA_KEY = "etl-sha256"
UNCHANGEABLE = {"trigger": ("Type", "WorkflowName"),  # Glue cannot update these: delete + create
                "security_configuration": ("EncryptionConfiguration",)}  # Glue cannot update these: delete + create
MANAGED_S3 = ("scripts/", "wheels/", "jars/", "project/")  # under DesiredState.s3_root; tmp/ is Glue's scratch
TAGGED = ("job", "crawler", "workflow", "trigger", "event_rule", "state_machine", "schedule_group", "role", "alarm")  # what deploy tags, checks and may prune
TAGS = "Tags."  # diff fields of missing tags: `Tags.etl:project`


class DeployError(EtlError):
    """A deploy step failed; names the API call, the resource and what to do."""


@dataclass
class Change:
    kind: str  # artifact | database | job | crawler | workflow | trigger
    name: str
    action: str  # create | update | replace | unchanged | orphan | delete
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    note: str = ""
    resource: Resource | Artifact | None = field(default=None, repr=False)
    actual: dict[str, Any] | None = field(default=None, repr=False)
    diff: list[str] = field(default_factory=list)  # state machines: the definition's unified diff

    def spec(self) -> dict[str, Any] | None:
        """What this change makes: a resource's Create parameters, an upload's key, size and hash."""
        r = self.resource
        if r is None:
            return None
        if isinstance(r, Artifact):
            return {"uri": r.uri, "label": r.label, "bytes": len(r.data), "sha256": r.sha256}
        return r.spec

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "action": self.action}
        if self.action in ("create", "update", "replace") and self.resource is not None:
            out["spec"] = self.spec()  # the whole of it, for review (the text diff shortens long values)
        if self.fields:
            out["fields"] = {k: {"from": a, "to": b} for k, (a, b) in self.fields.items()}
        if self.diff:
            out["diff"] = self.diff
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Plan:
    changes: list[Change]
    warnings: list[str] = field(default_factory=list)

    def by_action(self, action: str) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action in ("create", "update", "replace")]

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.changes:
            out[c.action] = out.get(c.action, 0) + 1
        return out

    @property
    def prunes_more_than_it_creates(self) -> bool:
        """A prune that deletes more than the deploy creates is more likely a mistake (a half checkout, the
        wrong branch) than a rename: `etl deploy --prune` asks for `--yes` before making it."""
        return len(self.by_action("orphan")) > len(self.by_action("create"))


# ------------------------------------------------------------------------------------------------- comparison


def normalize(value: Any) -> Any:
    """Drop what Glue leaves out or fills in as empty (None, {}, []), so equal configs compare equal."""
    if isinstance(value, dict):
        out = {k: normalize(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "")}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def field_diff(desired: dict[str, Any], actual: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Changed fields as dotted paths (dicts are walked, lists compared whole): {path: (actual, desired)}."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(desired) | set(actual), key=str):
        a, d = actual.get(key), desired.get(key)
        if a == d:
            continue
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(d, dict):
            out.update(field_diff(d, a, path + "."))
        else:
            out[path] = (a, d)
    return out


def compared(kind: str, spec: dict[str, Any], actual: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The desired spec and the same fields of the actual resource, normalized."""
    keys = [k for k in spec if k != "Name"]
    want = normalize({k: spec[k] for k in keys})
    have = normalize({k: actual.get(k) for k in keys})
    if kind == "job" and "Command" in have:  # Glue adds Runtime etc. to Command; compare what we set
        have["Command"] = {k: v for k, v in have["Command"].items() if k in want.get("Command", {})}
    if kind == "schedule" and isinstance(have.get("Target"), dict):  # the Scheduler fills in retry defaults
        have["Target"] = {k: v for k, v in have["Target"].items() if k in want.get("Target", {})}
    if kind == "state_machine" and isinstance(have.get("definition"), str):  # same JSON, any layout
        have["definition"] = json.dumps(json.loads(have["definition"]), sort_keys=True, separators=(",", ":"))
    if kind == "event_rule" and isinstance(have.get("EventPattern"), str):  # same JSON, any key order
        have["EventPattern"] = json.dumps(json.loads(have["EventPattern"]), sort_keys=True)
    return want, have


def definition_diff(old: Any, new: Any) -> list[str]:
    """A state machine definition's change as a unified diff of the indented JSON (what `--dry-run` shows)."""
    import difflib

    def lines(text: Any) -> list[str]:
        try:
            return json.dumps(json.loads(text or "{}"), indent=2, sort_keys=True).splitlines()
        except (TypeError, ValueError):
            return str(text).splitlines()

    return [ln.rstrip("\n") for ln in difflib.unified_diff(lines(old), lines(new), "deployed", "desired", n=2,
                                                             lineterm="")]


def trigger_active(actual: dict[str, Any]) -> bool:
    return actual.get("State") in ("ACTIVATED", "ACTIVATING")


# ------------------------------------------------------------------------------------------------------ AWS


class Aws:
    """The boto3 clients of one deploy, with the env config's region and endpoint."""

    def __init__(self, region: str, endpoint_url: str | None = None) -> None:
        from botocore.config import Config

        from etl_framework.aws import session

        self.region, self.endpoint_url = region, endpoint_url
        cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
        kw: dict[str, Any] = {"region_name": region, "endpoint_url": endpoint_url, "config": cfg}
        boto3 = session()  # the credentials the environment names now (not the process's first ones)
        self.glue = boto3.client("glue", **kw)
        self.s3 = boto3.client("s3", **kw)
        self.sts = boto3.client("sts", **kw)
        self.iam = boto3.client("iam", **kw)
        self.dynamodb = boto3.client("dynamodb", **kw)
        self.events = boto3.client("events", **kw)
        self.sfn = boto3.client("stepfunctions", **kw)
        self.scheduler = boto3.client("scheduler", **kw)
        self.kms = boto3.client("kms", **kw)
        self.cloudwatch = boto3.client("cloudwatch", **kw)
        self.account: str | None = None
        self.partition = "aws"


def error_code(e: Exception) -> str:
    resp = getattr(e, "response", None) or {}
    return str(resp.get("Error", {}).get("Code", ""))


def error_message(e: Exception) -> str:
    resp = getattr(e, "response", None) or {}
    msg = str(resp.get("Error", {}).get("Message", "") or e)
    if "<html" in msg.lower() or "<!doctype" in msg.lower():
        msg = f"HTTP {resp.get('ResponseMetadata', {}).get('HTTPStatusCode', '?')} from the endpoint"
    return msg.strip()


def is_not_found(e: Exception) -> bool:
    return error_code(e) in ("EntityNotFoundException", "404", "NoSuchKey", "NotFound", "NoSuchEntity")


def is_unimplemented(e: Exception) -> bool:
    code = error_code(e)
    return code in ("500", "NotImplemented", "InternalFailure", "UnknownOperationException") or \
        "not been implemented" in str(e)


def split_s3(uri: str) -> tuple[str, str]:
    m = re.match(r"^s3a?://([^/]+)/?(.*)$", uri)
    if not m:
        raise EtlError(f"deploy.s3_prefix {uri!r} is not an s3:// URI\n  what to do: set it to s3://bucket/prefix")
    return m.group(1), m.group(2)


class Deployer:
    """Reads, plans and applies one desired state."""

    def __init__(self, desired: DesiredState, aws: Aws, progress: Any = None) -> None:
        self.desired, self.aws = desired, aws
        self.progress = progress or (lambda msg: None)
        self.unimplemented: set[str] = set()
        self.kms_key_arn: str | None = None
        self.calls: list[str] = []  # write calls made, for the report

    # -- errors ------------------------------------------------------------------------------------------------

    def call(self, api: str, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as e:
            raise DeployError(
                f"{api} for {what} failed: {error_code(e)}: {error_message(e)}\n  what to do: fix the cause and "
                "run `etl deploy` again; what was already deployed stays and the next deploy continues from here"
            ) from e
        except BotoCoreError as e:
            raise DeployError(f"{api} for {what} failed: {e}\n  what to do: check aws.region / aws.endpoint_url "
                              "and your network, then run `etl deploy` again") from e

    def write(self, api: str, what: str, fn: Any, **kwargs: Any) -> Any:
        self.calls.append(f"{api} {what}")
        return self.call(api, what, fn, **kwargs)

    # -- preflight ---------------------------------------------------------------------------------------------

    def preflight(self) -> list[str]:
        """Credentials, role and bucket, checked before anything is written. Returns warnings."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        d = self.desired.deploy
        warnings: list[str] = []
        nothing = "nothing was deployed"
        try:
            ident = self.aws.sts.get_caller_identity()
            self.aws.account = ident.get("Account")
            arn = str(ident.get("Arn") or "")
            self.aws.partition = arn.split(":")[1] if arn.count(":") >= 2 else "aws"
        except (NoCredentialsError, PartialCredentialsError):
            raise DeployError(
                f"no AWS credentials found; {nothing}\n  what to do: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY), or run `aws sso login`, then deploy again") from None
        except EndpointConnectionError as e:
            raise DeployError(f"cannot reach AWS ({e}); {nothing}\n  what to do: check aws.region and "
                              "aws.endpoint_url in the env config, and your network") from None
        except ClientError as e:
            raise DeployError(f"AWS rejected the credentials: {error_code(e)}: {error_message(e)}; {nothing}\n"
                              "  what to do: refresh or fix your AWS credentials") from None
        except BotoCoreError as e:
            raise DeployError(f"cannot check the AWS credentials: {e}; {nothing}") from None
        if d.kms_key:
            self.kms_key_arn = self.resolve_kms_key(d.kms_key, nothing)
        if d.iam == "generate":
            self.check_bucket(d, nothing, warnings)
            return warnings + self.event_rule_warnings()
        m = re.match(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:.*/)?([\w+=,.@-]+)$", d.role or "")
        if not m:
            raise DeployError(
                f"deploy.role {d.role!r} is not an IAM role ARN; {nothing}\n  what to do: set deploy.role in "
                f"conf/{self.desired.env}.yaml to arn:aws:iam::ACCOUNT:role/NAME, a role Glue can assume")
        try:
            self.aws.iam.get_role(RoleName=m.group(2))
        except ClientError as e:
            if error_code(e) == "NoSuchEntity":
                raise DeployError(
                    f"IAM role {d.role} does not exist; {nothing}\n  what to do: create it (trusting "
                    "glue.amazonaws.com, with AWSGlueServiceRole and access to the S3 prefix) or fix deploy.role"
                ) from None
            warnings.append(f"could not check role {d.role} ({error_code(e)}); Glue will check it")
        self.check_bucket(d, nothing, warnings)
        return warnings + self.event_rule_warnings()

    def resolve_kms_key(self, key: str, nothing: str) -> str:
        """deploy.kms_key (an ARN, a key id or alias/NAME) as the key's ARN; a key or alias that does not exist stops
        the deploy before any write, naming it."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            meta = self.aws.kms.describe_key(KeyId=key)["KeyMetadata"]
        except ClientError as e:
            if error_code(e) in ("NotFoundException", "NotFound"):
                raise DeployError(
                    f"KMS key {key} (deploy.kms_key) does not exist in {self.aws.region}; {nothing}\n  what to do: "
                    f"create it (aws kms create-key, then aws kms create-alias --alias-name {key} ...) or fix "
                    "deploy.kms_key") from None
            raise DeployError(f"cannot use KMS key {key}: {error_code(e)}: {error_message(e)}; {nothing}") from None
        except BotoCoreError as e:
            raise DeployError(f"cannot check KMS key {key}: {e}; {nothing}") from None
        return str(meta["Arn"])

    def check_bucket(self, d: Any, nothing: str, warnings: list[str]) -> None:
        from botocore.exceptions import ClientError

        bucket, _ = split_s3(d.s3_prefix)
        try:
            self.aws.s3.head_bucket(Bucket=bucket)
        except ClientError as e:
            code = error_code(e)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise DeployError(
                    f"S3 bucket {bucket} (deploy.s3_prefix {d.s3_prefix}) does not exist; {nothing}\n"
                    f"  what to do: create it (aws s3 mb s3://{bucket} --region {self.aws.region}) or fix "
                    "deploy.s3_prefix") from None
            raise DeployError(f"cannot use S3 bucket {bucket}: {code}: {error_message(e)}; {nothing}\n"
                              "  what to do: give your credentials s3:ListBucket/PutObject on it") from None
        if d.kms_key or d.iam:  # production settings: say when the bucket may be public (checked, never changed)
            try:
                block = self.aws.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
                open_ = [k for k, v in block.items() if not v]
            except ClientError as e:
                open_ = ["no public access block"] if error_code(e) == "NoSuchPublicAccessBlockConfiguration" else []
            if open_:
                warnings.append(f"S3 bucket {bucket} does not block public access ({', '.join(open_)}); deploy "
                                f"does not change it: aws s3api put-public-access-block --bucket {bucket} "
                                "--public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,"
                                "BlockPublicPolicy=true,RestrictPublicBuckets=true")

    def event_rule_warnings(self) -> list[str]:
        from botocore.exceptions import ClientError

        warnings: list[str] = []
        for rule in self.desired.of("event_rule"):
            if "detail" not in json.loads(rule.spec["EventPattern"]) or \
                    "bucket" not in json.loads(rule.spec["EventPattern"])["detail"]:
                continue  # alerting rules: no S3 bucket to check
            data_bucket = json.loads(rule.spec["EventPattern"])["detail"]["bucket"]["name"][0]
            try:
                conf = self.aws.s3.get_bucket_notification_configuration(Bucket=data_bucket)
            except ClientError as e:
                warnings.append(f"could not check EventBridge notifications of bucket {data_bucket} "
                                f"({error_code(e)}); event trigger {rule.name} needs them")
                continue
            if "EventBridgeConfiguration" not in conf:
                warnings.append(
                    f"bucket {data_bucket} does not send events to EventBridge, so event trigger {rule.name} will "
                    f"never fire; enable it: aws s3api put-bucket-notification-configuration --bucket {data_bucket} "
                    "--notification-configuration '{\"EventBridgeConfiguration\": {}}'")
        return warnings

    # -- reading -----------------------------------------------------------------------------------------------

    def read(self, kind: str, name: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        g = self.aws.glue
        if kind == "event_rule":
            ev = self.aws.events
            try:
                rule = ev.describe_rule(Name=name)
            except ClientError as e:
                if error_code(e) == "ResourceNotFoundException":
                    return None
                raise DeployError(f"EventBridge DescribeRule for {name} failed: {error_code(e)}: "
                                  f"{error_message(e)}") from e
            rule["Targets"] = ev.list_targets_by_rule(Rule=name).get("Targets", [])
            return rule
        if kind == "state_machine":
            arn = self.sfn_arn(name)
            try:
                got = self.aws.sfn.describe_state_machine(stateMachineArn=arn)
            except ClientError as e:
                if error_code(e) in ("StateMachineDoesNotExist", "ResourceNotFound"):
                    return None
                raise DeployError(f"Step Functions DescribeStateMachine for {name} failed: {error_code(e)}: "
                                  f"{error_message(e)}") from e
            return {**got, "Arn": arn}
        if kind in ("schedule", "schedule_group"):
            sch = self.aws.scheduler
            try:
                if kind == "schedule_group":
                    return sch.get_schedule_group(Name=name)
                group = next(r.spec["GroupName"] for r in self.desired.of("schedule") if r.name == name)
                return sch.get_schedule(Name=name, GroupName=group)
            except ClientError as e:
                if error_code(e) == "ResourceNotFoundException":
                    return None
                raise DeployError(f"EventBridge Scheduler Get for {kind} {name} failed: {error_code(e)}: "
                                  f"{error_message(e)}") from e
        if kind == "role":
            return self.read_role(name)
        if kind == "alarm":
            got = self.call("CloudWatch DescribeAlarms", f"alarm {name}", self.aws.cloudwatch.describe_alarms,
                            AlarmNames=[name]).get("MetricAlarms", [])
            return {**got[0], "Arn": got[0].get("AlarmArn")} if got else None
        if kind == "security_configuration":
            try:
                return g.get_security_configuration(Name=name)["SecurityConfiguration"]
            except ClientError as e:
                if is_not_found(e):
                    return None
                raise DeployError(f"Glue GetSecurityConfiguration for {name} failed: {error_code(e)}: "
                                  f"{error_message(e)}") from e
        if kind == "state_table":
            try:
                return self.aws.dynamodb.describe_table(TableName=name)["Table"]
            except ClientError as e:
                if error_code(e) == "ResourceNotFoundException":
                    return None
                raise DeployError(f"DynamoDB DescribeTable for {name} failed: {error_code(e)}: "
                                  f"{error_message(e)}") from e
        getters = {
            "job": (g.get_job, {"JobName": name}, "Job"),
            "crawler": (g.get_crawler, {"Name": name}, "Crawler"),
            "workflow": (g.get_workflow, {"Name": name}, "Workflow"),
            "trigger": (g.get_trigger, {"Name": name}, "Trigger"),
            "database": (g.get_database, {"Name": name}, "Database"),
        }
        fn, kwargs, key = getters[kind]
        try:
            return fn(**kwargs)[key]
        except ClientError as e:
            if is_not_found(e):
                return None
            api = "Get" + kind.capitalize()
            raise DeployError(f"Glue {api} for {kind} {name} failed: {error_code(e)}: {error_message(e)}") from e

    def read_role(self, name: str) -> dict[str, Any] | None:
        """A generated role as its spec's fields: trust policy, description and the one inline policy."""
        from urllib.parse import unquote

        from botocore.exceptions import ClientError

        try:
            role = self.aws.iam.get_role(RoleName=name)["Role"]
        except ClientError as e:
            if is_not_found(e):
                return None
            raise DeployError(f"IAM GetRole for {name} failed: {error_code(e)}: {error_message(e)}") from e

        def doc(value: Any) -> Any:
            return json.loads(unquote(value)) if isinstance(value, str) else value

        out = {"RoleName": name, "Arn": role.get("Arn"), "Description": role.get("Description"),
               "AssumeRolePolicyDocument": doc(role.get("AssumeRolePolicyDocument")), "Path": role.get("Path")}
        spec = next((r.spec for r in self.desired.of("role") if r.name == name), {})
        policy_name = spec.get("PolicyName")
        if policy_name:
            try:
                got = self.aws.iam.get_role_policy(RoleName=name, PolicyName=policy_name)
                out.update(PolicyName=policy_name, PolicyDocument=doc(got.get("PolicyDocument")))
            except ClientError as e:
                if not is_not_found(e):
                    raise DeployError(f"IAM GetRolePolicy for {name} failed: {error_code(e)}: "
                                      f"{error_message(e)}") from e
        return out

    def sfn_arn(self, name: str) -> str:
        return f"arn:{self.aws.partition}:states:{self.aws.region}:{self.aws.account}:stateMachine:{name}"

    def arn(self, kind: str, name: str) -> str:
        """A Glue resource's ARN (`arn:aws:glue:REGION:ACCOUNT:job/NAME`), for GetTags and TagResource."""
        return f"arn:{self.aws.partition}:glue:{self.aws.region}:{self.aws.account}:{kind}/{name}"

    def tags_of(self, kind: str, name: str, rule_arn: str | None = None) -> dict[str, str]:
        """The tags a resource carries now (Glue GetTags, EventBridge / Step Functions / Scheduler
        ListTagsForResource)."""
        if kind == "state_machine":
            got = self.call("Step Functions ListTagsForResource", f"state machine {name}",
                            self.aws.sfn.list_tags_for_resource, resourceArn=rule_arn or self.sfn_arn(name))
            return {t["key"]: t["value"] for t in got.get("tags", [])}
        if kind == "schedule_group":
            arn = rule_arn or f"arn:{self.aws.partition}:scheduler:{self.aws.region}:{self.aws.account}:schedule-group/{name}"
            got = self.call("Scheduler ListTagsForResource", f"schedule group {name}",
                            self.aws.scheduler.list_tags_for_resource, ResourceArn=arn)
            return {t["Key"]: t["Value"] for t in got.get("Tags", [])}
        if kind == "event_rule":
            arn = rule_arn or f"arn:{self.aws.partition}:events:{self.aws.region}:{self.aws.account}:rule/{name}"
            got = self.call("EventBridge ListTagsForResource", f"rule {name}", self.aws.events.list_tags_for_resource,
                            ResourceARN=arn).get("Tags", [])
            return {t["Key"]: t["Value"] for t in got}
        if kind == "alarm":
            arn = rule_arn or f"arn:{self.aws.partition}:cloudwatch:{self.aws.region}:{self.aws.account}:alarm:{name}"
            got = self.call("CloudWatch ListTagsForResource", f"alarm {name}",
                            self.aws.cloudwatch.list_tags_for_resource, ResourceARN=arn)
            return {t["Key"]: t["Value"] for t in got.get("Tags", [])}
        if kind == "role":
            got = self.call("IAM ListRoleTags", f"role {name}", self.aws.iam.list_role_tags, RoleName=name)
            return {t["Key"]: t["Value"] for t in got.get("Tags", [])}
        return dict(self.call("Glue GetTags", f"{kind} {name}", self.aws.glue.get_tags,
                              ResourceArn=self.arn(kind, name)).get("Tags") or {})

    def ours(self, tags: dict[str, str]) -> bool:
        return all(tags.get(k) == v for k, v in self.desired.tags.items())

    def foreign_owner(self, tags: dict[str, str]) -> str | None:
        """Whose a resource is, when its tags say another project or env made it (untagged ones are adopted)."""
        mine = self.desired.tags
        other = {k: tags[k] for k in (PROJECT_TAG, ENV_TAG) if k in tags and tags[k] != mine[k]}
        if not other:
            return None
        return (f"project '{tags.get(PROJECT_TAG, '?')}', env '{tags.get(ENV_TAG, '?')}' "
                f"({', '.join(f'{k}={v}' for k, v in sorted(other.items()))})")

    def read_artifact(self, art: Artifact) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        bucket, key = split_s3(art.uri)
        try:
            head = self.aws.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if is_not_found(e):
                return None
            raise DeployError(f"S3 HeadObject for {art.uri} failed: {error_code(e)}: {error_message(e)}") from e
        return {"sha256": (head.get("Metadata") or {}).get(SHA_KEY), "size": head.get("ContentLength")}

    def orphans(self) -> list[Change]:
        """This project's and env's resources (all three tags + name prefix) and S3 files (its own prefix) that the
        project no longer defines. List filters only narrow the search: each candidate's tags are read back, since
        a List* tag filter may match on any one tag (moto's does) and `etl:managed-by` alone is every project's."""
        g, d = self.aws.glue, self.desired.deploy
        tags = self.desired.tags
        wanted = {(r.kind, r.name) for r in self.desired.resources}
        out: list[Change] = []

        def names(api: str, fn: Any, key: str, **kw: Any) -> list[str]:
            found: list[str] = []
            token = None
            while True:
                args = dict(kw, **({"NextToken": token} if token else {}))
                resp = self.call(api, "the account", fn, **args)
                found += resp.get(key, [])
                token = resp.get("NextToken")
                if not token:
                    return found

        listed = {
            "trigger": names("Glue ListTriggers", g.list_triggers, "TriggerNames", Tags=tags),
            "job": names("Glue ListJobs", g.list_jobs, "JobNames", Tags=tags),
            "crawler": names("Glue ListCrawlers", g.list_crawlers, "CrawlerNames", Tags=tags),
            "workflow": names("Glue ListWorkflows", g.list_workflows, "Workflows"),  # no tag filter in the API
        }
        for kind, found in listed.items():
            listed[kind] = [n for n in found if n.startswith(d.name_prefix) and (kind, n) not in wanted
                            and self.ours(self.tags_of(kind, n))]
        rules = []
        ev = self.aws.events
        token = None
        while True:
            kw: dict[str, Any] = {"NamePrefix": d.name_prefix} if d.name_prefix else {}
            if token:
                kw["NextToken"] = token
            resp = self.call("EventBridge ListRules", "the account", ev.list_rules, **kw)
            for rule in resp.get("Rules", []):
                if ("event_rule", rule["Name"]) in wanted:
                    continue
                if self.ours(self.tags_of("event_rule", rule["Name"], rule["Arn"])):
                    rules.append(rule["Name"])
            token = resp.get("NextToken")
            if not token:
                break
        listed["event_rule"] = rules
        machines = []
        from botocore.exceptions import ClientError

        try:  # a Glue-only deployer may lack states:ListStateMachines: then there is nothing of ours to find
            pages = list(self.aws.sfn.get_paginator("list_state_machines").paginate())
        except ClientError as e:
            if d.orchestrator == "step_functions":
                raise DeployError(f"Step Functions ListStateMachines failed: {error_code(e)}: {error_message(e)}") \
                    from e
            pages = []
        for page in pages:
            for m in page.get("stateMachines", []):
                n = m["name"]
                if n.startswith(d.name_prefix) and ("state_machine", n) not in wanted \
                        and self.ours(self.tags_of("state_machine", n, m["stateMachineArn"])):
                    machines.append(n)
        listed["state_machine"] = machines
        schedules = []
        groups = {r.spec["GroupName"] for r in self.desired.of("schedule")} | {
            r.name for r in self.desired.of("schedule_group")}
        from etl_framework.deploy.spec import schedule_group_name

        own = schedule_group_name(d, self.desired.project, self.desired.env)
        if own not in groups:  # no schedule wanted any more: the ones left in our (tagged) group are orphans
            with contextlib.suppress(Exception):  # no such group: nothing of ours in it
                if self.ours(self.tags_of("schedule_group", own)):
                    groups.add(own)
        for g in sorted(groups):
            try:
                found = self.aws.scheduler.list_schedules(GroupName=g).get("Schedules", [])
            except Exception:  # noqa: BLE001 - a group not made yet holds nothing
                found = []
            schedules += [f"{g}/{x['Name']}" for x in found if ("schedule", x["Name"]) not in wanted]
        listed["schedule"] = schedules
        from etl_framework.deploy.iam import ROLE_PATH

        roles = []
        try:  # generated roles live under their own path; one without our three tags is never ours
            for page in self.aws.iam.get_paginator("list_roles").paginate(PathPrefix=ROLE_PATH):
                for role in page.get("Roles", []):
                    n = role["RoleName"]
                    if n.startswith(d.name_prefix) and ("role", n) not in wanted and self.ours(self.tags_of("role", n)):
                        roles.append(n)
        except ClientError as e:
            if d.iam == "generate":
                raise DeployError(f"IAM ListRoles failed: {error_code(e)}: {error_message(e)}") from e
        listed["role"] = roles
        for kind in ("event_rule", "schedule", "trigger", "workflow", "state_machine", "job", "crawler", "role"):
            for n in sorted(listed[kind]):
                if (kind == "schedule" or n.startswith(d.name_prefix)) and (kind, n) not in wanted:
                    out.append(Change(kind, n, "orphan", note="not defined by the project any more"))
        bucket, root = split_s3(self.desired.s3_root)  # <s3_prefix>/<project>/<env>: never another's files
        wanted_keys = {split_s3(a.uri)[1] for a in self.desired.artifacts}
        for sub in MANAGED_S3:
            base = f"{root.rstrip('/')}/{sub}" if root else sub
            for page in self.aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
                for obj in page.get("Contents", []):
                    if obj["Key"] not in wanted_keys:
                        out.append(Change("artifact", f"s3://{bucket}/{obj['Key']}", "orphan",
                                          note="not part of this deploy any more"))
        return out

    # -- planning ----------------------------------------------------------------------------------------------

    def fill_arns(self) -> None:
        """Event rule and schedule targets name the workflow or state machine by ARN, known once the account is."""
        from etl_framework.deploy.iam import fill

        fmt = {"partition": self.aws.partition, "region": self.aws.region, "account": str(self.aws.account)}
        if self.kms_key_arn:
            fmt["kms_key_arn"] = self.kms_key_arn
        for r in self.desired.resources:  # placeholders only: never str.format over JSON text
            r.spec = fill(r.spec, **fmt)

    def offline_plan(self) -> Plan:
        """Every resource as it would be created, without one call to AWS (`etl deploy --dry-run --offline`, or a
        dry run with no credentials): the full specs for review. The account is unknown: ARNs keep `{account}`."""
        from etl_framework.deploy.iam import fill

        d = self.desired.deploy
        fmt = {"partition": "aws", "region": self.aws.region}
        if d.kms_key:
            fmt["kms_key_arn"] = d.kms_key
        for r in self.desired.resources:
            r.spec = fill(r.spec, **fmt)
        changes = [Change("artifact", a.uri, "create", note=a.label, resource=a) for a in self.desired.artifacts]
        changes += [Change(r.kind, r.name, "create", resource=r) for r in self.desired.resources]
        return Plan(changes, list(self.desired.warnings))

    def plan(self) -> Plan:
        self.fill_arns()
        changes: list[Change] = []
        taken: list[str] = []
        for art in self.desired.artifacts:
            have = self.read_artifact(art)
            if have is None:
                changes.append(Change("artifact", art.uri, "create", note=art.label, resource=art))
            elif have["sha256"] != art.sha256:
                changes.append(Change("artifact", art.uri, "update", {"sha256": (have["sha256"], art.sha256)},
                                      note=art.label, resource=art))
            else:
                changes.append(Change("artifact", art.uri, "unchanged", note=art.label, resource=art))
        for res in self.desired.resources:
            actual = self.read(res.kind, res.name)
            if actual is None:
                changes.append(Change(res.kind, res.name, "create", resource=res))
                continue
            if res.kind in ("database", "state_table", "schedule_group"):  # never changed (data, or a container)
                changes.append(Change(res.kind, res.name, "unchanged", resource=res, actual=actual))
                continue
            want, have = compared(res.kind, res.spec, actual)
            diff = field_diff(want, have)
            if res.kind in TAGGED:
                tags = self.tags_of(res.kind, res.name, actual.get("Arn"))
                owner = self.foreign_owner(tags)
                if owner:
                    taken.append(f"{res.kind} {res.name} belongs to {owner}")
                    continue
                diff.update({TAGS + k: (tags.get(k), v) for k, v in self.desired.tags_for(res).items()
                             if tags.get(k) != v})
            if res.kind == "trigger" and trigger_active(actual) != res.enabled:
                diff["State"] = (actual.get("State"), "ACTIVATED" if res.enabled else "DEACTIVATED")
            if not diff:
                changes.append(Change(res.kind, res.name, "unchanged", resource=res, actual=actual))
                continue
            fixed = UNCHANGEABLE.get(res.kind, ())
            action = "replace" if any(f.split(".")[0] in fixed for f in diff) else "update"
            change = Change(res.kind, res.name, action, diff, resource=res, actual=actual)
            if res.kind == "state_machine" and "definition" in diff:
                change.diff = definition_diff(*diff["definition"])
            changes.append(change)
        if taken:
            raise DeployError(
                f"this deploy (project '{self.desired.project}', env '{self.desired.env}') would take over resources "
                "that another project or env deployed; nothing was deployed:\n"
                + "".join(f"  {t}\n" for t in taken)
                + "  what to do: give this project or env its own deploy.name_prefix (Glue names are account-wide), "
                "or set deploy.project to the name it was deployed under")
        changes += self.orphans()
        return Plan(changes, list(self.desired.warnings))

    # -- applying ----------------------------------------------------------------------------------------------

    def apply(self, plan: Plan, prune: bool = False) -> list[Change]:
        """Make the plan's changes in dependency order; returns the changes made."""
        done: list[Change] = []
        order = {"role": 0, "security_configuration": 0, "artifact": 0, "state_table": 1, "database": 1, "job": 2, "crawler": 2, "workflow": 3, "trigger": 4,
                 "state_machine": 4, "schedule_group": 4, "schedule": 5, "event_rule": 5, "alarm": 5}
        for c in sorted(plan.pending, key=lambda c: order[c.kind]):
            self.apply_one(c)
            done.append(c)
        if prune:
            rorder = {"event_rule": 0, "schedule": 0, "trigger": 1, "workflow": 2, "state_machine": 2, "job": 3,
                      "crawler": 3, "artifact": 4, "role": 5}
            for c in sorted(plan.by_action("orphan"), key=lambda c: rorder[c.kind]):
                self.delete(c.kind, c.name)
                c.action = "delete"
                done.append(c)
        return done

    def apply_one(self, c: Change) -> None:
        if c.kind == "artifact":
            art = c.resource
            assert isinstance(art, Artifact)
            bucket, key = split_s3(art.uri)
            sse = ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_arn} if self.kms_key_arn else {})
            self.write("S3 PutObject", art.uri, self.aws.s3.put_object, Bucket=bucket, Key=key, Body=art.data,
                       Metadata={SHA_KEY: art.sha256}, **sse)
            return
        res = c.resource
        assert isinstance(res, Resource)
        if c.action == "create":
            self.create(res)
        elif c.action == "replace":
            self.delete(res.kind, res.name)
            self.create(res)
        else:
            self.update(res, c)

    def create(self, res: Resource) -> None:
        g, tags, what = self.aws.glue, self.desired.tags_for(res), f"{res.kind} {res.name}"
        spec = dict(res.spec)
        if res.kind == "event_rule":
            self._put_rule(res, create=True)
        elif res.kind == "state_machine":
            self.write("Step Functions CreateStateMachine", what, self.aws.sfn.create_state_machine, **spec,
                       tags=[{"key": k, "value": v} for k, v in tags.items()])
        elif res.kind == "schedule_group":
            self.write("Scheduler CreateScheduleGroup", what, self.aws.scheduler.create_schedule_group, Name=res.name,
                       Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        elif res.kind == "schedule":
            self.write("Scheduler CreateSchedule", what, self.aws.scheduler.create_schedule, **spec)
        elif res.kind == "state_table":
            from etl_framework.state.dynamodb import DynamoState

            self.calls.append(f"DynamoDB CreateTable {res.name}")
            try:  # with deploy.kms_key, encrypted with the project's key
                DynamoState(res.name[: -len("state")], self.aws.region, client=self.aws.dynamodb,
                            kms_key=self.kms_key_arn)
            except EtlError as e:
                raise DeployError(f"{e}\n  (while creating the state table {res.name})") from e
        elif res.kind == "role":
            self.write("IAM CreateRole", what, self.aws.iam.create_role, RoleName=res.name, Path=spec["Path"],
                       AssumeRolePolicyDocument=json.dumps(spec["AssumeRolePolicyDocument"]),
                       Description=spec["Description"], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
            self.put_role_policy(res)
        elif res.kind == "security_configuration":
            self.write("Glue CreateSecurityConfiguration", what, g.create_security_configuration, **spec)
        elif res.kind == "alarm":
            self.write("CloudWatch PutMetricAlarm", what, self.aws.cloudwatch.put_metric_alarm, **spec,
                       Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        elif res.kind == "database":
            self.write("Glue CreateDatabase", what, g.create_database,
                       DatabaseInput={"Name": res.name, "Description": "created by etl deploy"})
        elif res.kind == "job":
            self.write("Glue CreateJob", what, g.create_job, **spec, Tags=tags)
        elif res.kind == "crawler":
            self.write("Glue CreateCrawler", what, g.create_crawler, **spec, Tags=tags)
        elif res.kind == "workflow":
            self.write("Glue CreateWorkflow", what, g.create_workflow, **spec, Tags=tags)
        elif res.kind == "trigger":
            start = res.enabled  # False for on-demand triggers, which Glue cannot activate
            self.write("Glue CreateTrigger", what, g.create_trigger, **spec, StartOnCreation=start, Tags=tags)

    def put_role_policy(self, res: Resource) -> None:
        self.write("IAM PutRolePolicy", f"role {res.name}", self.aws.iam.put_role_policy, RoleName=res.name,
                   PolicyName=res.spec["PolicyName"], PolicyDocument=json.dumps(res.spec["PolicyDocument"]))

    def update(self, res: Resource, c: Change) -> None:
        """The changed fields through the Update APIs, then the missing tags (unless the resource was replaced:
        a created one has them all)."""
        fields = {f for f in c.fields if not f.startswith(TAGS)}
        replaced = self._update_fields(res, c, fields) if fields else False
        missing = {f[len(TAGS):]: new for f, (_, new) in c.fields.items() if f.startswith(TAGS)}
        if missing and not replaced:
            self.tag(res, missing, (c.actual or {}).get("Arn"))

    def tag(self, res: Resource, tags: dict[str, str], rule_arn: str | None = None) -> None:
        what = f"{res.kind} {res.name}"
        if res.kind == "state_machine":
            self.write("Step Functions TagResource", what, self.aws.sfn.tag_resource, resourceArn=self.sfn_arn(res.name),
                       tags=[{"key": k, "value": v} for k, v in tags.items()])
            return
        if res.kind == "schedule_group":
            arn = f"arn:{self.aws.partition}:scheduler:{self.aws.region}:{self.aws.account}:schedule-group/{res.name}"
            self.write("Scheduler TagResource", what, self.aws.scheduler.tag_resource, ResourceArn=arn,
                       Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
            return
        if res.kind == "alarm":
            arn = rule_arn or f"arn:{self.aws.partition}:cloudwatch:{self.aws.region}:{self.aws.account}:alarm:{res.name}"
            self.write("CloudWatch TagResource", what, self.aws.cloudwatch.tag_resource, ResourceARN=arn,
                       Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
            return
        if res.kind == "role":
            self.write("IAM TagRole", what, self.aws.iam.tag_role, RoleName=res.name,
                       Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
            return
        if res.kind == "event_rule":
            arn = rule_arn or f"arn:{self.aws.partition}:events:{self.aws.region}:{self.aws.account}:rule/{res.name}"
            self.write("EventBridge TagResource", what, self.aws.events.tag_resource, ResourceARN=arn,
                       Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
            return
        self.write("Glue TagResource", what, self.aws.glue.tag_resource, ResourceArn=self.arn(res.kind, res.name),
                   TagsToAdd=tags)

    def _update_fields(self, res: Resource, c: Change, fields: set[str]) -> bool:
        """Returns True when the endpoint lacked the Update API and the resource was replaced."""
        g, what = self.aws.glue, f"{res.kind} {res.name}"
        spec = {k: v for k, v in res.spec.items() if k != "Name"}
        only_state = fields == {"State"}
        if res.kind == "workflow":
            self.write("Glue UpdateWorkflow", what, g.update_workflow, Name=res.name, **spec)
            return False
        if res.kind == "alarm":  # PutMetricAlarm is an upsert
            self.write("CloudWatch PutMetricAlarm", what, self.aws.cloudwatch.put_metric_alarm, **res.spec)
            return False
        if res.kind == "role":
            if "AssumeRolePolicyDocument" in fields:
                self.write("IAM UpdateAssumeRolePolicy", what, self.aws.iam.update_assume_role_policy,
                           RoleName=res.name, PolicyDocument=json.dumps(res.spec["AssumeRolePolicyDocument"]))
            if "Description" in fields:
                self.write("IAM UpdateRole", what, self.aws.iam.update_role, RoleName=res.name,
                           Description=res.spec["Description"])
            if any(f.startswith(("PolicyDocument", "PolicyName")) for f in fields):
                self.put_role_policy(res)
            return False
        if res.kind == "event_rule":
            self._put_rule(res, create=False)
            return False
        if res.kind == "state_machine":
            self.write("Step Functions UpdateStateMachine", what, self.aws.sfn.update_state_machine,
                       stateMachineArn=self.sfn_arn(res.name), definition=res.spec["definition"],
                       roleArn=res.spec["roleArn"])
            return False
        if res.kind == "schedule":
            self.write("Scheduler UpdateSchedule", what, self.aws.scheduler.update_schedule, **res.spec)
            return False
        if res.kind == "trigger" and only_state:
            self._set_trigger_state(res)
            return False
        apis = {
            "job": ("Glue UpdateJob", g.update_job, {"JobName": res.name, "JobUpdate": spec}),
            "crawler": ("Glue UpdateCrawler", g.update_crawler, dict(res.spec)),
            "trigger": ("Glue UpdateTrigger", g.update_trigger,
                        {"Name": res.name, "TriggerUpdate": {k: v for k, v in res.spec.items()
                                                             if k not in ("Type", "WorkflowName")}}),
        }
        api, fn, kwargs = apis[res.kind]
        if res.kind in self.unimplemented:
            self._replace_on_emulator(res, c)
            return True
        from botocore.exceptions import ClientError

        try:
            self.calls.append(f"{api} {what}")
            fn(**kwargs)
        except ClientError as e:
            if self.aws.endpoint_url and is_unimplemented(e):
                self.unimplemented.add(res.kind)
                self._replace_on_emulator(res, c)
                return True
            raise DeployError(
                f"{api} for {what} failed: {error_code(e)}: {error_message(e)}\n  what to do: fix the cause and "
                "run `etl deploy` again; what was already deployed stays and the next deploy continues from here"
            ) from e
        if res.kind == "trigger" and "State" in fields:
            self._set_trigger_state(res)
        return False

    def _replace_on_emulator(self, res: Resource, c: Change) -> None:
        c.note = (c.note + "; " if c.note else "") + "the endpoint lacks the Update API: replaced (delete + create)"
        self.delete(res.kind, res.name)
        self.create(res)

    def _set_trigger_state(self, res: Resource) -> None:
        g, what = self.aws.glue, f"trigger {res.name}"
        if res.enabled:
            self.write("Glue StartTrigger", what, g.start_trigger, Name=res.name)
        else:
            self.write("Glue StopTrigger", what, g.stop_trigger, Name=res.name)

    def _put_rule(self, res: Resource, create: bool) -> None:
        """PutRule and PutTargets are upserts, on AWS and on moto alike."""
        ev, what = self.aws.events, f"event rule {res.name}"
        kw = {k: res.spec[k] for k in ("Name", "EventPattern", "State", "Description")}
        if create:
            kw["Tags"] = [{"Key": k, "Value": v} for k, v in self.desired.tags_for(res).items()]
        self.write("EventBridge PutRule", what, ev.put_rule, **kw)
        self.write("EventBridge PutTargets", what, ev.put_targets, Rule=res.name, Targets=res.spec["Targets"])

    def delete(self, kind: str, name: str) -> None:
        g, what = self.aws.glue, f"{kind} {name}"
        if kind == "event_rule":
            ev = self.aws.events
            ids = [t["Id"] for t in ev.list_targets_by_rule(Rule=name).get("Targets", [])]
            if ids:
                self.write("EventBridge RemoveTargets", what, ev.remove_targets, Rule=name, Ids=ids)
            self.write("EventBridge DeleteRule", what, ev.delete_rule, Name=name)
        elif kind == "artifact":
            bucket, key = split_s3(name)
            self.write("S3 DeleteObject", name, self.aws.s3.delete_object, Bucket=bucket, Key=key)
        elif kind == "job":
            self.write("Glue DeleteJob", what, g.delete_job, JobName=name)
        elif kind == "crawler":
            self.write("Glue DeleteCrawler", what, g.delete_crawler, Name=name)
        elif kind == "workflow":
            self.write("Glue DeleteWorkflow", what, g.delete_workflow, Name=name)
        elif kind == "trigger":
            self.write("Glue DeleteTrigger", what, g.delete_trigger, Name=name)
        elif kind == "role":
            for pname in self.aws.iam.list_role_policies(RoleName=name).get("PolicyNames", []):
                self.write("IAM DeleteRolePolicy", what, self.aws.iam.delete_role_policy, RoleName=name,
                           PolicyName=pname)
            self.write("IAM DeleteRole", what, self.aws.iam.delete_role, RoleName=name)
        elif kind == "alarm":
            self.write("CloudWatch DeleteAlarms", what, self.aws.cloudwatch.delete_alarms, AlarmNames=[name])
        elif kind == "security_configuration":
            self.write("Glue DeleteSecurityConfiguration", what, g.delete_security_configuration, Name=name)
        elif kind == "state_machine":
            self.write("Step Functions DeleteStateMachine", what, self.aws.sfn.delete_state_machine,
                       stateMachineArn=self.sfn_arn(name))
        elif kind == "schedule":
            group, _, sname = name.partition("/")
            self.write("Scheduler DeleteSchedule", what, self.aws.scheduler.delete_schedule, Name=sname,
                       GroupName=group)


__all__ = ["MANAGED_TAG", "Aws", "Change", "DeployError", "Deployer", "Plan"]
