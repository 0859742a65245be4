"""The AWS Glue Data Catalog backend (boto3), with `endpoint_url`/`region` from the env config's `aws:` block so
that tests run it against a moto server."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from etl_framework.catalog.base import CatalogError, Column, Database, Partition, Table

F = TypeVar("F", bound=Callable[..., Any])


def _glue_errors(fn: F) -> F:
    """AWS errors (access denied, no endpoint, throttling) as a CatalogError naming the operation, never a
    traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except ClientError as e:
            err = e.response.get("Error", {})
            raise CatalogError(f"Glue Data Catalog: {fn.__name__} failed: {err.get('Code')}: {err.get('Message')}"
                               ) from e
        except BotoCoreError as e:
            raise CatalogError(f"Glue Data Catalog: {fn.__name__} failed: {e}\n  what to do: check aws.region / "
                               "aws.endpoint_url in the env config and the AWS credentials") from e

    return wrapper  # type: ignore[return-value]


class GlueCatalog:
    backend = "glue"

    def __init__(self, region: str = "us-east-1", endpoint_url: str | None = None, client: Any = None) -> None:
        if client is None:
            from etl_framework.aws import client as aws_client

            client = aws_client("glue", region, endpoint_url)
        self.client = client

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as e:
            raise CatalogError(f"Glue {what} failed: {e.response.get('Error', {}).get('Message', e)}") from e
        except BotoCoreError as e:
            raise CatalogError(
                f"Glue {what} failed: {e}\n  what to do: check aws.region / aws.endpoint_url and credentials"
            ) from e

    # databases
    @_glue_errors
    def list_databases(self) -> list[Database]:
        out: list[Database] = []
        for page in self.client.get_paginator("get_databases").paginate():
            for d in page["DatabaseList"]:
                out.append(Database(d["Name"], d.get("Description", ""), d.get("LocationUri")))
        return out

    @_glue_errors
    def get_database(self, name: str) -> Database | None:
        try:
            d = self.client.get_database(Name=name)["Database"]
        except self.client.exceptions.EntityNotFoundException:
            return None
        return Database(d["Name"], d.get("Description", ""), d.get("LocationUri"))

    @_glue_errors
    def ensure_database(self, name: str, description: str = "") -> bool:
        if self.get_database(name) is not None:
            return False
        try:
            self.client.create_database(DatabaseInput={"Name": name, "Description": description})
        except self.client.exceptions.AlreadyExistsException:
            return False
        return True

    # tables
    @staticmethod
    def table_input(t: Table) -> dict[str, Any]:
        sd: dict[str, Any] = {
            "Columns": [_col_out(c) for c in t.columns],
            "Location": t.location,
            "Compressed": False,
            "StoredAsSubDirectories": False,
            "SerdeInfo": {"SerializationLibrary": t.serde or "", "Parameters": dict(t.serde_parameters)},
        }
        if t.input_format:
            sd["InputFormat"] = t.input_format
        if t.output_format:
            sd["OutputFormat"] = t.output_format
        return {
            "Name": t.name,
            "Description": t.description,
            "TableType": t.table_type,
            "Parameters": dict(t.parameters),
            "PartitionKeys": [_col_out(c) for c in t.partition_keys],
            "StorageDescriptor": sd,
        }

    @staticmethod
    def from_glue(database: str, d: dict[str, Any]) -> Table:
        sd = d.get("StorageDescriptor", {})
        serde = sd.get("SerdeInfo", {})
        params = d.get("Parameters", {})
        return Table(
            database=database,
            name=d["Name"],
            columns=[_col_in(c) for c in sd.get("Columns", [])],
            location=sd.get("Location", ""),
            classification=params.get("classification", "parquet"),
            partition_keys=[_col_in(c) for c in d.get("PartitionKeys", [])],
            input_format=sd.get("InputFormat"),
            output_format=sd.get("OutputFormat"),
            serde=serde.get("SerializationLibrary"),
            serde_parameters=dict(serde.get("Parameters", {})),
            parameters=dict(params),
            table_type=d.get("TableType", "EXTERNAL_TABLE"),
            description=d.get("Description", ""),
            create_time=str(d["CreateTime"]) if d.get("CreateTime") else None,
            update_time=str(d["UpdateTime"]) if d.get("UpdateTime") else None,
        )

    @_glue_errors
    def list_tables(self, database: str | None = None) -> list[Table]:
        dbs = [database] if database else [d.name for d in self.list_databases()]
        out: list[Table] = []
        for db in dbs:
            try:
                for page in self.client.get_paginator("get_tables").paginate(DatabaseName=db):
                    out.extend(self.from_glue(db, t) for t in page["TableList"])
            except self.client.exceptions.EntityNotFoundException:
                continue
        return out

    @_glue_errors
    def get_table(self, database: str, name: str) -> Table | None:
        try:
            d = self.client.get_table(DatabaseName=database, Name=name)["Table"]
        except self.client.exceptions.EntityNotFoundException:
            return None
        return self.from_glue(database, d)

    @_glue_errors
    def create_table(self, table: Table) -> None:
        self._call("CreateTable", self.client.create_table, DatabaseName=table.database,
                   TableInput=self.table_input(table))

    @_glue_errors
    def update_table(self, table: Table) -> None:
        self._call("UpdateTable", self.client.update_table, DatabaseName=table.database,
                   TableInput=self.table_input(table))

    @_glue_errors
    def delete_table(self, database: str, name: str) -> None:
        try:
            self.client.delete_table(DatabaseName=database, Name=name)
        except self.client.exceptions.EntityNotFoundException:
            pass

    # partitions
    @_glue_errors
    def get_partitions(self, database: str, table: str) -> list[Partition]:
        out: list[Partition] = []
        for page in self.client.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table):
            for p in page["Partitions"]:
                out.append(Partition(list(p["Values"]), p.get("StorageDescriptor", {}).get("Location", ""),
                                     dict(p.get("Parameters", {}))))
        out.sort(key=lambda p: p.values)
        return out

    @_glue_errors
    def add_partitions(self, database: str, table: str, partitions: list[Partition]) -> int:
        t = self.get_table(database, table)
        if t is None:
            raise CatalogError(f"cannot add partitions: table {database}.{table} does not exist")
        have = {tuple(p.values) for p in self.get_partitions(database, table)}
        new = [p for p in partitions if tuple(p.values) not in have]
        sd = self.table_input(t)["StorageDescriptor"]
        for i in range(0, len(new), 100):  # BatchCreatePartition takes at most 100
            inputs = [
                {"Values": p.values, "Parameters": dict(p.parameters), "StorageDescriptor": {**sd, "Location": p.location}}
                for p in new[i:i + 100]
            ]
            resp = self._call("BatchCreatePartition", self.client.batch_create_partition, DatabaseName=database,
                              TableName=table, PartitionInputList=inputs)
            errors = [e for e in resp.get("Errors", []) if e.get("ErrorDetail", {}).get("ErrorCode")
                      != "AlreadyExistsException"]
            if errors:
                raise CatalogError(f"Glue BatchCreatePartition failed for {database}.{table}: {errors[0]}")
        return len(new)


def _col_out(c: Column) -> dict[str, Any]:
    d: dict[str, Any] = {"Name": c.name, "Type": c.type}
    if c.comment:
        d["Comment"] = c.comment
    return d


def _col_in(d: dict[str, Any]) -> Column:
    return Column(d["Name"], d.get("Type", "string"), d.get("Comment"))
