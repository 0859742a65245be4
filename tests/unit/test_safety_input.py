"""Hostile or broken input gets a clear error, fast (issue 15, SPEC §10/§13): catalog metadata is data, not code
(`etl query` runs nothing but the user's one SELECT); a YAML alias bomb, a state or catalog file that is not a
database, and an AWS endpoint that never answers each end in seconds with a message naming the file or endpoint.
Secret redaction and whole-word sensitive params, as units (the end-to-end runs are in
tests/spark/test_secret_redaction.py)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl_framework.catalog.base import Column, new_table
from etl_framework.catalog.local import LocalCatalog
from etl_framework.cli import cli
from etl_framework.cli.common import run_cli
from tests.conftest import REPO

ENV = {"PYTHONPATH": str(REPO), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


def etl(cwd: Path, *args: str, timeout: float = 60, **env: str) -> tuple[int, str, str, float]:
    """`etl ARGS` as a user runs it: its own process; returns (exit code, stdout, stderr, wall seconds)."""
    full = {**os.environ, **ENV, **env}
    full.pop("ETL_PROJECT_DIR", None)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", "from etl_framework.cli import main; main()", *args], cwd=cwd,
                       capture_output=True, text=True, env=full, timeout=timeout, check=False)
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t0


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_cli(cli, list(args))
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    (root / "jobs" / "ok.yaml").write_text(
        "job: ok\nsources:\n  s: {format: csv, path: ../data/in.csv, schema: {a: int}}\n"
        "target: {format: delta, path: ../data/lake/ok}\n")
    return root


# ------------------------------------------------------------------------------- secrets and params, as units


@pytest.mark.parametrize(("key", "sensitive"), [
    ("token_count", False), ("passenger_min", False), ("password_file", False), ("key", False),
    ("secret_name", False), ("bypass_cache", False), ("access_key_id", False), ("max_tokens_per_call", False),
    ("password", True), ("db_password", True), ("api_key", True), ("apiKey", True), ("API_TOKEN", True),
    ("aws_secret_access_key", True), ("client-secret", True), ("DBPassword", True), ("auth.token", True),
])
def test_sensitive_params_are_whole_words(key: str, sensitive: bool) -> None:
    from etl_framework.config.interpolate import redact

    assert (redact({key: "v"})[key] == "***") is sensitive


def test_resolved_secret_is_hidden_in_logging_streams_and_state(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from etl_framework.config.interpolate import resolve_secrets
    from etl_framework.redaction import RedactingStream, install_logging
    from etl_framework.state.db import connect

    secret = 'pa"ss<w>ord-Xq81-unit'
    monkeypatch.setenv("UNIT_SAFETY_SECRET", secret)
    assert resolve_secrets("${secret:UNIT_SAFETY_SECRET}") == secret
    install_logging()
    sink = io.StringIO()
    stream = RedactingStream(sink)
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("tests.safety")
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        log.error("login with %s", secret)
        try:
            raise ValueError(f"refused {secret!r}")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    stream.write(secret[:5])  # a value split over two writes
    stream.write(secret[5:] + "\n")
    stream.write('{"k": ' + __import__("json").dumps(secret) + "}\n")  # as JSON writes it
    stream.flush()
    text = sink.getvalue()
    assert "login with ***" in text and "refused '***'" in text and '{"k": "***"}' in text
    assert "pa\"ss" not in text and "Xq81" not in text

    conn = connect(tmp_path / "s.db")
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES (?)", (f"error: {secret}",))
    conn.close()
    assert b"Xq81" not in b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())


# ------------------------------------------------------------------------------------ catalog metadata is data


def hostile_type(target: Path) -> str:
    """A column type that closes the CAST and runs a COPY when pasted into SQL."""
    return (f"decimal(1,0)) as n from (select 1 as n); copy (select 42 as pwned) to '{target}' (format csv); "
            "select (1")


def csv_table(tmp_path: Path, type_: str) -> tuple[object, Path]:
    data = tmp_path / "raw"
    data.mkdir()
    (data / "a.csv").write_text("n,name\n1,a\n2,b\n")
    return new_table("db", "t", "csv", str(data), [Column("n", type_), Column("name", "string")]), data


def test_hostile_column_type_in_local_catalog(proj: Path, tmp_path: Path) -> None:
    target = tmp_path / "pwned.csv"
    table, _ = csv_table(tmp_path, hostile_type(target))
    cat = LocalCatalog(proj / ".etl" / "catalog.db")
    cat.ensure_database("db")
    cat.create_table(table)
    cat.close()
    rc, out, err = run("--project-dir", str(proj), "query", "SELECT count(*) AS c FROM db.t")
    assert rc == 2, err
    assert "table db.t: column 'n' has type" in err and "not a Glue/Hive type" in err
    assert not target.exists() and out == ""
    # the user's own SQL: one SELECT, nothing else
    for sql in (f"COPY (SELECT 1) TO '{target}'", f"SELECT 1; COPY (SELECT 1) TO '{target}'",
                f"ATTACH '{tmp_path / 'x.db'}'"):
        rc, _, err = run("--project-dir", str(proj), "query", sql)
        assert rc == 2, (sql, err)
    assert not target.exists() and not (tmp_path / "x.db").exists()


def test_user_select_reads_only_the_tables_files(proj: Path, tmp_path: Path) -> None:
    table, _ = csv_table(tmp_path, "int")
    secret_file = tmp_path / "other.csv"
    secret_file.write_text("x\nprivate\n")
    cat = LocalCatalog(proj / ".etl" / "catalog.db")
    cat.ensure_database("db")
    cat.create_table(table)
    cat.close()
    rc, out, err = run("--project-dir", str(proj), "query", "SELECT sum(n) AS s FROM db.t", "--json")
    assert rc == 0, err
    assert '"s": 3' in out
    rc, out, err = run("--project-dir", str(proj), "query", f"SELECT * FROM db.t, read_csv('{secret_file}')")
    assert rc == 2 and "private" not in out


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    for k, v in ENV.items():
        if k.startswith("AWS"):
            monkeypatch.setenv(k, v)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_hostile_column_type_in_glue_catalog(proj: Path, tmp_path: Path, moto_url: str) -> None:
    from etl_framework.catalog.glue import GlueCatalog

    target = tmp_path / "pwned_glue.csv"
    table, _ = csv_table(tmp_path, hostile_type(target))
    glue = GlueCatalog("us-east-1", moto_url)
    glue.ensure_database("db")
    glue.create_table(table)
    (proj / "conf" / "cloud.yaml").write_text(
        f"state: {{path: ../.etl/state.db}}\ncatalog: {{backend: glue}}\naws: {{endpoint_url: '{moto_url}'}}\n")
    rc, out, err = run("--project-dir", str(proj), "--env", "cloud", "query", "SELECT count(*) FROM db.t")
    assert rc == 2, err
    assert "column 'n'" in err and "db.t" in err
    assert not target.exists() and out == ""


# ------------------------------------------------------------------------------------- broken and hostile files


def bomb(first_line: str) -> str:
    """'Billion laughs': 9 levels of 9 aliases, 9^9 values from 10 lines."""
    lines = [first_line, 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind", ["job", "workflow", "env"])
def test_yaml_alias_bomb_is_refused_fast(proj: Path, kind: str) -> None:
    from etl_framework.config.errors import ConfigErrors
    from etl_framework.config.loader import parse_text

    if kind == "env":
        path = proj / "conf" / "local.yaml"
        path.write_text(bomb("state: {path: ../.etl/state.db}"))
        args = ["validate", "jobs/ok.yaml"]
    else:
        path = proj / "jobs" / f"bomb_{kind}.yaml"
        path.write_text(bomb(f"{kind}: bomb"))
        args = ["validate", str(path.relative_to(proj))]
    rc, out, err, _wall = etl(proj, *args, timeout=20)  # an unbounded expansion would hit this timeout (or OOM)
    assert rc == 2, err
    assert f"{path.name}:" in err and "alias" in err and "Traceback" not in err and out == ""
    line = next(ln for ln in err.splitlines() if path.name in ln and "alias" in ln)
    assert line.split(path.name + ":", 1)[1].split(":")[0].isdigit()  # file:line:col

    t0 = time.monotonic()
    with pytest.raises(ConfigErrors):
        parse_text(path.read_text(), str(path))
    assert time.monotonic() - t0 < 5  # the loader itself refuses before expanding (expanding takes minutes)


def test_state_file_that_is_not_a_database(proj: Path) -> None:
    state = proj / ".etl" / "state.db"
    state.parent.mkdir()
    state.write_text("this is a note, not a database\n" * 10)
    for args in (["runs"], ["run", "jobs/ok.yaml"], ["show", "jr_x", "--json"]):
        rc, out, err, wall = etl(proj, *args, timeout=30)
        assert rc == 2, (args, err)
        assert wall < 10
        assert f"the state file {state} is not an SQLite database" in err and "move it away" in err, err
        assert "Traceback" not in err and out == ""
    assert state.read_text().startswith("this is a note")  # left as it was

    from etl_framework.cli.doctor import checks

    bad = [c for c in checks(str(proj), "local") if c["check"] == "state file"]
    assert bad and not bad[0]["ok"] and str(state) in bad[0]["detail"] and "mv " in bad[0]["fix"]


def test_catalog_file_that_is_not_a_database(proj: Path) -> None:
    catalog = proj / ".etl" / "catalog.db"
    catalog.parent.mkdir()
    catalog.write_bytes(os.urandom(4096))
    rc, out, err, _ = etl(proj, "catalog", "list", timeout=30)
    assert rc == 2 and f"the catalog file {catalog} is not an SQLite database" in err, err
    assert "Traceback" not in err and out == ""


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """A local endpoint that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(timeout=2)
        for c in held:
            c.close()
        srv.close()


def test_aws_clients_have_timeouts_and_bounded_retries() -> None:
    from etl_framework.catalog.glue import GlueCatalog
    from etl_framework.config.model import AwsConfig
    from etl_framework.runtime.glue import aws_client

    for c in (GlueCatalog("us-east-1", "http://127.0.0.1:9").client,
              aws_client("s3", AwsConfig(endpoint_url="http://127.0.0.1:9"))):
        cfg = c.meta.config
        assert cfg.connect_timeout <= 5 and cfg.read_timeout <= 10
        assert cfg.retries["total_max_attempts"] <= 3 and cfg.retries["mode"] == "standard"  # first call included


@pytest.mark.parametrize("what", ["state", "catalog"])
def test_black_holed_endpoint_fails_in_seconds(proj: Path, what: str) -> None:
    with black_hole() as url:
        if what == "state":
            (proj / "conf" / "bh.yaml").write_text(
                f"state: {{backend: dynamodb, table_prefix: bh_}}\naws: {{endpoint_url: '{url}'}}\n")
            args = ["--env", "bh", "runs"]
        else:
            (proj / "conf" / "bh.yaml").write_text(
                f"state: {{path: ../.etl/state.db}}\ncatalog: {{backend: glue}}\naws: {{endpoint_url: '{url}'}}\n")
            args = ["--env", "bh", "catalog", "list"]
        rc, out, err, wall = etl(proj, *args, timeout=60, ETL_AWS_READ_TIMEOUT="1", ETL_AWS_MAX_ATTEMPTS="2")
    assert rc == 1, err
    assert wall < 10, wall
    assert url in err and "Traceback" not in err and out == "", err
