"""The DynamoDB state backend (`state: {backend: dynamodb, table_prefix: ...}`): job runs and stage checkpoints,
target write locks, bookmarks, workflow runs and the cross-process `max_concurrent_runs` limit, with the same
interface and guarantees as the SQLite stores, for Glue jobs and many machines.

One table, `<table_prefix>state` (on-demand capacity; created on first use), holds everything under a
partition key `pk` and sort key `sk`; a global secondary index `by_time` (`gpk`, `gsk`) lists runs newest first.

    run            pk=run#<run_id>        sk=run                gpk=runs     gsk=<started_at>#<run_id>
    stage          pk=run#<run_id>        sk=stage#<attempt>#<stage>
    target lock    pk=lock#<target>       sk=lock
    bookmark       pk=bookmark#<job>      sk=current  (+ sk=hist#<time>#<rand> per change)
    workflow run   pk=wfrun#<run_id>      sk=run                gpk=wfruns   gsk=<started_at>#<run_id>
    node/trigger   pk=wfrun#<run_id>      sk=node#<n> / trigger#<t>
    run limit      pk=wflimit#<workflow>  sk=limit    (the live runs of the workflow + a version number)

Guarantees come from DynamoDB conditional writes, not from a lock a crash could leave behind: a workflow run is
inserted in one transaction with a version-checked update of its workflow's limit item (two processes racing for
the last slot: one transaction fails its condition and re-reads); a target lock is taken with
`attribute_not_exists` or, from a dead holder, on the condition that the holder is still the one we saw; a bookmark
and its history entry are written in one transaction. Values are stored as JSON text (DynamoDB numbers are
Decimals), maps of JSON text where single keys are updated in place (details, metrics, run properties).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from typing import Any

from etl_framework.errors import EtlError
from etl_framework.state.base import TargetLocked
from etl_framework.state.locks import (
    LEASE_SECONDS,
    as_keys,
    dead_reason,
    overlaps,
    takeover_error,
    unlock_error,
)

RUN_FIELDS = (
    "run_id", "job", "env", "job_path", "params", "status", "attempt", "started_at", "ended_at", "duration_s",
    "error", "error_stage", "exit_code", "workflow_run_id", "host", "pid", "details",
)
MAP_FIELDS = ("details", "metrics", "properties", "running")
KEYS = ("pk", "sk", "gpk", "gsk", "version")


def utcnow() -> str:
    from etl_framework.state.runs import utcnow as now

    return str(now())


def _enc(value: Any) -> str:
    return json.dumps(value, default=str)


def _dec(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def encode_item(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k in KEYS:
            out[k] = v
        elif k in MAP_FIELDS and isinstance(v, dict):
            out[k] = {str(mk): _enc(mv) for mk, mv in v.items()}
        else:
            out[k] = _enc(v)
    return out


def decode_item(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in item.items():
        if k in KEYS:
            continue
        if k in MAP_FIELDS and isinstance(v, dict):
            out[k] = {mk: _dec(mv) for mk, mv in v.items()}
        else:
            out[k] = _dec(v)
    return out


def _names(keys: list[str], prefix: str) -> dict[str, str]:
    return {f"#{prefix}{i}": k for i, k in enumerate(keys)}


class DynamoState:
    """The state table: creation on first use and the few DynamoDB calls every store needs."""

    def __init__(self, table_prefix: str = "etl_", region: str = "us-east-1", endpoint_url: str | None = None,
                 client: Any = None, kms_key: str | None = None) -> None:
        self.kms_key = kms_key  # `etl deploy` with deploy.kms_key: the table is created encrypted with it
        if client is None:
            from etl_framework.aws import client as aws_client

            client = aws_client("dynamodb", region, endpoint_url)
        self.client = client
        self.table = f"{table_prefix}state"
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self._ser, self._de = TypeSerializer(), TypeDeserializer()
        self.ensure_table()

    @classmethod
    def from_env_config(cls, env_config: Any) -> DynamoState:
        return cls(env_config.state.table_prefix, env_config.aws.region, env_config.aws.endpoint_url)

    def ensure_table(self) -> None:
        from botocore.exceptions import ClientError

        c = self.client
        try:
            c.describe_table(TableName=self.table)
            return
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise self.error("DescribeTable", e) from e
        try:
            c.create_table(
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gpk", "gsk")],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                GlobalSecondaryIndexes=[{
                    "IndexName": "by_time",
                    "KeySchema": [{"AttributeName": "gpk", "KeyType": "HASH"},
                                  {"AttributeName": "gsk", "KeyType": "RANGE"}],
                    "Projection": {"ProjectionType": "ALL"},
                }],
                **({"SSESpecification": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": self.kms_key}}
                   if self.kms_key else {}),
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceInUseException":  # another process made it
                raise self.error("CreateTable", e) from e
        c.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    def error(self, api: str, e: Exception) -> EtlError:
        resp = getattr(e, "response", {}) or {}
        err = resp.get("Error", {})
        return EtlError(f"DynamoDB {api} on table {self.table} failed: {err.get('Code')}: {err.get('Message', e)}\n"
                        "  what to do: check the env config's aws: block, your credentials and the table")

    # low-level helpers (plain python values in and out)
    def ser(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: self._ser.serialize(v) for k, v in item.items()}

    def de(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: self._de.deserialize(v) for k, v in item.items()}

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        resp = self.client.get_item(TableName=self.table, Key=self.ser({"pk": pk, "sk": sk}), ConsistentRead=True)
        return self.de(resp["Item"]) if "Item" in resp else None

    def put(self, item: dict[str, Any], condition: str | None = None, names: dict[str, str] | None = None,
            values: dict[str, Any] | None = None) -> None:
        kw: dict[str, Any] = {"TableName": self.table, "Item": self.ser(item)}
        if condition:
            kw["ConditionExpression"] = condition
        if names:
            kw["ExpressionAttributeNames"] = names
        if values:
            kw["ExpressionAttributeValues"] = self.ser(values)
        self.client.put_item(**kw)

    def update(self, pk: str, sk: str, expr: str, names: dict[str, str] | None = None,
               values: dict[str, Any] | None = None, condition: str | None = None) -> None:
        kw: dict[str, Any] = {"TableName": self.table, "Key": self.ser({"pk": pk, "sk": sk}), "UpdateExpression": expr}
        if names:
            kw["ExpressionAttributeNames"] = names
        if values:
            kw["ExpressionAttributeValues"] = self.ser(values)
        if condition:
            kw["ConditionExpression"] = condition
        self.client.update_item(**kw)

    def set_fields(self, pk: str, sk: str, fields: dict[str, Any], must_exist: bool = True) -> None:
        """SET each field (JSON text); `must_exist` refuses to create a half item."""
        if not fields:
            return
        enc = encode_item(fields)
        names = _names(list(enc), "f")
        values = {f":v{i}": v for i, v in enumerate(enc.values())}
        expr = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(enc)))
        self.update(pk, sk, expr, names, values, "attribute_exists(pk)" if must_exist else None)

    def set_map_keys(self, pk: str, sk: str, attr: str, values: dict[str, Any]) -> None:
        """Merge keys into a map attribute in one atomic update (concurrent writers of other keys are kept)."""
        if not values:
            return
        names = {"#m": attr, **{f"#k{i}": str(k) for i, k in enumerate(values)}}
        vals = {f":v{i}": _enc(v) for i, v in enumerate(values.values())}
        expr = "SET " + ", ".join(f"#m.#k{i} = :v{i}" for i in range(len(values)))
        self.update(pk, sk, expr, names, vals, "attribute_exists(pk)")

    def query(self, pk: str, sk_prefix: str | None = None) -> list[dict[str, Any]]:
        kw: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True,
                              "KeyConditionExpression": "pk = :pk",
                              "ExpressionAttributeValues": self.ser({":pk": pk})}
        if sk_prefix:
            kw["KeyConditionExpression"] += " AND begins_with(sk, :sk)"
            kw["ExpressionAttributeValues"] = self.ser({":pk": pk, ":sk": sk_prefix})
        out: list[dict[str, Any]] = []
        while True:
            resp = self.client.query(**kw)
            out += [self.de(i) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return out
            kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def newest(self, gpk: str, keep: Any, limit: int) -> list[dict[str, Any]]:
        """Items of an index partition, newest first, that `keep(item)`, up to `limit`."""
        kw: dict[str, Any] = {"TableName": self.table, "IndexName": "by_time", "ScanIndexForward": False,
                              "KeyConditionExpression": "gpk = :g", "ExpressionAttributeValues": self.ser({":g": gpk})}
        out: list[dict[str, Any]] = []
        while len(out) < limit:
            resp = self.client.query(**kw)
            for raw in resp.get("Items", []):
                item = self.de(raw)
                if keep(item):
                    out.append(item)
                    if len(out) >= limit:
                        break
            if "LastEvaluatedKey" not in resp:
                break
            kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return out

    def delete(self, pk: str, sk: str) -> None:
        self.client.delete_item(TableName=self.table, Key=self.ser({"pk": pk, "sk": sk}))

    def transact(self, items: list[dict[str, Any]]) -> None:
        self.client.transact_write_items(TransactItems=items)


def conditional_failed(e: Exception) -> bool:
    code = (getattr(e, "response", {}) or {}).get("Error", {}).get("Code", "")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


# ----------------------------------------------------------------------------------------------------- runs


class DynamoRunStore:
    """`RunStore` on DynamoDB: job runs, stage checkpoints and target write locks."""

    def __init__(self, env_config: Any = None, *, state: DynamoState | None = None) -> None:
        self.db = state or DynamoState.from_env_config(env_config)

    def close(self) -> None:
        pass

    def create_run(self, run: dict[str, Any]) -> None:
        rec = {"status": "RUNNING", "attempt": 1, "host": socket.gethostname(), "pid": os.getpid(), "details": {},
               **run}
        rec = {k: v for k, v in rec.items() if k in RUN_FIELDS}
        item = encode_item(rec)
        item.update(pk=f"run#{rec['run_id']}", sk="run", gpk="runs", gsk=f"{rec['started_at']}#{rec['run_id']}")
        self.db.put(item)

    def update_run(self, run_id: str, **fields: Any) -> None:
        bad = set(fields) - set(RUN_FIELDS)
        if bad:
            raise ValueError(f"unknown run fields {sorted(bad)}")
        self.db.set_fields(f"run#{run_id}", "run", fields)

    def set_detail(self, run_id: str, key: str, value: Any) -> None:
        self.db.set_map_keys(f"run#{run_id}", "run", "details", {key: value})

    def start_stage(self, run_id: str, stage: str, seq: int, started_at: str, attempt: int = 1) -> None:
        item = encode_item({"stage": stage, "seq": seq, "attempt": attempt, "status": "RUNNING",
                            "started_at": started_at, "ended_at": None, "duration_s": None, "metrics": {},
                            "error": None})
        item.update(pk=f"run#{run_id}", sk=f"stage#{attempt:04d}#{stage}")
        self.db.put(item)

    def finish_stage(self, run_id: str, stage: str, *, status: str, ended_at: str | None = None,
                     duration_s: float | None = None, metrics: dict[str, Any] | None = None,
                     error: str | None = None, attempt: int = 1, seq: int | None = None) -> None:
        pk, sk = f"run#{run_id}", f"stage#{attempt:04d}#{stage}"
        fields: dict[str, Any] = {"status": status, "ended_at": ended_at or utcnow(), "duration_s": duration_s,
                                  "metrics": metrics or {}, "error": error}
        if self.db.get(pk, sk) is None:  # never started (e.g. SKIPPED)
            fields.update(stage=stage, seq=seq or 0, attempt=attempt, started_at=None)
            item = encode_item(fields)
            item.update(pk=pk, sk=sk)
            self.db.put(item)
            return
        self.db.set_fields(pk, sk, fields)

    def update_stage_metrics(self, run_id: str, stage: str, metrics: dict[str, Any], attempt: int = 1) -> None:
        from botocore.exceptions import ClientError

        try:
            self.db.set_map_keys(f"run#{run_id}", f"stage#{attempt:04d}#{stage}", "metrics", metrics)
        except ClientError as e:
            if not conditional_failed(e):  # as SQLite: metrics of a stage never recorded are dropped
                raise

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        items = self.db.query(f"run#{run_id}")
        run = next((i for i in items if i["sk"] == "run"), None)
        if run is None:
            return None
        out = decode_item(run)
        stages = [decode_item(i) for i in items if i["sk"].startswith("stage#")]
        stages.sort(key=lambda s: (s.get("attempt") or 1, s.get("seq") or 0))
        out["stages"] = [{k: s.get(k) for k in ("stage", "seq", "attempt", "status", "started_at", "ended_at",
                                                 "duration_s", "metrics", "error")} for s in stages]
        return out

    def list_runs(self, job: str | None = None, limit: int = 50,
                  workflow_run_id: str | None = None) -> list[dict[str, Any]]:
        def keep(item: dict[str, Any]) -> bool:
            d = decode_item(item)
            return (not job or d.get("job") == job) and (not workflow_run_id or d.get("workflow_run_id") == workflow_run_id)

        return [decode_item(i) for i in self.db.newest("runs", keep, limit)]

    # locks: one item per key (pk=lock#<key>), also indexed (gpk=locks) so nested keys can be found
    def _lock_items(self) -> list[dict[str, Any]]:
        out, kwargs = [], {}
        while True:
            resp = self.db.client.query(TableName=self.db.table, IndexName="by_time",
                                        KeyConditionExpression="gpk = :g",
                                        ExpressionAttributeValues=self.db.ser({":g": "locks"}), **kwargs)
            out += [self.db.de(i) for i in resp.get("Items", [])]
            if "LastEvaluatedKey" not in resp:
                return out
            kwargs = {"ExclusiveStartKey": resp["LastEvaluatedKey"]}

    def _clear_dead(self, holder_item: dict[str, Any], run_id: str, key: str) -> None:
        """Remove a lock whose holder is gone (only if it is still that holder's), marking the holder's run;
        raise TargetLocked when the holder is alive."""
        from botocore.exceptions import ClientError

        holder = decode_item(holder_item)
        run = self.get_run(holder["run_id"])
        reason = dead_reason(holder, run.get("status") if run else None)
        if reason is None:
            raise TargetLocked(holder["target"], holder)
        try:
            self.db.client.delete_item(TableName=self.db.table, Key=self.db.ser({"pk": holder_item["pk"], "sk": "lock"}),
                                       ConditionExpression="run_id = :held",
                                       ExpressionAttributeValues=self.db.ser({":held": holder_item["run_id"]}))
        except ClientError as e:
            if not conditional_failed(e):
                raise self.db.error("DeleteItem", e) from e
            return  # someone else cleared it first
        if run is not None and run.get("status") == "RUNNING":
            self.update_run(holder["run_id"], status="FAILED", ended_at=utcnow(),
                            error=takeover_error(holder, reason, run_id, key))

    def acquire_target_lock(self, targets: str | list[str], run_id: str, job: str) -> None:
        """Each key by a conditional put (absent, or still the dead holder we saw); then no live lock may sit on an
        enclosing or enclosed path — if one does, ours go again (two such racers may both retry later: safe)."""
        from botocore.exceptions import ClientError

        keys = as_keys(targets)
        taken: list[str] = []
        try:
            for key in keys:
                pk = f"lock#{key}"
                for _ in range(20):
                    holder_item = self.db.get(pk, "lock")
                    if holder_item is not None and _dec(holder_item["run_id"]) != run_id:
                        self._clear_dead(holder_item, run_id, key)
                        continue
                    now = time.time()
                    item = {"pk": pk, "sk": "lock", "gpk": "locks", "gsk": key,
                            **encode_item({"target": key, "run_id": run_id, "job": job, "host": socket.gethostname(),
                                           "pid": os.getpid(), "acquired_at": utcnow(),
                                           "lease_until": now + LEASE_SECONDS, "heartbeat_at": now})}
                    try:
                        if holder_item is None:
                            self.db.put(item, "attribute_not_exists(pk)")
                        else:
                            self.db.put(item, "run_id = :me", values={":me": _enc(run_id)})
                        taken.append(key)
                        break
                    except ClientError as e:
                        if not conditional_failed(e):
                            raise self.db.error("PutItem", e) from e
                else:
                    raise EtlError(f"could not take the write lock of {key}: it changed hands 20 times")
            for item in self._lock_items():
                holder_key = _dec(item.get("target"))
                if _dec(item["run_id"]) == run_id or holder_key in keys:
                    continue
                hit = next((k for k in keys if overlaps(holder_key, k)), None)
                if hit is not None:
                    self._clear_dead(item, run_id, hit)
        except BaseException:
            if taken:
                self.release_target_lock(taken, run_id)
            raise

    def renew_target_lock(self, targets: list[str], run_id: str) -> bool:
        from botocore.exceptions import ClientError

        now = time.time()
        for key in targets:
            try:
                self.db.update(f"lock#{key}", "lock", "SET lease_until = :l, heartbeat_at = :h",
                               values={":l": _enc(now + LEASE_SECONDS), ":h": _enc(now), ":me": _enc(run_id)},
                               condition="run_id = :me")
            except ClientError as e:
                if conditional_failed(e):
                    return False
                raise self.db.error("UpdateItem", e) from e
        return True

    def release_target_lock(self, targets: str | list[str], run_id: str) -> None:
        from botocore.exceptions import ClientError

        for key in as_keys(targets):
            try:
                self.db.client.delete_item(TableName=self.db.table, Key=self.db.ser({"pk": f"lock#{key}", "sk": "lock"}),
                                           ConditionExpression="run_id = :me",
                                           ExpressionAttributeValues=self.db.ser({":me": _enc(run_id)}))
            except ClientError as e:
                if not conditional_failed(e):
                    raise

    def target_lock(self, target: str) -> dict[str, Any] | None:
        item = self.db.get(f"lock#{target}", "lock")
        return decode_item(item) if item else None

    def list_locks(self) -> list[dict[str, Any]]:
        return sorted((decode_item(i) for i in self._lock_items()), key=lambda h: str(h.get("target")))

    def force_unlock(self, target: str, by: str) -> list[dict[str, Any]]:
        out = []
        for item in self._lock_items():
            holder = decode_item(item)
            key = str(holder.get("target"))
            if key == target or key.startswith(target.rstrip("/") + "/"):
                self.db.delete(item["pk"], "lock")
                run = self.get_run(holder["run_id"])
                if run is not None and run.get("status") == "RUNNING":
                    self.update_run(holder["run_id"], status="FAILED", ended_at=utcnow(),
                                    error=unlock_error(holder, by))
                out.append(holder)
        return out


# ------------------------------------------------------------------------------------------------ bookmarks


class DynamoBookmarkStore:
    """`BookmarkStore` on DynamoDB; the bookmark and its history entry are one transaction."""

    def __init__(self, env_config: Any = None, *, state: DynamoState | None = None) -> None:
        self.db = state or DynamoState.from_env_config(env_config)

    def get(self, job: str) -> Any:
        from etl_framework.incremental import Bookmark

        item = self.db.get(f"bookmark#{job}", "current")
        return Bookmark.from_json(decode_item(item)["data"]) if item else Bookmark(job=job)

    def put(self, bookmark: Any, action: str = "commit") -> None:
        from datetime import UTC, datetime

        at = datetime.now(UTC).isoformat(timespec="seconds")
        data = bookmark.to_json()
        pk = f"bookmark#{bookmark.job}"
        current = {"pk": pk, "sk": "current", **encode_item({"job": bookmark.job, "bm_version": bookmark.version,
                                                             "run_id": bookmark.run_id, "data": data,
                                                             "updated_at": at})}
        hist = {"pk": pk, "sk": f"hist#{time.time_ns():020d}#{secrets.token_hex(3)}",
                **encode_item({"bm_version": bookmark.version, "run_id": bookmark.run_id, "action": action,
                               "data": data, "at": at})}
        self.db.transact([{"Put": {"TableName": self.db.table, "Item": self.db.ser(current)}},
                          {"Put": {"TableName": self.db.table, "Item": self.db.ser(hist)}}])

    def _history(self, job: str) -> list[dict[str, Any]]:
        out = []
        for item in self.db.query(f"bookmark#{job}", "hist#"):
            d = decode_item(item)
            d["version"] = d.pop("bm_version", None)
            out.append(d)
        return out

    def history(self, job: str) -> list[dict]:
        return [{k: h.get(k) for k in ("version", "run_id", "action", "at")} for h in self._history(job)]

    def entries(self, job: str) -> list[dict[str, Any]]:
        return [{k: h.get(k) for k in ("version", "run_id", "action", "data", "at")} for h in self._history(job)]

    def close(self) -> None:
        pass

    def at_run(self, job: str, run_id: str) -> Any:
        from etl_framework.incremental import Bookmark

        hits = [h for h in self._history(job) if h.get("run_id") == run_id and h.get("action") in ("commit", "reconcile")]
        return Bookmark.from_json(hits[-1]["data"]) if hits else None


# ------------------------------------------------------------------------------------------- workflow runs


class DynamoWorkflowStore:
    """`WorkflowRunStore` on DynamoDB (the same shapes as the SQLite store), with `max_concurrent_runs` enforced by
    a version-checked transaction on the workflow's limit item."""

    def __init__(self, env_config: Any = None, *, state: DynamoState | None = None) -> None:
        self.db = state or DynamoState.from_env_config(env_config)
        self.path = f"dynamodb:{self.db.table}"

    def close(self) -> None:
        pass

    def begin_run(self, workflow: str, *, max_concurrent_runs: int | None, nodes: dict[str, str],
                  properties: dict[str, Any], workflow_path: str | None = None, env: str | None = None,
                  executor: str | None = None, started_by: str | None = None, previous_run_id: str | None = None,
                  run_id: str | None = None) -> str:
        from botocore.exceptions import ClientError

        from etl_framework.state.workflows import (
            RUNNING,
            ConcurrentRunsExceeded,
            new_run_id,
            now_iso,
            owner_alive,
            process_start,
        )

        run_id = run_id or new_run_id()
        started = now_iso()
        owner = {"owner_host": socket.gethostname(), "owner_pid": os.getpid(),
                 "owner_start": process_start(os.getpid()), "heartbeat_at": time.time()}
        run = {"run_id": run_id, "workflow": workflow, "workflow_path": workflow_path, "env": env,
               "executor": executor, "state": RUNNING, "started_at": started, "ended_at": None,
               "started_by": started_by, "previous_run_id": previous_run_id, "properties": dict(properties),
               "statistics": None, "error": None, **owner}
        run_item = {**encode_item(run), "pk": f"wfrun#{run_id}", "sk": "run", "gpk": "wfruns",
                    "gsk": f"{started}#{run_id}"}
        node_items = [{**encode_item({"node": n, "kind": k, "order": i, "state": None, "trigger": None,
                                      "arguments": {}, "started_at": None, "ended_at": None, "duration": None,
                                      "attempts": 0, "error": None, "job_run_id": None, "job_run_ids": [],
                                      "copied_from": None}),
                       "pk": f"wfrun#{run_id}", "sk": f"node#{n}"} for i, (n, k) in enumerate(nodes.items())]
        table = self.db.table
        for _ in range(50):
            limit_item = self.db.get(f"wflimit#{workflow}", "limit")
            version = int(limit_item["version"]) if limit_item else 0
            running = {k: _dec(v) for k, v in (limit_item or {}).get("running", {}).items()}
            live = {}
            for rid, own in running.items():
                rec = self.get_run_record(rid)
                if rec is not None and rec.get("state") == RUNNING and owner_alive(rec):
                    live[rid] = own
            if max_concurrent_runs is not None and len(live) >= max_concurrent_runs:
                raise ConcurrentRunsExceeded(workflow, max_concurrent_runs, sorted(live))
            live[run_id] = {"started_at": started}
            limit_new = {"pk": f"wflimit#{workflow}", "sk": "limit", "version": version + 1,
                         "running": {k: _enc(v) for k, v in live.items()}}
            cond = "attribute_not_exists(pk)" if limit_item is None else "version = :v"
            put_limit: dict[str, Any] = {"TableName": table, "Item": self.db.ser(limit_new), "ConditionExpression": cond}
            if limit_item is not None:
                put_limit["ExpressionAttributeValues"] = self.db.ser({":v": version})
            items = [{"Put": put_limit},
                     {"Put": {"TableName": table, "Item": self.db.ser(run_item),
                              "ConditionExpression": "attribute_not_exists(pk)"}}]
            items += [{"Put": {"TableName": table, "Item": self.db.ser(n)}} for n in node_items]
            try:
                self.db.transact(items)
                return run_id
            except ClientError as e:
                if not conditional_failed(e):
                    raise self.db.error("TransactWriteItems", e) from e
                time.sleep(0.05 + secrets.randbelow(100) / 1000)  # another process took a slot: re-read
        raise EtlError(f"workflow {workflow}: could not register the run (too much contention on its limit item)")

    def _release(self, workflow: str, run_id: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.db.update(f"wflimit#{workflow}", "limit", "REMOVE running.#r SET version = version + :one",
                           {"#r": run_id}, {":one": 1}, "attribute_exists(pk)")
        except ClientError as e:
            if not conditional_failed(e):
                raise

    def heartbeat(self, run_id: str) -> None:
        self.db.set_fields(f"wfrun#{run_id}", "run", {"heartbeat_at": time.time()})

    def finish_run(self, run_id: str, state: str, statistics: dict[str, int], error: str | None = None) -> None:
        from etl_framework.state.workflows import now_iso

        self.db.set_fields(f"wfrun#{run_id}", "run", {"state": state, "ended_at": now_iso(),
                                                      "statistics": statistics, "error": error})
        rec = self.get_run_record(run_id)
        if rec:
            self._release(rec["workflow"], run_id)

    def update_node(self, run_id: str, node: str, **fields: Any) -> None:
        for key in ("arguments", "job_run_ids"):
            if key in fields and isinstance(fields[key], str):
                fields[key] = _dec(fields[key])
        self.db.set_fields(f"wfrun#{run_id}", f"node#{node}", fields)

    def set_trigger(self, run_id: str, trigger: str, state: str, reason: str | None = None) -> None:
        from etl_framework.state.workflows import now_iso

        pk, sk = f"wfrun#{run_id}", f"trigger#{trigger}"
        existing = self.db.get(pk, sk)
        order = _dec(existing["order"]) if existing else time.time_ns()
        item = {**encode_item({"run_id": run_id, "trigger": trigger, "state": state, "at": now_iso(),
                               "reason": reason, "order": order}), "pk": pk, "sk": sk}
        self.db.put(item)

    def get_run_record(self, run_id: str) -> dict[str, Any] | None:
        item = self.db.get(f"wfrun#{run_id}", "run")
        return decode_item(item) if item else None

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        from etl_framework.state.workflows import RUNNING, owner_alive

        items = self.db.query(f"wfrun#{run_id}")
        head = next((i for i in items if i["sk"] == "run"), None)
        if head is None:
            return None
        run = decode_item(head)
        run["owner_alive"] = owner_alive(run) if run["state"] == RUNNING else None
        nodes = sorted((decode_item(i) for i in items if i["sk"].startswith("node#")), key=lambda n: n.pop("order", 0))
        run["nodes"] = [{"run_id": run_id, **n} for n in nodes]
        triggers = sorted((decode_item(i) for i in items if i["sk"].startswith("trigger#")),
                          key=lambda t: t.pop("order", 0))
        run["triggers"] = triggers
        return run

    def latest_run_id(self, workflow: str | None = None) -> str | None:
        hits = self.db.newest("wfruns", lambda i: not workflow or _dec(i.get("workflow")) == workflow, 1)
        return str(_dec(hits[0]["run_id"])) if hits else None

    def list_runs(self, workflow: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        hits = self.db.newest("wfruns", lambda i: not workflow or _dec(i.get("workflow")) == workflow, limit)
        keys = ("run_id", "workflow", "state", "started_at", "ended_at", "previous_run_id", "statistics")
        return [{k: decode_item(i).get(k) for k in keys} for i in hits]

    def get_properties(self, run_id: str) -> dict[str, Any]:
        rec = self.get_run_record(run_id)
        if rec is None:
            raise EtlError(f"workflow run {run_id} not found in {self.path}")
        return dict(rec.get("properties") or {})

    def put_properties(self, run_id: str, values: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        try:
            self.db.set_map_keys(f"wfrun#{run_id}", "run", "properties", values)
        except ClientError as e:
            if conditional_failed(e):
                raise EtlError(f"workflow run {run_id} not found in {self.path}") from None
            raise
        return self.get_properties(run_id)

    def mark_orphaned_runs(self, workflow: str | None = None) -> list[str]:
        """As `state.workflows.mark_orphaned_runs`: RUNNING runs whose owner is gone become STOPPED."""
        from etl_framework.state.workflows import RUNNING, STOPPED, now_iso, owner_alive, statistics_of

        marked = []
        for item in self.db.newest("wfruns", lambda i: _dec(i.get("state")) == RUNNING, 10_000):
            run = decode_item(item)
            if (workflow and run["workflow"] != workflow) or owner_alive(run):
                continue
            rid = run["run_id"]
            ts = now_iso()
            full = self.get_run(rid) or {"nodes": []}
            for n in full["nodes"]:
                if n.get("state") in ("WAITING", "STARTING", "RUNNING"):
                    self.update_node(rid, n["node"], state="CANCELLED" if n["kind"] == "crawler" else "STOPPED",
                                     ended_at=ts, error="stopped: the workflow run's process died")
            nodes = (self.get_run(rid) or {"nodes": []})["nodes"]
            reason = (f"the process that ran it (pid {run['owner_pid']} on {run['owner_host']}) ended without "
                      f"finishing the run; resume it with `etl workflow resume {rid}`")
            self.db.set_fields(f"wfrun#{rid}", "run", {"state": STOPPED, "ended_at": ts, "error": reason,
                                                       "statistics": statistics_of(nodes)})
            self._release(run["workflow"], rid)
            marked.append(rid)
        return marked


# ------------------------------------------------------------------------------------------- crawler runs


class DynamoCrawlerStore:
    """`CrawlerStore` on DynamoDB: runs under pk=crawler#<name> (sk=run#<id>, also indexed newest first), the files
    a crawler has read under sk=file#<path>."""

    def __init__(self, env_config: Any = None, *, state: DynamoState | None = None) -> None:
        self.db = state or DynamoState.from_env_config(env_config)

    def close(self) -> None:
        pass

    def start(self, crawler: str, database: str, table: str | None, path: str, policy: str) -> int:
        from etl_framework.state.crawlers import _now

        run_id = time.time_ns() // 1000
        started = _now()
        self.db.put({"pk": f"crawler#{crawler}", "sk": f"run#{run_id:020d}", "gpk": "crawls",
                     "gsk": f"{started}#{run_id:020d}",
                     **encode_item({"id": run_id, "crawler": crawler, "database": database, "table_name": table,
                                    "path": path, "schema_change": policy, "state": "RUNNING", "started": started,
                                    "ended": None, "message": "", "changes": [], "stats": {}})})
        return run_id

    def finish(self, run_id: int, result: Any) -> None:
        self.db.set_fields(f"crawler#{result.crawler}", f"run#{run_id:020d}",
                           {"state": result.state, "ended": result.ended, "message": result.message,
                            "changes": result.changes, "stats": result.stats, "table_name": result.table})

    def seen(self, crawler: str) -> dict[str, tuple[int, float]]:
        out = {}
        for item in self.db.query(f"crawler#{crawler}", "file#"):
            d = decode_item(item)
            out[d["path"]] = (int(d["size"]), float(d["mtime"]))
        return out

    def last_path(self, crawler: str) -> str | None:
        done = [r for r in self.runs(crawler, limit=1000) if r.get("state") == "SUCCEEDED"]
        return done[0]["path"] if done else None

    def forget(self, crawler: str) -> None:
        for item in self.db.query(f"crawler#{crawler}", "file#"):
            self.db.delete(item["pk"], item["sk"])

    def remember(self, crawler: str, files: list[Any]) -> None:
        for f in files:
            self.db.put({"pk": f"crawler#{crawler}", "sk": f"file#{f.rel}",
                         **encode_item({"path": f.rel, "size": f.size, "mtime": f.mtime})})

    def runs(self, crawler: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        if crawler:
            items = self.db.query(f"crawler#{crawler}", "run#")
            items.sort(key=lambda i: i["sk"], reverse=True)
            return [decode_item(i) for i in items[:limit]]
        return [decode_item(i) for i in self.db.newest("crawls", lambda _i: True, limit)]


# The factories live beside the SQLite stores (state/workflows.py, state/bookmarks.py); re-exported here.
from etl_framework.state.bookmarks import open_bookmark_store
from etl_framework.state.workflows import open_workflow_store

__all__ = ["DynamoBookmarkStore", "DynamoCrawlerStore", "DynamoRunStore", "DynamoWorkflowStore", "open_bookmark_store",
           "open_workflow_store"]
