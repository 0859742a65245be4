"""`etl export airflow` against a real Apache Airflow 3 (with apache-airflow-providers-amazon), installed by `make`
into `.airflow-venv` (its own venv: Airflow's pins never touch the project's). Airflow runs as a subprocess
(`tests/e2e/airflow_probe.py`) with its own AIRFLOW_HOME in a temp dir:

- the exported DAG of the example workflow imports with no DagBag errors, and its task graph, trigger rules,
  schedule, retries and params are what the workflow says;
- `dag.test()` of the local export runs the example workflow end to end, and its tables equal `etl workflow run`'s;
- `dag.test()` of the cloud export against the moto server starts every Glue job run (and the crawler) in an order
  the graph allows, with the action's arguments and the DAG run id as script args.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.e2e.test_deploy_glue import CREDS, cloud, deploy, moto_url, wheel  # noqa: F401 - fixtures
from tests.unit.test_airflow_export import RULES_WORKFLOW

pytestmark = pytest.mark.slow
AIRFLOW_PY = REPO / ".airflow-venv" / "bin" / "python"
AIRFLOW2_PY = REPO / ".airflow-2.10-venv" / "bin" / "python"
PROBE = Path(__file__).with_name("airflow_probe.py")


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not AIRFLOW_PY.exists():
        pytest.fail("no .airflow-venv: run `make airflow` (make test installs it)")
    home = tmp_path_factory.mktemp("airflow_home")
    r = subprocess.run([str(AIRFLOW_PY.parent / "airflow"), "db", "migrate"], env=airflow_env(home),
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return home


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AIRFLOW", "VIRTUAL_ENV", "ETL_"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False", "ETL_SPARK_QUICK_START": "1",
                "ETL_BIN": str(Path(sys.executable).parent / "etl"), "PYTHONPATH": str(REPO)})
    env.update(extra)
    return env


def probe(home: Path, *args: str, timeout: float = 900, python: Path = AIRFLOW_PY, **env: str) -> dict[str, Any]:
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", args[1])  # dag.test() runs a DAG of the dags folder's bundle
    r = subprocess.run([str(python), str(PROBE), *args], env=airflow_env(home, **env), capture_output=True,
                       text=True, timeout=timeout, check=False)
    (home / "probe.log").write_text(r.stdout + "\n" + r.stderr)  # Airflow's task logs, for a failed assertion
    out = [line for line in r.stdout.splitlines() if line.startswith("@@PROBE@@")]
    assert r.returncode == 0 and out, (r.stdout[-3000:], r.stderr[-5000:])
    return json.loads(out[-1][len("@@PROBE@@"):])


def etl(proj: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "PYTHONPATH": str(REPO), "ETL_QUIET": "1", **(env or {})}
    e.pop("ETL_PROJECT_DIR", None)
    return subprocess.run([sys.executable, "-c", "from etl_framework.cli import main; main()", *args], cwd=proj,
                          capture_output=True, text=True, env=e, timeout=900, check=False)


def export(proj: Path, env: str, out: str, **kw: str) -> Path:
    r = etl(proj, "export", "airflow", "jobs/nightly_trips.yaml", "--env", env, "-o", out, env=kw or None)
    assert r.returncode == 0, r.stderr
    return proj / out


def test_example_dag_imports_and_matches_the_workflow(project: Path, airflow_home: Path) -> None:
    for env, out in (("local", "airflow/local"), ("prod", "airflow/prod")):
        folder = export(project, env, out)
        loaded = probe(airflow_home, "load", str(folder))
        assert loaded["import_errors"] == {}
        assert loaded["seconds"] < 30  # the whole DagBag fill (Airflow's own imports included)
        assert loaded["seconds_warm"] < 1.0  # parsing the DAG file itself: no YAML, no project, no Spark
        dag = loaded["dags"]["nightly_trips"]
        tasks = dag["tasks"]
        assert set(tasks) == {"crawler_raw_trips", "job_zones_load", "job_trips_clean", "job_trip_stats"}
        # after_crawl (and: raw_trips SUCCEEDED) -> zones_load, trips_clean; after_curated (and) -> trip_stats
        assert tasks["crawler_raw_trips"]["upstream"] == []
        assert tasks["job_zones_load"]["upstream"] == ["crawler_raw_trips"]
        assert tasks["job_trips_clean"]["upstream"] == ["crawler_raw_trips"]
        assert tasks["job_trip_stats"]["upstream"] == ["job_trips_clean", "job_zones_load"]
        assert {t["trigger_rule"] for t in tasks.values()} == {"all_success"}
        # trips_clean: retries {max_attempts: 2, backoff_seconds: 5, backoff_rate: 2.0}, timeout_minutes: 60
        tc = tasks["job_trips_clean"]
        assert (tc["retries"], tc["retry_delay"], tc["retry_exponential_backoff"]) == (1, 5.0, 2.0)
        assert tc["execution_timeout"] == 3600.0
        assert tasks["job_zones_load"]["retries"] == 0
        # nightly cron(0 2 * * ? *) in UTC, or new files (the event trigger, an Asset)
        sched = dag["schedule"]
        assert (sched["cron"], sched["timezone"]) == ("0 2 * * *", "UTC")
        assert len(sched["assets"]) == 1 and sched["assets"][0].rstrip("/").endswith("raw/trips")
        assert dag["max_active_runs"] == 1 and dag["max_active_tasks"] == 2 and not dag["catchup"]
        assert dag["params"] == {"region": "eu"}
        if env == "prod":
            assert tc["operator"] == "GlueJobOperator" and tc["job_name"] == "prod_trips_clean"
            assert tc["deferrable"] is True
            assert tc["script_args"]["--min_distance"] == "0.1"
            assert tasks["crawler_raw_trips"]["crawler_name"] == "prod_raw_trips"
        else:
            assert tc["operator"] == "BashOperator" and "run jobs/trips_clean.yaml" in tc["bash_command"]
            assert "--param min_distance=0.1" in tc["bash_command"]


def test_rule_translation_imports_in_real_airflow(project: Path, airflow_home: Path) -> None:
    """The unit-tested translation (gates, failure tasks, any/and) is also what a real Airflow builds."""
    (project / "jobs" / "rules.yaml").write_text(RULES_WORKFLOW)
    r = etl(project, "export", "airflow", "jobs/rules.yaml", "-o", "airflow/rules")
    assert r.returncode == 0, r.stderr
    dag = probe(airflow_home, "load", str(project / "airflow" / "rules"))["dags"]["rules"]
    t = dag["tasks"]
    assert (t["job_zones_load"]["trigger_rule"], t["job_zones_load"]["upstream"]) == (
        "one_success", ["crawler_a", "crawler_b"])
    assert (t["crawler_c"]["trigger_rule"], t["crawler_c"]["upstream"]) == ("all_failed", ["job_zones_load"])
    assert (t["trigger_mixed"]["trigger_rule"], t["trigger_mixed"]["upstream"]) == (
        "all_success", ["crawler_a", "job_zones_load__failed"])
    assert t["job_zones_load__failed"]["trigger_rule"] == "all_failed"
    assert (t["job_trips_clean"]["trigger_rule"], t["job_trips_clean"]["upstream"]) == (
        "one_success", ["trigger_mixed", "trigger_plain"])


def test_airflow_2_10_rendering_imports_in_real_airflow_2_10(project: Path, tmp_path: Path,
                                                              airflow_home: Path) -> None:
    """The `--airflow 2.10` files import in a real Airflow 2.10 with the same graph as the Airflow 3 files have in
    Airflow 3; only imports and operator classes differ."""
    if not AIRFLOW2_PY.exists():
        pytest.fail("no .airflow-2.10-venv: run `make airflow` (make test installs it)")
    (project / "jobs" / "rules.yaml").write_text(RULES_WORKFLOW)
    for env in ("prod", "local"):
        graphs = {}
        for version, python in (("3", AIRFLOW_PY), ("2.10", AIRFLOW2_PY)):
            out = f"airflow/{env}-{version}"
            r = etl(project, "export", "airflow", "--env", env, "-o", out, "--airflow", version)
            assert r.returncode == 0, r.stderr
            home = airflow_home if version == "3" else tmp_path / f"home2-{env}"
            loaded = probe(home, "load", str(project / out), python=python)
            assert loaded["import_errors"] == {}, (version, loaded["import_errors"])
            assert loaded["seconds_warm"] < 1.0
            graphs[version] = {
                dag_id: ({tid: (t["upstream"], t["trigger_rule"], t["retries"], t["retry_delay"],
                                t["execution_timeout"]) for tid, t in dag["tasks"].items()},
                         dag["schedule"]["cron"], dag["schedule"]["timezone"], len(dag["schedule"]["assets"]),
                         dag["max_active_runs"], dag["params"])
                for dag_id, dag in loaded["dags"].items()}
        assert set(graphs["3"]) == {"nightly_trips", "rules"}
        assert graphs["2.10"] == graphs["3"]


GLUE_CRONS = ("cron(0 2 * * ? *)", "cron(15 10 ? * MON-FRI *)", "cron(0/20 8-17 ? * 2,4 *)", "cron(0 8 L * ? *)",
              "cron(0 8 ? * 6L *)", "cron(0 8 ? * 2#1 *)", "cron(0 22 ? * FRI-MON *)", "cron(30 6 1,15 */2 ? *)")


def test_translated_schedules_fire_when_glue_would() -> None:
    """Airflow's own cron (croniter, as its CronTriggerTimetable uses it) gives the same next fire times as the
    Glue schedule (config/cron.py's next_fire)."""
    from datetime import UTC, datetime

    from etl_framework.config.cron import next_fire
    from etl_framework.config.model import Trigger
    from etl_framework.export.airflow import airflow_cron

    start = datetime(2026, 12, 2, 3, 7, tzinfo=UTC)
    crons = {g: airflow_cron(Trigger(name="t", type="scheduled", schedule=g, actions=[{"job": "x"}]))[0]
             for g in GLUE_CRONS}
    code = ("import json, sys\nfrom datetime import datetime, timezone\nfrom croniter import croniter\n"
            "out = {}\nfor g, c in json.loads(sys.argv[1]).items():\n"
            "    it = croniter(c, datetime(2026, 12, 2, 3, 7, tzinfo=timezone.utc))\n"
            "    out[g] = [it.get_next(datetime).isoformat() for _ in range(6)]\nprint(json.dumps(out))")
    r = subprocess.run([str(AIRFLOW_PY), "-c", code, json.dumps(crons)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    airflow = json.loads(r.stdout)
    for g in GLUE_CRONS:
        glue, t = [], start
        for _ in range(6):
            t = next_fire(g, t)
            glue.append(t.isoformat())
        assert airflow[g] == glue, (g, crons[g])


def _tables(proj: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for table, order in (("curated.trips", "trip_id"), ("curated.zones", "zone_id"),
                         ("marts.trip_stats", "pickup_date, region")):
        q = etl(proj, "query", f"SELECT * FROM {table} ORDER BY {order}", "--json")
        assert q.returncode == 0, q.stderr[-2000:]
        rows = json.loads(q.stdout)
        assert rows, f"{table} is empty"
        out[table] = rows
    return out


def test_local_dag_run_equals_etl_workflow_run(tmp_path: Path, project: Path, airflow_home: Path) -> None:
    import shutil

    gen = [sys.executable, str(REPO / "scripts" / "generate_data.py"), "--rows", "400", "--files", "2", "--days",
           "2", "--out", "data/raw"]
    other = tmp_path / "by_etl"
    shutil.copytree(project, other)
    for p in (project, other):
        assert subprocess.run(gen, cwd=p, capture_output=True, check=False).returncode == 0

    # the reference run by the framework's own engine, while Airflow runs the DAG
    e = {**os.environ, "PYTHONPATH": str(REPO), "ETL_QUIET": "1"}
    e.pop("ETL_PROJECT_DIR", None)
    ref = subprocess.Popen([sys.executable, "-c", "from etl_framework.cli import main; main()", "workflow", "run",
                            "jobs/nightly_trips.yaml"], cwd=other, env=e, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    folder = export(project, "local", "airflow")
    run = probe(airflow_home, "test", str(folder), "nightly_trips")
    _, ref_err = ref.communicate(timeout=900)
    assert ref.returncode == 0, ref_err[-3000:]
    assert run["state"] == "success", run
    states = {k: v["state"] for k, v in run["tasks"].items()}
    assert states == dict.fromkeys(("crawler_raw_trips", "job_zones_load", "job_trips_clean", "job_trip_stats"),
                                   "success")
    ti = run["tasks"]
    assert ti["job_trip_stats"]["start"] >= max(ti["job_zones_load"]["end"], ti["job_trips_clean"]["end"])
    assert min(ti["job_zones_load"]["start"], ti["job_trips_clean"]["start"]) >= ti["crawler_raw_trips"]["end"]

    assert _tables(project) == _tables(other)
    # each job run belongs to the DAG run (its run id) and saw the run properties
    runs = etl(project, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    records = json.loads(runs.stdout)
    assert {r["job"] for r in records} >= {"zones_load", "trips_clean", "trip_stats"}
    assert {r.get("workflow_run_id") for r in records if r["job"] in ("zones_load", "trip_stats")} == {run["run_id"]}


def test_cloud_dag_run_starts_every_glue_run_in_graph_order(cloud: dict[str, Any],  # noqa: F811
                                                            airflow_home: Path) -> None:
    root, g, p = cloud["root"], cloud["glue"], cloud["prefix"]
    r = deploy(cloud)
    assert r.returncode == 0, r.stderr
    folder = export(root, "prod", "airflow", **CREDS)
    # moto finishes a crawl only when told to (its default "manual" progression): make crawls end at once, as its
    # Glue job runs do
    body = json.dumps({"model_name": "glue::crawl", "transition": {"progression": "immediate"}}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{cloud['url']}/moto-api/state-manager/set-transition",
                                                  data=body, method="POST"))
    run = probe(airflow_home, "test", str(folder), "nightly_trips", AWS_ENDPOINT_URL=cloud["url"],
                ETL_AIRFLOW_POLL_SECONDS="1", AIRFLOW_CONN_AWS_DEFAULT='{"conn_type": "aws"}', **CREDS)
    assert run["state"] == "success", run
    ti = run["tasks"]
    assert {k: v["state"] for k, v in ti.items()} == dict.fromkeys(
        ("crawler_raw_trips", "job_zones_load", "job_trips_clean", "job_trip_stats"), "success")

    started = {}
    for job in ("zones_load", "trips_clean", "trip_stats"):
        job_runs = g.get_job_runs(JobName=p + job)["JobRuns"]
        assert len(job_runs) == 1, job_runs  # one Glue job run per job, as the workflow run starts it once
        jr = job_runs[0]
        assert jr["Arguments"]["--WORKFLOW_RUN_ID"] == run["run_id"]
        assert json.loads(jr["Arguments"]["--RUN_PROPERTIES"]) == {"region": "eu"}
        started[job] = jr["StartedOn"]
    assert g.get_job_runs(JobName=p + "trips_clean")["JobRuns"][0]["Arguments"]["--min_distance"] == "0.1"
    crawl = g.get_crawler(Name=p + "raw_trips")["Crawler"]["LastCrawl"]
    # the order the graph allows: the crawler first, trip_stats after both curated jobs
    assert crawl["StartTime"] <= min(started["zones_load"], started["trips_clean"])
    assert started["trip_stats"] >= max(started["zones_load"], started["trips_clean"])
    assert ti["job_trip_stats"]["start"] >= max(ti["job_zones_load"]["end"], ti["job_trips_clean"]["end"])
