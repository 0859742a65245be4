"""`WorkflowGraph` is the one model of a workflow's graph and `TRIGGER_KINDS` the one place per trigger type: the
graph answers, and every caller (validate, the engine, the scheduler, `etl plan`, the report, both deploy targets,
`etl export airflow`) goes through it — no other module branches on a trigger type or walks conditions."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from etl_framework.config.model import WorkflowConfig
from etl_framework.workflow_graph import TRIGGER_KINDS, WorkflowGraph, compare, layered

PKG = Path(__file__).resolve().parents[2] / "etl_framework"
GRAPH_MODULE = PKG / "workflow_graph.py"
TRIGGER_TYPES = set(TRIGGER_KINDS)


def wf(triggers: list[dict[str, Any]], jobs: tuple[str, ...] = ("a", "b", "c", "d"), crawlers: tuple[str, ...] = ()
       ) -> WorkflowConfig:
    return WorkflowConfig(workflow="w", jobs={j: f"{j}.yaml" for j in jobs},
                          crawlers={c: {"path": "/x", "database": "raw"} for c in crawlers}, triggers=triggers)


def cond(name: str, logical: str, conds: list[tuple[str, str]], actions: list[str]) -> dict[str, Any]:
    return {"name": name, "type": "conditional", "logical": logical,
            "conditions": [{"job": n, "state": s} for n, s in conds], "actions": [{"job": a} for a in actions]}


DIAMOND = wf([
    {"name": "start", "type": "on_demand", "actions": [{"job": "a"}]},
    cond("fan", "and", [("a", "SUCCEEDED")], ["b", "c"]),
    cond("join", "and", [("b", "SUCCEEDED"), ("c", "SUCCEEDED")], ["d"]),
])


def test_starters_edges_downstream_levels() -> None:
    g = WorkflowGraph(DIAMOND)
    assert [t.name for t in g.starters()] == ["start"]
    assert [t.name for t in g.in_run()] == ["fan", "join"]
    assert g.conditions_between("b", "d") == [("join", "SUCCEEDED")]
    assert g.downstream({"b"}) == {"b", "d"}
    assert g.levels() == [["a"], ["b", "c"], ["d"]]
    assert g.cycles() == []
    assert g.reachable().reached == {"a", "b", "c", "d"}


def test_any_join_slots_after_each_watched_node() -> None:
    """`any` keeps Glue's semantics in waves: the node has a slot after each watched node's wave."""
    g = WorkflowGraph(wf([
        {"name": "start", "type": "on_demand", "actions": [{"job": "a"}]},
        cond("next", "and", [("a", "SUCCEEDED")], ["b"]),
        cond("either", "any", [("a", "FAILED"), ("b", "SUCCEEDED")], ["c"]),
    ]))
    waves, last = g.waves()
    assert [[n for n, _ in w] for w in waves] == [["a"], ["b", "c"], ["c"]]
    assert last == {"a": 0, "b": 1, "c": 2}


def test_cycles_and_unreachable_triggers() -> None:
    g = WorkflowGraph(wf([
        {"name": "start", "type": "on_demand", "actions": [{"job": "a"}]},
        cond("x", "and", [("a", "SUCCEEDED"), ("c", "SUCCEEDED")], ["b"]),
        cond("y", "and", [("b", "SUCCEEDED")], ["c"]),
    ]))
    assert [c.nodes for c in g.cycles()] == [["b", "c", "b"]]
    assert g.reachable().reached == {"a"}


def test_property_conditions_compare_numbers_and_say_why() -> None:
    from etl_framework.config.model import Condition

    c = Condition(property="auc", op=">=", value=0.8)
    assert compare(c, {"auc": "0.91"}).holds
    assert not compare(c, {"auc": 0.5}).holds
    missing = compare(c, {})
    assert not missing.holds and not missing.error and "not set" in missing.why
    bad = compare(c, {"auc": "high"})
    assert not bad.holds and bad.error and "not a number" in bad.why
    assert compare(Condition(property="mode", op="==", value="full"), {"mode": "full"}).holds


def test_layered_is_the_report_layout() -> None:
    assert layered(["a", "t", "b"], [("a", "t"), ("t", "b")]) == [["a"], ["t"], ["b"]]


def test_every_trigger_type_has_one_kind_with_all_its_facets() -> None:
    from etl_framework.config.model import Trigger

    literal = Trigger.model_fields["type"].annotation.__args__  # type: ignore[union-attr]
    assert set(literal) == TRIGGER_TYPES
    for k in TRIGGER_KINDS.values():
        assert k.glue_type and (k.sfn_starter() is None) == (not k.starts_run)
        assert k.airflow and (k.airflow == "trigger_rule") == (not k.starts_run)


# ------------------------------------------------------------------------------------------- the only walker

TRIGGER_FIELDS = {"logical", "conditions"}


def _offenders(path: Path, fields: bool = True) -> list[str]:
    """Comparisons with a trigger type name, and (`fields`) reads of a trigger's `.logical` / `.conditions`."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            consts = [c for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
            tuples = [e for c in node.comparators if isinstance(c, ast.Tuple | ast.Set | ast.List) for e in c.elts
                      if isinstance(e, ast.Constant)]
            names = {c.value for c in consts + tuples}
            attrs = [n for n in ast.walk(node) if isinstance(n, ast.Attribute) and n.attr == "type"]
            if names & TRIGGER_TYPES and attrs:
                out.append(f"{path.name}:{node.lineno}: compares .type with a trigger type")
        if fields and isinstance(node, ast.Attribute) and node.attr in TRIGGER_FIELDS and isinstance(
                node.ctx, ast.Load):
            out.append(f"{path.name}:{node.lineno}: reads .{node.attr}")
    return out


def test_no_module_but_the_graph_branches_on_trigger_types_or_walks_conditions() -> None:
    asl = PKG / "deploy" / "asl.py"  # reads conditions to write them as Choice rules, but never branches on types
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path == GRAPH_MODULE or path.parent.name == "quality" or "config/gx_registry" in path.as_posix():
            continue
        offenders += [f"{path.relative_to(PKG)}: {o}" for o in _offenders(path, fields=path != asl)]
    assert offenders == []


@pytest.mark.parametrize("caller", ["validate", "engine", "scheduler", "plan", "report", "glue_deploy",
                                    "step_functions", "airflow"])
def test_every_caller_asks_the_graph(caller: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each caller builds a WorkflowGraph (spied) to answer its graph questions."""
    import etl_framework.workflow_graph as wg

    built: list[str] = []
    real_init = wg.WorkflowGraph.__init__

    def spy(self: Any, config: Any) -> None:
        built.append(config.workflow)
        real_init(self, config)

    monkeypatch.setattr(wg.WorkflowGraph, "__init__", spy)
    if caller == "validate":
        from etl_framework.config.load import load_workflow
        from etl_framework.config.project import Project

        root = PKG.parent
        load_workflow(root / "jobs" / "nightly_trips.yaml", Project(root), "local")
    elif caller == "engine":
        from etl_framework.engine.workflow import start_triggers

        start_triggers(DIAMOND)
    elif caller == "scheduler":
        from etl_framework.scheduler import service

        class Wf:
            name, config = "w", DIAMOND

        class Source:
            def refresh(self, log: Any) -> dict[str, Any]:
                return {"w": Wf()}

        svc = service.Scheduler.__new__(service.Scheduler)
        svc.source, svc.log, svc.notifier = Source(), lambda *a, **k: None, None
        svc._announce()
    elif caller == "plan":
        from etl_framework.graph import render

        render(DIAMOND, "text")
    elif caller == "report":
        from etl_framework.report.model import graph_from_config

        graph_from_config(DIAMOND)
    elif caller == "glue_deploy":
        from etl_framework.config.model import DeployConfig
        from etl_framework.deploy.spec import trigger_specs

        trigger_specs(DIAMOND, DeployConfig(s3_prefix="s3://b/p", role="arn:r"))
    elif caller == "airflow":
        from etl_framework.config.load import load_workflow
        from etl_framework.config.project import Project
        from etl_framework.export.airflow import plan_dag

        root = PKG.parent
        loaded = load_workflow(root / "jobs" / "nightly_trips.yaml", Project(root), "local")
        built.clear()  # validation asked the graph too: count only the export
        plan_dag(loaded, Project(root), "local", mode="local")
    else:
        from etl_framework.deploy.asl import state_machine

        state_machine(DIAMOND)
    assert "w" in built or "nightly_trips" in built
