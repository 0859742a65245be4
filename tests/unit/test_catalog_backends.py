"""Both catalog backends hold the same Glue-shaped table; Athena DDL; `etl query` over Parquet, JSON and Delta."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl_framework.catalog.base import Column, Partition, new_table
from etl_framework.catalog.crawler import run_crawler
from etl_framework.catalog.ddl import table_ddl
from etl_framework.catalog.local import LocalCatalog
from etl_framework.catalog.query import QueryError, run_query


@pytest.fixture
def moto_url(monkeypatch):
    from moto.server import ThreadedMotoServer

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def sample_table(fmt: str = "parquet"):
    return new_table("sales", "orders", fmt, "s3://lake/sales/orders",
                     [Column("id", "bigint"), Column("items", "array<struct<sku:string,qty:int>>")],
                     [Column("day", "date"), Column("shop", "string")], description="orders")


def exercise(cat) -> None:
    t = sample_table()
    assert cat.ensure_database("sales") is True
    assert cat.ensure_database("sales") is False
    cat.create_table(t)
    got = cat.get_table("sales", "orders")
    for attr in ("columns", "partition_keys", "location", "classification", "input_format", "output_format",
                 "serde", "serde_parameters", "parameters", "table_type", "description"):
        assert getattr(got, attr) == getattr(t, attr), attr
    parts = [Partition(["2024-01-01", "a"], "s3://lake/sales/orders/day=2024-01-01/shop=a/"),
             Partition(["2024-01-02", "b"], "s3://lake/sales/orders/day=2024-01-02/shop=b/")]
    assert cat.add_partitions("sales", "orders", parts) == 2
    assert cat.add_partitions("sales", "orders", parts[:1]) == 0  # idempotent, as Glue's AlreadyExists
    assert [(p.values, p.location) for p in cat.get_partitions("sales", "orders")] == [
        (p.values, p.location) for p in parts]
    got.columns.append(Column("note", "string"))
    cat.update_table(got)
    assert [c.name for c in cat.get_table("sales", "orders").columns] == ["id", "items", "note"]
    assert [x.full_name for x in cat.list_tables("sales")] == ["sales.orders"]  # the moto server is shared
    assert "sales" in [d.name for d in cat.list_databases()]  # the moto server is shared with other tests
    cat.delete_table("sales", "orders")
    assert cat.get_table("sales", "orders") is None


def test_local_backend(tmp_path):
    exercise(LocalCatalog(tmp_path / "c.db"))


def test_glue_backend_on_moto(moto_url):
    import boto3

    from etl_framework.catalog.glue import GlueCatalog

    exercise(GlueCatalog("us-east-1", moto_url))
    # and what boto3 sees of a created table is Glue's own shape
    cat = GlueCatalog("us-east-1", moto_url)
    cat.create_table(sample_table("delta"))
    raw = boto3.client("glue", region_name="us-east-1", endpoint_url=moto_url).get_table(
        DatabaseName="sales", Name="orders")["Table"]
    assert raw["Parameters"]["table_type"] == "DELTA"
    assert raw["StorageDescriptor"]["SerdeInfo"]["Parameters"]["path"] == "s3://lake/sales/orders"
    assert raw["PartitionKeys"] == [{"Name": "day", "Type": "date"}, {"Name": "shop", "Type": "string"}]


def test_athena_ddl():
    ddl = table_ddl(sample_table(), [Partition(["2024-01-01", "a'b"], "s3a://lake/sales/orders/day=2024-01-01/")])
    assert ddl.splitlines()[0] == "CREATE EXTERNAL TABLE `sales`.`orders` ("
    assert "  `items` array<struct<sku:string,qty:int>>" in ddl
    assert "PARTITIONED BY (`day` date, `shop` string)\nSTORED AS PARQUET\nLOCATION 's3://lake/sales/orders'" in ddl
    assert "PARTITION (`day` = '2024-01-01', `shop` = 'a''b') LOCATION 's3://lake/sales/orders/day=2024-01-01/'" in ddl
    delta = table_ddl(sample_table("delta"))
    assert delta == ("CREATE EXTERNAL TABLE `sales`.`orders`\nLOCATION 's3://lake/sales/orders'\n"
                     "TBLPROPERTIES ('table_type'='DELTA');")
    csv = table_ddl(new_table("raw", "t", "csv", "/d", [Column("a", "bigint")], csv_delimiter="|"))
    assert "FIELDS TERMINATED BY '|'" in csv and "'skip.header.line.count'='1'" in csv


def test_query_parquet_json_delta(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import write_deltalake

    cat = LocalCatalog(tmp_path / "c.db")
    state = tmp_path / "s.db"
    for day, ids in (("2024-01-01", [1, 2]), ("2024-01-02", [3])):
        d = tmp_path / "pq" / f"day={day}"
        d.mkdir(parents=True)
        pq.write_table(pa.table({"id": ids, "v": [1.5] * len(ids)}), d / "part-0.parquet")
    (tmp_path / "pq" / "_SUCCESS").write_text("")
    j = tmp_path / "js"
    j.mkdir()
    (j / "a.json").write_text('{"id": 1, "tag": "x"}\n{"id": 2, "tag": null}\n')
    write_deltalake(str(tmp_path / "dl"), pa.table({"id": [1, 2, 3, 4], "k": ["a", "a", "b", "b"]}),
                    partition_by=["k"])
    for name, path in (("pq", "pq"), ("js", "js"), ("dl", "dl")):
        assert run_crawler(cat, state, name, str(tmp_path / path), "db").ok
    res = run_query(cat, "SELECT count(*) AS n, max(day) AS last FROM db.pq")
    assert res.columns == ["n", "last"] and res.rows[0][0] == 3 and str(res.rows[0][1]) == "2024-01-02"
    assert run_query(cat, "SELECT count(tag) FROM db.js").rows == [(1,)]
    assert run_query(cat, "WITH x AS (SELECT * FROM db.dl WHERE k = 'b') SELECT count(*) FROM x").rows == [(2,)]
    joined = run_query(cat, "SELECT count(*) FROM db.pq p JOIN db.dl d ON p.id = d.id")
    assert joined.rows == [(3,)]
    # only partitions the catalog holds are read (as Athena): a folder nobody crawled is not in the table
    d = tmp_path / "pq" / "day=2024-01-03"
    d.mkdir()
    pq.write_table(pa.table({"id": [9], "v": [0.0]}), d / "part-0.parquet")
    assert run_query(cat, "SELECT count(*) FROM db.pq").rows == [(3,)]
    assert run_crawler(cat, state, "pq", str(tmp_path / "pq"), "db").ok
    assert run_query(cat, "SELECT count(*) FROM db.pq").rows == [(4,)]
    for bad in ("SELECT 1; SELECT 2", "DROP TABLE db.pq", "SELECT * FROM (SELECT"):
        with pytest.raises(QueryError):
            run_query(cat, bad)


def test_query_csv_bad_values_are_null_as_in_athena(tmp_path: Path):
    """Rows past the crawler's sample may not parse as the column's type: Athena shows NULL, and so do we."""
    d = tmp_path / "raw" / "dt=2024-01-01"
    d.mkdir(parents=True)
    good = "".join(f"{i},{i}.5,2024-01-01 10:00:00\n" for i in range(1200))
    (d / "a.csv").write_text("id,amount,ts\n" + good + "1200,not-a-number,2024-01-01 10:00:00\n1201,2.5\n")
    cat = LocalCatalog(tmp_path / "c.db")
    assert run_crawler(cat, tmp_path / "s.db", "raw", str(tmp_path / "raw"), "db").ok
    assert {c.name: c.type for c in cat.get_table("db", "raw").columns} == {
        "id": "bigint", "amount": "double", "ts": "timestamp"}
    res = run_query(cat, "SELECT count(*), count(amount), count(ts), max(id) FROM db.raw")
    assert res.rows == [(1202, 1201, 1201, 1201)]
