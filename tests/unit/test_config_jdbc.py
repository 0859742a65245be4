"""`etl validate` on jdbc sources and on source/incremental combinations (issue 16): shape checked without
connecting, each error at its file:line:col, all at once, exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.unit.test_config_errors import at, errors, proj, run, write  # noqa: F401 - proj is a fixture

GOOD = """\
job: orders_load
sources:
  orders:
    format: jdbc
    url: jdbc:postgresql://db.internal:5432/shop
    table: public.orders
    user: etl
    password: ${secret:shop_db_password}
    fetchsize: 5000
    parallel: {column: order_id, partitions: 8}
    incremental: {mode: watermark, column: [updated_at, order_id]}
  returns:
    format: jdbc
    url: jdbc:mysql://db.internal:3306/shop
    query: |
      -- the open returns only
      WITH r AS (SELECT * FROM returns WHERE state = 'open') SELECT * FROM r
    user: etl
    password: ${secret:shop_db_password}
    options: {hashfield: return_id, hashpartitions: 4}
  trips: {format: csv, path: ../trips.csv, incremental: {mode: watermark, column: pickup_ts}}
target: {path: ../out/orders}
"""

BAD = """\
job: orders_load
sources:
  orders:
    format: jdbc
    url: postgresql://db.internal:5432/shop
    table: public.orders
    user: etl
    password: hunter2
    incremental: {mode: files}
  returns:
    format: jdbc
    url: jdbc:postgresql://db.internal:5432/shop
    query: DELETE FROM returns WHERE true
    user: etl
    password: ${secret:pw}
    options: {hashpartitions: 4, dbtable: x}
  other:
    format: jdbc
    url: jdbc:db2://host:50000/x?password=plain
    table: t
  trips: {format: csv, path: ../trips.csv, incremental: {mode: watermark, column: [pickup_ts, trip_id]}}
target: {path: ../out/orders}
"""


def test_a_good_jdbc_job_validates(proj: Path) -> None:  # noqa: F811
    write(proj, "demo.yaml", GOOD)
    rc, out = run(proj, "validate", str(proj / "jobs" / "demo.yaml"))
    assert rc == 0, out


def test_bad_jdbc_sources_are_reported_at_their_lines(proj: Path) -> None:  # noqa: F811
    write(proj, "demo.yaml", BAD)
    rc, out = run(proj, "validate", str(proj / "jobs" / "demo.yaml"))
    assert rc == 2 and "Traceback" not in out, out
    found = {(line, col): msg for _, line, col, msg in errors(out)}
    text = textwrap.dedent(BAD)
    expect = [
        ("postgresql://db.internal", "url must start with 'jdbc:"),
        ("hunter2", "password must be a secret reference"),
        ("files}", "a jdbc source has no files to bookmark"),
        ("DELETE", "query must be a SELECT"),
        ("hashpartitions: 4", "'hashpartitions' needs 'hashfield'"),
        ("dbtable", "'dbtable' is a key of the source itself"),
        ("jdbc:db2", "no known driver for 'jdbc:db2:'"),
        ("[pickup_ts, trip_id]", "a compound watermark key is for jdbc sources"),
    ]
    for needle, message in expect:
        pos = at(text, needle)
        assert pos in found and message in found[pos], (needle, message, out)
    assert "a password in the url would be logged" in out
    assert "hunter2" not in out.replace("password: hunter2", "")


@pytest.mark.parametrize(("source", "message"), [
    ("{format: jdbc, url: 'jdbc:postgresql://h/db', table: t, query: SELECT 1}", "exactly one of 'table' or 'query'"),
    ("{format: jdbc, table: t}", "needs 'url"),
    ("{format: csv, path: x.csv, user: etl}", "'user' is only for format 'jdbc'"),
    ("{format: jdbc, url: 'jdbc:postgresql://h/db', query: 'SELECT 1; DROP TABLE t'}", "one statement"),
    ("{format: delta, path: x, incremental: {mode: files}}", "use {mode: watermark"),
])
def test_jdbc_shape_errors(proj: Path, source: str, message: str) -> None:  # noqa: F811
    write(proj, "demo.yaml", f"job: j\nsources:\n  s: {source}\ntarget: {{path: ../out}}\n")
    rc, out = run(proj, "validate", str(proj / "jobs" / "demo.yaml"))
    assert rc == 2 and message in out and "demo.yaml:3:" in out, out


def test_deploy_ships_the_driver_jar_and_attaches_the_glue_connection(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """On Glue the job gets its database's driver JAR (uploaded from .jars/, in --extra-jars) and the env's
    Glue Connections (the network path); the password stays a ${secret:NAME} resolved from Secrets Manager."""
    from types import SimpleNamespace

    from etl_framework.config.model import EnvConfig, JobConfig
    from etl_framework.deploy.spec import build_desired

    monkeypatch.delenv("ETL_JARS_DIR", raising=False)
    root = tmp_path / "p"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / ".jars").mkdir()
    (root / ".jars" / "postgresql-42.7.7.jar").write_bytes(b"PK-driver")
    (root / "conf" / "prod.yaml").write_text("x: 1\n")
    (root / "jobs" / "j.yaml").write_text("job: j\n")
    env_cfg = EnvConfig.model_validate({"deploy": {"s3_prefix": "s3://b/etl", "role": "arn:aws:iam::1:role/r",
                                                   "connections": ["shop-db-vpc"]}})
    cfg = JobConfig.model_validate({"job": "j", "sources": {"o": {
        "format": "jdbc", "url": "jdbc:postgresql://db:5432/shop", "table": "orders", "user": "etl",
        "password": "${secret:shop}"}}, "target": {"path": "s3://b/lake/orders"}})
    project = SimpleNamespace(root=root, env_file=lambda env: root / "conf" / f"{env}.yaml")
    lj = SimpleNamespace(config=cfg, path=root / "jobs" / "j.yaml", params={}, doc=None)
    (root / "etl_job.py").write_text("#")
    state = build_desired(project, "prod", env_cfg, {"j": lj}, {}, [], root / "etl_job.py",
                          SimpleNamespace(filename="w.whl", data=b"w"))
    job = state.of("job")[0].spec
    assert "s3://b/etl/p/prod/jars/postgresql-42.7.7.jar" in job["DefaultArguments"]["--extra-jars"].split(",")
    assert job["Connections"] == {"Connections": ["shop-db-vpc"]}
    assert any(a.uri == "s3://b/etl/p/prod/jars/postgresql-42.7.7.jar" and a.data == b"PK-driver" for a in state.artifacts)


def test_doctor_tries_each_jdbc_database_without_a_jvm(tmp_path: Path) -> None:
    import socket

    from etl_framework.cli.doctor import jdbc_checks
    from etl_framework.config.project import Project

    root = tmp_path / "p"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "local.yaml").write_text("vars: {}\n")
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    for name, port in (("up", listening.getsockname()[1]), ("down", dead_port)):
        (root / "jobs" / f"{name}.yaml").write_text(
            f"job: {name}\nsources:\n  s: {{format: jdbc, url: 'jdbc:postgresql://127.0.0.1:{port}/shop', "
            "table: t, user: etl, password: '${secret:pw}'}\ntarget: {path: ../out}\n")
    try:
        found = {name: (ok, detail) for name, ok, detail, _ in jdbc_checks(Project(root), "local")}
    finally:
        listening.close()
    assert found["jdbc up.s"][0] and "reachable" in found["jdbc up.s"][1]
    assert not found["jdbc down.s"][0] and "not reachable" in found["jdbc down.s"][1]
