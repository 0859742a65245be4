"""`format: jdbc` against a real PostgreSQL server (tests/pg_server.py: Debian's binaries, a temp folder, a free
port of 127.0.0.1, stopped at the end): a parallel full read equals the table; incremental runs with inserts and
updates between them give every row version exactly once, the watermark filtered by the database itself; a run
killed with SIGKILL and re-run loses and doubles nothing; bad input fails clearly and moves no bookmark; the
password is in no byte of the run record, the target or the output.

Rows are checked with delta-rs (independent of Spark) against what psql says the table holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from etl_framework.config.model import EnvConfig, JobConfig
from etl_framework.engine.job import run_loaded
from etl_framework.state.bookmarks import SqliteBookmarkStore
from etl_framework.state.runs import SqliteRunStore
from tests.pg_server import PASSWORD, USER, PgServer, pg_bin
from tests.spark.test_runtime_helpers import delta_rows, run

SECRET = "ETL_TEST_PG_PASSWORD"
_SERVER: PgServer | None = None  # for the python transform step below


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    global _SERVER
    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: `make test` installs it (make postgres)")
        pytest.skip("PostgreSQL is not installed: run `make postgres`")
    server = PgServer().start()
    _SERVER = server
    try:
        yield server
    finally:
        _SERVER = None
        server.stop()


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET, PASSWORD)


def env(state: Path) -> EnvConfig:
    return EnvConfig.model_validate({"state": {"path": str(state)}, "catalog": {"path": str(state) + ".cat"}})


def jdbc_job(pg: PgServer, target: Path, table: str, name: str, **source: Any) -> JobConfig:
    return JobConfig.model_validate({
        "job": name,
        "sources": {"src": {"format": "jdbc", "url": pg.url, "table": table, "user": USER,
                            "password": "${secret:" + SECRET + "}", **source}},
        "target": {"format": "delta", "path": str(target), "mode": "append"},
    })


def versions(pg: PgServer, table: str) -> list[tuple[int, str, int]]:
    return sorted((int(i), ts, int(v)) for i, ts, v in pg.psql(
        f"SELECT id, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US'), v FROM {table}"))


def target_versions(target: Path) -> list[tuple[int, str, int]]:
    return sorted((r["id"], r["updated_at"].strftime("%Y-%m-%d %H:%M:%S.%f"), r["v"])
                  for r in delta_rows(target, order="id"))


def test_parallel_full_read_equals_the_table_and_the_password_leaks_nowhere(
        spark: Any, pg: PgServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    pg.psql("CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(10,2), "
            "updated_at timestamp NOT NULL);"
            "INSERT INTO orders SELECT g, 'c' || (g % 7), g * 1.25, timestamp '2024-01-01' + g * interval '1 minute' "
            "FROM generate_series(1, 200) g")
    target, state = tmp_path / "out", tmp_path / "state.db"
    cfg = jdbc_job(pg, target, "public.orders", "pg_full", parallel={"column": "id", "partitions": 4},
                   fetchsize=50)
    before = len(pg.statements())
    store = SqliteRunStore(state)
    try:
        r = run_loaded(cfg, spark=spark, store=store, env_config=env(state), quiet=False)
    finally:
        store.close()
    assert r.ok, (r.error, r.hint)
    got = [(x["id"], x["customer"], f"{x['amount']:.2f}") for x in delta_rows(target, order="id")]
    want = sorted((int(i), c, a) for i, c, a in pg.psql("SELECT id, customer, amount FROM orders"))
    assert got == want and len(got) == 200
    # four queries, one per stride of id, bounds from one min/max query
    reads = [s for s in pg.statements()[before:] if s.startswith("SELECT") and "FROM public.orders" in s
             and "1=0" not in s.replace(" ", "")]
    assert len([s for s in reads if "min(id) AS lo, max(id) AS hi FROM public.orders" in s]) == 1, reads
    strides = sorted(s.split("WHERE", 1)[1].strip() for s in reads if s.startswith('SELECT "id","customer"'))
    assert len(strides) == 4 and all('"id" <' in w or '"id" >=' in w for w in strides), reads
    assert r.metrics["extract"]["jdbc"]["src"]["partitions"] == 4
    # the password: in no byte of the run record, the state, the target, or anything printed
    out, err = capfd.readouterr()
    for path in [state, *target.rglob("*")]:
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in out + err
    assert PASSWORD not in repr(r.to_dict())


def test_incremental_compound_key_gives_every_version_once_and_the_database_filters(
        spark: Any, pg: PgServer, tmp_path: Path) -> None:
    pg.psql("CREATE TABLE events (id int PRIMARY KEY, v int NOT NULL, updated_at timestamp NOT NULL);"
            "INSERT INTO events SELECT g, 0, timestamp '2024-01-01 00:00:00' + (g / 3) * interval '1 second' "
            "FROM generate_series(1, 30) g")
    target, state = tmp_path / "out", tmp_path / "state.db"
    cfg = jdbc_job(pg, target, "events", "pg_inc", incremental={"mode": "watermark", "column": ["updated_at", "id"]},
                   parallel={"column": "id", "partitions": 2})
    seen: list[tuple[int, str, int]] = versions(pg, "events")
    r = run(spark, cfg, state, env_config=env(state))
    assert r.ok, (r.error, r.hint)
    assert target_versions(target) == seen
    # between runs: new rows tied on the last updated_at (a larger id), new rows later, updates of old rows
    pg.psql("INSERT INTO events VALUES (31, 0, timestamp '2024-01-01 00:00:10'), (32, 0, '2024-01-01 00:00:10');"
            "INSERT INTO events SELECT g, 0, timestamp '2024-01-02' FROM generate_series(33, 40) g;"
            "UPDATE events SET v = 1, updated_at = timestamp '2024-01-03' WHERE id IN (2, 5, 33)")
    seen += [v for v in versions(pg, "events") if v not in seen]
    before = len(pg.statements())
    r2 = run(spark, cfg, state, env_config=env(state))
    assert r2.ok, (r2.error, r2.hint)
    # the watermark is in the database's WHERE: the data queries name it, none reads the table unfiltered
    reads = [s for s in pg.statements()[before:] if "FROM events" in s and "etl_src" in s]
    assert reads and all("updated_at > '2024-01-01 00:00:10" in s for s in reads), reads
    pg.psql("UPDATE events SET v = 2, updated_at = timestamp '2024-01-04' WHERE id IN (2, 40);"
            "INSERT INTO events VALUES (41, 0, timestamp '2024-01-04')")
    seen += [v for v in versions(pg, "events") if v not in seen]
    assert run(spark, cfg, state, env_config=env(state)).ok
    assert target_versions(target) == sorted(seen)
    # nothing new: nothing added
    assert run(spark, cfg, state, env_config=env(state)).ok
    assert target_versions(target) == sorted(seen)
    bm = SqliteBookmarkStore(state).get("pg_inc")
    assert bm.sources["src"].column == ["updated_at", "id"] and bm.sources["src"].watermark[1] == 41


def touch_rows(df: Any, ctx: Any) -> Any:
    """A python step that updates rows in the database after the run fixed its range and before Spark reads
    the data (Spark reads when the write runs): a table updated while the job reads."""
    assert _SERVER is not None
    _SERVER.psql("UPDATE moving SET v = v + 1, updated_at = updated_at + interval '1 day' WHERE id % 4 = 0")
    return df


def test_rows_updated_while_the_job_reads_are_neither_lost_nor_doubled(
        spark: Any, pg: PgServer, tmp_path: Path) -> None:
    pg.psql("CREATE TABLE moving (id int PRIMARY KEY, v int NOT NULL, updated_at timestamp NOT NULL);"
            "INSERT INTO moving SELECT g, 0, timestamp '2024-01-01' + g * interval '1 second' "
            "FROM generate_series(1, 40) g")
    target, state = tmp_path / "out", tmp_path / "state.db"
    cfg = jdbc_job(pg, target, "moving", "pg_moving", incremental={"mode": "watermark",
                                                                   "column": ["updated_at", "id"]},
                   parallel={"column": "id", "partitions": 2})
    cfg = cfg.model_copy(update={"transform": JobConfig.model_validate({
        "job": "x", "sources": {"s": {"format": "csv", "path": "/x"}}, "target": {"path": "/y"},
        "transform": [{"python": "tests.e2e.test_jdbc_postgres:touch_rows"}]}).transform})
    assert run(spark, cfg, state, env_config=env(state)).ok
    pg.psql("INSERT INTO moving VALUES (1000, 7, timestamp '2024-01-01 00:00:00')")  # late: its key is below hi
    cfg2 = cfg.model_copy(update={"transform": []})
    assert run(spark, cfg2, state, env_config=env(state)).ok
    rows = target_versions(target)
    assert len(rows) == len(set(rows)), "a row version was read twice"
    ids = {i for i, _, _ in rows}
    assert ids >= set(range(1, 41)), f"rows lost: {sorted(set(range(1, 41)) - ids)}"
    # every updated row's new version is there (read by the second run)
    now = {i: (ts, v) for i, ts, v in versions(pg, "moving")}
    assert all((i, *now[i]) in rows for i in range(4, 41, 4))
    # the limit of any watermark (Glue's too): a row written with a key below the bookmark is not read
    assert 1000 not in ids


def loud_run(spark: Any, cfg: JobConfig, state: Path) -> Any:
    """A run that prints its progress to stderr (as `etl run` does) and keeps its own log file beside the state."""
    store = SqliteRunStore(state)
    try:
        return run_loaded(cfg, spark=spark, store=store, env_config=env(state), quiet=False)
    finally:
        store.close()


def run_record(state: Path, run_id: str) -> str:
    """The run record as `etl show RUN_ID --json` gives it (the stored run, its stages and details)."""
    store = SqliteRunStore(state)
    try:
        return json.dumps(store.get_run(run_id), default=str)
    finally:
        store.close()


def test_database_down_or_wrong_password_fails_clearly_and_moves_no_bookmark(
        spark: Any, pg: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    pg.psql("CREATE TABLE IF NOT EXISTS small (id int, updated_at timestamp);"
            "INSERT INTO small VALUES (1, '2024-01-01'), (2, NULL)")
    target, state = tmp_path / "out", tmp_path / ".etl" / "state.db"
    state.parent.mkdir()
    inc = {"mode": "watermark", "column": "updated_at"}
    capfd.readouterr()
    ok = loud_run(spark, jdbc_job(pg, target, "small", "pg_small", incremental=inc), state)
    assert ok.ok, (ok.error, ok.hint)
    assert [x["id"] for x in delta_rows(target, order="id")] == [1]  # the NULL row is skipped, and reported:
    warning = "extract: warning: source 'src': 1 row(s) with NULL in watermark column(s) updated_at are skipped"
    out, err = capfd.readouterr()
    assert warning in err, err[-3000:]  # on the run's stderr
    run_log = (state.parent / "logs" / "jobs" / f"{ok.run_id}.log").read_text()
    assert warning in run_log, run_log  # and in the run's own log (`etl show RUN_ID --log`)
    bm = SqliteBookmarkStore(state).get("pg_small").to_json()
    pg.psql("INSERT INTO small VALUES (3, '2024-02-01')")
    monkeypatch.setenv(SECRET, "not-the-password")
    bad = loud_run(spark, jdbc_job(pg, target, "small", "pg_small", incremental=inc), state)
    assert bad.exit_code == 1 and bad.error_stage == "extract"
    assert "127.0.0.1" in bad.error and f"user '{USER}'" in bad.error and "password authentication" in bad.error
    monkeypatch.setenv(SECRET, PASSWORD)
    down = jdbc_job(pg, target, "small", "pg_small", incremental=inc).model_copy(deep=True)
    down.sources["src"].url = f"jdbc:postgresql://127.0.0.1:{pg.port + 1 if pg.port < 65535 else 1}/shop"
    r = loud_run(spark, down, state)
    assert r.exit_code == 1 and r.error_stage == "extract", r.error
    assert "cannot connect to the database at 127.0.0.1" in r.error and f"user '{USER}'" in r.error, r.error
    # neither password (the wrong one, the right one the "down" run held) in any byte the failures left: the
    # state database and its WAL, the runs' logs, what they printed, their run records
    out, err = capfd.readouterr()
    files = {f: f.read_bytes() for f in tmp_path.rglob("*") if f.is_file()}  # before a store opens it again
    assert state in files and any(f.name.endswith(".log") for f in files), sorted(files)
    records = run_record(state, bad.run_id) + run_record(state, r.run_id)
    assert bad.run_id in records and r.run_id in records and "cannot connect" in records
    for secret in ("not-the-password", PASSWORD):
        for f, data in files.items():
            assert secret.encode() not in data, (secret, f)
        assert secret not in out + err
        assert secret not in records
        assert secret not in repr(bad.to_dict()) + repr(r.to_dict())
    missing = run(spark, jdbc_job(pg, target, "small", "pg_small", incremental={"mode": "watermark",
                                                                                 "column": "changed_at"}),
                  state, env_config=env(state))
    assert missing.exit_code == 1 and "no watermark column 'changed_at'" in missing.error
    assert "updated_at" in missing.error  # the columns it has
    assert SqliteBookmarkStore(state).get("pg_small").to_json() == bm  # no failed run moved the bookmark
    assert [x["id"] for x in delta_rows(target, order="id")] == [1]


ETL = str(Path(sys.executable).parent / "etl")


def killed_run(pg: PgServer, root: Path, point: str) -> str:
    """`etl run` killed with SIGKILL (its whole process group, the JVM too) at a fault point of faults.py, or, for
    `extract`, while the extract's first query waits in the database for a lock this test holds on the table.
    Returns what the database was running when the kill came (extract), else the point."""
    env = {**os.environ, **({"ETL_FAULT_KILL_AT": point} if point != "extract" else {})}
    locker = None
    if point == "extract":
        locker = subprocess.Popen([str(pg.bin / "psql"), "-h", str(pg.root), "-p", str(pg.port), "-U", "postgres",
                                   "-d", "shop", "-X", "-q", "-v", "ON_ERROR_STOP=1"],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert locker.stdin is not None
        locker.stdin.write("BEGIN;\nLOCK TABLE killed IN ACCESS EXCLUSIVE MODE;\n")
        locker.stdin.flush()
        wait_for(lambda: pg.psql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                                 "WHERE c.relname = 'killed' AND l.mode = 'AccessExclusiveLock' AND l.granted"
                                 ) == [["1"]], "the test's lock on the table")
    out, err = root / f"{point}.out", root / f"{point}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([ETL, "run", "jobs/pg_kill.yaml", "--no-report"], cwd=root, stdout=o, stderr=e,
                                env=env, start_new_session=True)
    what = point
    try:
        if locker is not None:
            blocked: list[list[str]] = []

            def waiting() -> bool:
                nonlocal blocked
                assert proc.poll() is None, err.read_text()[-2000:]
                blocked = pg.psql(f"SELECT query FROM pg_stat_activity WHERE usename = '{USER}' "
                                  "AND wait_event_type = 'Lock'")
                return bool(blocked)

            wait_for(waiting, "the run's extract query blocked on the table")
            what = f"extract, blocked in: {blocked[0][0]}"
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the JVM child of a driver that killed itself
        except ProcessLookupError:
            pass
        if locker is not None and locker.stdin is not None:
            locker.stdin.write("COMMIT;\n")
            locker.stdin.close()
            locker.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, err.read_text()[-2000:])
    assert PASSWORD.encode() not in out.read_bytes() + err.read_bytes()
    return what


def wait_for(ready: Any, what: str, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_loses_and_doubles_nothing(spark: Any, pg: PgServer, tmp_path: Path) -> None:
    """`etl run` killed with SIGKILL at several moments: while its extract waits in the database, once the bookmark
    range is planned, as the write starts, and right after the target committed (the bookmark cache not yet
    updated, the run record still RUNNING). Between each kill and its re-run rows are inserted (one tied with the
    last watermark on updated_at, with a larger id) and existing rows updated. After every re-run the target holds
    every row version that a committed run saw exactly once: a kill before the commit leaves the target as it
    was, a kill after it leaves that run's rows, and the re-run adds only what is new since the last commit."""
    pg.psql("CREATE TABLE killed (id int PRIMARY KEY, v int, updated_at timestamp NOT NULL);"
            "INSERT INTO killed SELECT g, 0, timestamp '2024-01-01' + g * interval '1 hour' "
            "FROM generate_series(1, 20) g")
    root = tmp_path / "proj"
    (root / "conf").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "conf" / "local.yaml").write_text(yaml.safe_dump({"state": {"path": "../.etl/state.db"},
                                                              "catalog": {"path": "../.etl/catalog.db"}}))
    out = root / "out"
    spec = {"job": "pg_kill", "sources": {"src": {
        "format": "jdbc", "url": pg.url, "table": "killed", "user": USER, "password": "${secret:" + SECRET + "}",
        "incremental": {"mode": "watermark", "column": ["updated_at", "id"]}}},
        "target": {"format": "delta", "path": str(out), "mode": "append"}}
    (root / "jobs" / "pg_kill.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    cfg = JobConfig.model_validate(spec)
    state = root / ".etl" / "state.db"

    def held() -> list[tuple[int, str, int]]:
        return target_versions(out) if (out / "_delta_log").is_dir() else []

    seen: set[tuple[int, str, int]] = set()  # every row version a committed run saw
    outcomes = []
    for k, point in enumerate(["write.committed", "extract", "bookmark.planned", "write.start"]):
        at_kill = versions(pg, "killed")
        outcomes.append(killed_run(pg, root, point))
        if point == "write.committed":
            seen |= set(at_kill)
        assert held() == sorted(seen), f"after the kill at {outcomes[-1]}"
        # before the re-run: a row tied with the last watermark (larger id), new rows later, updates of old rows
        day = f"timestamp '2024-02-01' + {k} * interval '1 day'"
        pg.psql(f"INSERT INTO killed SELECT {1000 + k}, 0, max(updated_at) FROM killed;"
                f"INSERT INTO killed SELECT 100 + 10 * {k} + g, 0, {day} + g * interval '1 minute' "
                "FROM generate_series(1, 3) g;"
                f"UPDATE killed SET v = v + 1, updated_at = {day} + interval '1 hour' "
                f"WHERE id IN ({k + 1}, 10{f', {100 + 10 * (k - 1) + 1}' if k else ''})")
        now = versions(pg, "killed")
        assert len(set(now) - seen) >= 6, "rows changed between the kill and the re-run"
        r = run(spark, cfg, state, env_config=EnvConfig.model_validate({"state": {"path": str(state)}}))
        assert r.ok, (outcomes[-1], r.error, r.hint)
        seen |= set(now)
        got = held()
        assert len(got) == len(set(got)), f"a row version doubled after the kill at {outcomes[-1]}"
        assert got == sorted(seen), (f"after the kill at {outcomes[-1]}: lost {sorted(seen - set(got))}, "
                                     f"unexpected {sorted(set(got) - seen)}")
    assert any(i >= 1000 for i, _, _ in seen) and max(v for _, _, v in seen) == 4  # id 10: four updates
    print("\nkilled at: " + "; ".join(outcomes))
