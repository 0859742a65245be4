"""Run by the tests with the Python of `.airflow-venv` (the real Apache Airflow), never imported by pytest itself:

    python airflow_probe.py load DAG_FOLDER            # JSON: import errors, parse time, each DAG's tasks and schedule
    python airflow_probe.py test DAG_FOLDER DAG_ID     # dag.test(): JSON of each task's state and start/end times
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _bag(folder: str) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3
    except ImportError:  # Airflow 2.10
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=folder)


def _seconds(td: Any) -> float | None:
    return None if td is None else td.total_seconds()


def _schedule(dag: Any) -> dict[str, Any]:
    tt = dag.timetable
    inner = getattr(tt, "timetable", None) or tt  # AssetOrTimeSchedule wraps a timetable
    cron = getattr(inner, "expression", None) or getattr(inner, "_expression", None)
    tz = getattr(inner, "timezone", None) or getattr(inner, "_timezone", None)
    assets = []
    cond = getattr(tt, "asset_condition", None) or getattr(tt, "dataset_condition", None)  # Airflow 3 / 2.10
    if cond is not None:
        for a in getattr(cond, "objects", None) or [cond]:
            uri = getattr(a, "uri", None)
            if uri:
                assets.append(uri)
    return {"timetable": type(tt).__name__, "cron": cron, "timezone": str(tz) if tz else None, "assets": assets}


def load(folder: str) -> dict[str, Any]:
    t0 = time.monotonic()
    bag = _bag(folder)
    took = time.monotonic() - t0
    t0 = time.monotonic()
    _bag(folder)  # again, Airflow's own imports done: what parsing the DAG files costs the scheduler
    warm = time.monotonic() - t0
    dags = {}
    for dag_id, dag in bag.dags.items():
        tasks = {}
        for t in dag.tasks:
            tasks[t.task_id] = {
                "operator": type(t).__name__, "upstream": sorted(t.upstream_task_ids),
                "trigger_rule": str(getattr(t.trigger_rule, "value", t.trigger_rule)), "retries": t.retries,
                "retry_delay": _seconds(t.retry_delay), "retry_exponential_backoff": t.retry_exponential_backoff,
                "execution_timeout": _seconds(t.execution_timeout),
                "deferrable": getattr(t, "deferrable", None),
                "job_name": getattr(t, "job_name", None), "script_args": getattr(t, "script_args", None),
                "crawler_name": getattr(t, "crawler_name", None), "bash_command": getattr(t, "bash_command", None),
            }
        dags[dag_id] = {"tasks": tasks, "schedule": _schedule(dag), "max_active_runs": dag.max_active_runs,
                        "max_active_tasks": dag.max_active_tasks, "params": {k: dag.params[k] for k in dag.params},
                        "catchup": dag.catchup, "fileloc": dag.fileloc}
    return {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "seconds": took, "seconds_warm": warm,
            "dags": dags}


def test(folder: str, dag_id: str) -> dict[str, Any]:
    dag = _bag(folder).dags[dag_id]
    dr = dag.test()
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id,
                                                 TaskInstance.run_id == dr.run_id).all()
        out = {ti.task_id: {"state": str(getattr(ti.state, "value", ti.state)),
                            "start": ti.start_date.isoformat() if ti.start_date else None,
                            "end": ti.end_date.isoformat() if ti.end_date else None,
                            "try_number": ti.try_number} for ti in tis}
    return {"run_id": dr.run_id, "state": str(getattr(dr.state, "value", dr.state)), "tasks": out}


if __name__ == "__main__":
    cmd = sys.argv[1]
    result = load(sys.argv[2]) if cmd == "load" else test(sys.argv[2], sys.argv[3])
    sys.stdout.write("\n@@PROBE@@" + json.dumps(result, default=str) + "\n")
