"""Workflow engine overhead (issue 7, `make bench`): a synthetic 100-node workflow of trivial jobs on the inline
executor, in a throwaway project. Each job's config is really loaded and checked (as in every run); the job body
itself is a no-op whose own time is measured, so

    overhead per node = (wall time of the run - the jobs' own time) / nodes

is what the engine adds per node: config loading, trigger evaluation, thread start, and the run record's SQLite
writes. Nodes run one at a time (concurrency 1), in 10 layers of 10; every node of a layer waits (`and`) on all
nodes of the previous layer, so trigger evaluation is exercised with 10 conditions per trigger.

Usage: python scripts/bench_workflow.py [--nodes 100] [--layers 10]: prints one JSON line on stdout, exits 1 when the
overhead is above the target.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB = """job: {name}
sources:
  src: {{format: csv, path: ../data/in.csv, options: {{header: true}}}}
transform:
  - sql: SELECT * FROM src WHERE a > ${{params.min}}
target: {{format: delta, path: ../data/out/{name}}}
params: {{min: 0}}
"""


@dataclass
class _Result:
    run_id: str
    status: str
    error: str | None = None
    exit_code: int = 0


def build_project(root: Path, nodes: int, layers: int) -> Path:
    (root / "conf").mkdir(parents=True)
    (root / "conf" / "local.yaml").write_text("state: {path: ../.etl/state.db}\ncatalog: {path: ../.etl/catalog.db}\n")
    (root / "data").mkdir()
    (root / "data" / "in.csv").write_text("a\n1\n")
    jobs = root / "jobs"
    jobs.mkdir()
    names = [f"n{i:03d}" for i in range(nodes)]
    for n in names:
        (jobs / f"{n}.yaml").write_text(JOB.format(name=n))
    per = max(1, nodes // layers)
    groups = [names[i:i + per] for i in range(0, nodes, per)]
    lines = ["workflow: bench", "concurrency: 1", "jobs:"]
    lines += [f"  {n}: {n}.yaml" for n in names]
    lines += ["triggers:", "  - name: start", "    type: on_demand", "    actions:"]
    lines += [f"      - {{job: {n}, arguments: {{min: 0}}}}" for n in groups[0]]
    for i in range(1, len(groups)):
        lines += [f"  - name: layer{i}", "    type: conditional", "    logical: and", "    conditions:"]
        lines += [f"      - {{job: {n}, state: SUCCEEDED}}" for n in groups[i - 1]]
        lines += ["    actions:"] + [f"      - {{job: {n}}}" for n in groups[i]]
    wf = jobs / "bench.yaml"
    wf.write_text("\n".join(lines) + "\n")
    return wf


def run_bench(nodes: int = 100, layers: int = 10, progress: bool = False) -> dict[str, Any]:
    from etl_framework.config.load import load_workflow
    from etl_framework.config.project import Project
    from etl_framework.engine.executors import InlineExecutor
    from etl_framework.engine.workflow import WorkflowRun, build_node_specs
    from etl_framework.state.workflows import WorkflowStore

    own: list[float] = []

    def trivial_job(job_path: Any, **_kw: Any) -> _Result:
        t = time.perf_counter()
        result = _Result(run_id=f"jr_{Path(job_path).stem}", status="SUCCEEDED")
        own.append(time.perf_counter() - t)
        return result

    class NoSparkInline(InlineExecutor):
        def spark(self) -> Any:  # trivial jobs need no JVM: measure the engine, not Spark's start-up
            return _NoSpark()

    with tempfile.TemporaryDirectory(prefix="etl-bench-") as tmp:
        wf_path = build_project(Path(tmp) / "proj", nodes, layers)
        project = Project.discover(Path(tmp) / "proj")
        t_load = time.perf_counter()
        loaded = load_workflow(wf_path, project)
        load_s = time.perf_counter() - t_load
        store = WorkflowStore(project.env_config().state.path)
        executor = NoSparkInline(project, job_runner=trivial_job)
        run = WorkflowRun(loaded.config, build_node_specs(loaded.config, loaded.jobs, loaded.job_paths), store,
                          executor, progress=(lambda m: print(m, file=sys.stderr)) if progress else None)
        t0 = time.perf_counter()
        result = run.start()
        wall = time.perf_counter() - t0
        store.close()
    if not result.ok:
        raise SystemExit(f"bench run did not succeed: {result.statistics}")
    jobs_time = sum(own)
    return {
        "bench": "workflow_engine_overhead", "executor": "inline", "nodes": nodes, "layers": layers,
        "succeeded": result.statistics["SucceededActions"], "wall_s": round(wall, 3),
        "jobs_own_s": round(jobs_time, 4), "workflow_load_s": round(load_s, 3),
        "overhead_ms_per_node": round((wall - jobs_time) / nodes * 1000, 2), "target_ms_per_node": 50,
    }


class _NoSpark:
    class sparkContext:
        @staticmethod
        def setJobGroup(*_a: Any) -> None: ...

        @staticmethod
        def setLocalProperty(*_a: Any) -> None: ...

        @staticmethod
        def cancelJobGroup(*_a: Any) -> None: ...


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="workflow engine overhead per node (inline executor)")
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    r = run_bench(args.nodes, args.layers, args.progress)
    verdict = "OK" if r["overhead_ms_per_node"] < r["target_ms_per_node"] else "ABOVE TARGET"
    print(f"workflow engine: {r['nodes']} nodes in {r['wall_s']}s, jobs' own time {r['jobs_own_s']}s -> "
          f"overhead {r['overhead_ms_per_node']} ms/node (target < {r['target_ms_per_node']} ms: {verdict})",
          file=sys.stderr)
    print(json.dumps(r))
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
