"""A moto server with IAM enforcement, in its own process, for the least-privilege tests.

How moto enforces (moto 5.2, core/authorization.py and iam/access_control.py): once more requests than
`INITIAL_NO_AUTH_ACTION_COUNT` were served (or after POST /moto-api/reset-auth with 0), every request's SigV4
signature is checked against an IAM user's access key or an STS assumed role's temporary key, and the action is
evaluated against that identity's policies (inline and attached; an assumed role's are the role's). S3 evaluates
the real bucket / object ARN; SQS, STS and IAM name their resource; every other service is evaluated against
Resource "*", so an ARN-scoped statement (Glue, DynamoDB, Secrets Manager) never matches and is denied. Moto's
wildcard matching also knows `*` only (not `?`, nor escaping of `.`), and it evaluates DynamoDB's
TransactWriteItems as one action instead of its items' Put/Update/Delete/ConditionCheck.

This server closes those three gaps the way AWS behaves, so that the generated policies are really checked:
Glue, DynamoDB and Secrets Manager requests are evaluated against the ARN of what they touch, `*` and `?` match as
IAM wildcards, a transaction is authorized item by item, and CloudWatch's actions are named `cloudwatch:` (moto takes
the prefix from the signing name, `monitoring`). Moto recomputes a signature the way botocore signs;
the AWS Java SDK's canonical request (S3A) differs in details, so S3A requests are identified by their access key id
(and then authorized like every other) without their signature being recomputed. Conditions other than StringEquals are not evaluated
by moto (an `s3:prefix` StringLike on ListBucket is accepted as written, not checked).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

SERVER = r'''
import json, re, sys
from moto.core.responses import BaseResponse
from moto.iam.access_control import IAMPolicyStatement

def _match(pattern, string):
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.match("^" + rx + "$", string, re.DOTALL)

IAMPolicyStatement._match = staticmethod(_match)

from moto.iam.access_control import IAMRequest, S3IAMRequest
_iam_init = IAMRequest.__init__

def iam_init(self, *args, **kwargs):
    _iam_init(self, *args, **kwargs)
    if self._action.startswith("monitoring:"):  # CloudWatch signs as "monitoring"; its IAM prefix is "cloudwatch"
        self._action = "cloudwatch:" + self._action.split(":", 1)[1]

IAMRequest.__init__ = iam_init
_check_signature = S3IAMRequest.check_signature

def check_signature(self):
    if "aws-sdk-java" in (self._headers.get("User-Agent") or ""):
        return  # S3A: identity from its key id, authorized below; moto cannot recompute the Java SDK's signature
    _check_signature(self)

S3IAMRequest.check_signature = check_signature

def _arn(self, service, rest):
    return f"arn:aws:{service}:{self.region}:{self.current_account}:{rest}"

def glue_resource(self):
    p = lambda k: self._get_param(k)
    db = p("DatabaseName") or (p("DatabaseInput") or {}).get("Name")
    if self._get_action() in ("GetDatabase", "DeleteDatabase", "UpdateDatabase"):
        db = p("Name")
    table = p("TableName") or (p("TableInput") or {}).get("Name")
    if not table and self._get_action().endswith(("Table", "Partition", "Partitions")) and db:
        table = p("Name")
    if db and table:
        return _arn(self, "glue", f"table/{db}/{table}")
    if db:
        return _arn(self, "glue", f"database/{db}")
    return "*"

def dynamo_resource(self):
    t = self._get_param("TableName")
    if not t:
        return "*"
    idx = self._get_param("IndexName")
    return _arn(self, "dynamodb", f"table/{t}" + (f"/index/{idx}" if idx else ""))

def secret_resource(self):
    from moto.secretsmanager.models import secretsmanager_backends
    sid = self._get_param("SecretId")
    if not sid:
        return "*"
    try:
        return secretsmanager_backends[self.current_account][self.region].describe_secret(sid).arn
    except Exception:
        return _arn(self, "secretsmanager", f"secret:{sid}")

from moto.glue.responses import GlueResponse
from moto.dynamodb.responses import DynamoHandler
from moto.secretsmanager.responses import SecretsManagerResponse
GlueResponse._determine_resource = glue_resource
DynamoHandler._determine_resource = dynamo_resource
SecretsManagerResponse._determine_resource = secret_resource

ITEM = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem",
        "Get": "GetItem"}
_orig = BaseResponse._authenticate_and_authorize_normal_action

def _authorize(self, resource="*"):
    if isinstance(self, DynamoHandler) and self._get_action() in ("TransactWriteItems", "TransactGetItems"):
        for item in self._get_param("TransactItems") or []:
            (op, body), = item.items()
            self._get_action = (lambda a=ITEM[op]: a)
            try:
                _orig(self, _arn(self, "dynamodb", "table/" + body["TableName"]))
            finally:
                del self._get_action
        return
    _orig(self, resource)

BaseResponse._authenticate_and_authorize_normal_action = _authorize

from moto.server import ThreadedMotoServer
s = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
s.start()
print("http://%s:%d" % s.get_host_and_port(), flush=True)
sys.stdin.read()
s.stop()
'''


@contextmanager
def enforcing_moto() -> Iterator[str]:
    """The server's URL. Requests are free until `enforce(url)`: the set-up (an admin user, buckets, keys) is
    made first, as one would with an account's root."""
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="1000000000")
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None and proc.stdin is not None
    url = proc.stdout.readline().strip()
    try:
        yield url
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def enforce(url: str) -> None:
    """From now on every request is authenticated and authorized (moto's INITIAL_NO_AUTH_ACTION_COUNT = 0)."""
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                                 headers={"Content-Type": "text/plain"})).read()
