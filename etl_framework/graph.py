"""Rendering of a workflow's graph (`etl plan`): triggers -> nodes, with the conditions that fire them, as text,
Mermaid or Graphviz DOT. `states` (node -> state, e.g. from a workflow run) colours the nodes, so that a run's
progress can be drawn with the same renderer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from etl_framework.config.model import Trigger, WorkflowConfig
from etl_framework.workflow_graph import WorkflowGraph, kind_of

FORMATS = ("text", "mermaid", "dot", "asl")
STATE_COLORS = {
    "SUCCEEDED": "#c8e6c9", "RUNNING": "#bbdefb", "STARTING": "#bbdefb", "FAILED": "#ffcdd2", "ERROR": "#ffcdd2",
    "TIMEOUT": "#ffe0b2", "STOPPED": "#e0e0e0", "CANCELLED": "#e0e0e0", "WAITING": "#fff9c4",
}


def render(workflow: WorkflowConfig, fmt: str = "text", states: dict[str, str] | None = None,
           now: datetime | None = None) -> str:
    if fmt == "text":
        return render_text(workflow, states, now)
    if fmt == "mermaid":
        return render_mermaid(workflow, states)
    if fmt == "dot":
        return render_dot(workflow, states)
    if fmt == "asl":
        import json

        from etl_framework.deploy.asl import state_machine

        return json.dumps(state_machine(workflow), indent=2) + "\n"
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def _kind(workflow: WorkflowConfig, node: str) -> str:
    return WorkflowGraph(workflow).kind(node)


def _show(workflow: WorkflowConfig, node: str) -> str:
    """`job load`, `crawler raw`; a maintain node is its own name (`maintain:load`)."""
    kind = _kind(workflow, node)
    return node if kind == "maintain" else f"{kind} {node}"


def _prefix(workflow: WorkflowConfig, node: str) -> str:
    return {"crawler": "c", "maintain": "m"}.get(_kind(workflow, node), "j")


def levels(workflow: WorkflowConfig) -> list[list[str]]:
    """Nodes in the order they can run (`WorkflowGraph.levels`)."""
    return WorkflowGraph(workflow).levels()


def _describe_trigger(t: Trigger, now: datetime | None, with_next: bool = True) -> str:
    return kind_of(t).describe(t, now, with_next)


def _args(arguments: dict[str, Any]) -> str:
    return " (" + ", ".join(f"{k}={v}" for k, v in arguments.items()) + ")" if arguments else ""


def render_text(workflow: WorkflowConfig, states: dict[str, str] | None = None,
                now: datetime | None = None) -> str:
    states = states or {}
    lines = [f"workflow {workflow.workflow}"
             + (f" — {workflow.description}" if workflow.description else "")]
    extra = [f"executor {workflow.executor}", f"concurrency {workflow.concurrency}"]
    if workflow.max_concurrent_runs:
        extra.append(f"max {workflow.max_concurrent_runs} concurrent run(s)")
    if workflow.run_properties:
        extra.append("run properties " + ", ".join(f"{k}={v}" for k, v in workflow.run_properties.items()))
    lines.append("  " + "; ".join(extra))
    lines.append("")
    lines.append("triggers:")
    for t in workflow.triggers:
        off = "" if t.enabled else " [disabled]"
        lines.append(f"  {t.name}{off}: {_describe_trigger(t, now)}")
        for a in t.actions:
            state = f"  [{states[a.node]}]" if a.node in states else ""
            lines.append(f"    -> {_show(workflow, a.node)}{_args(a.arguments or a.maintain_options())}{state}")
    lines.append("")
    lines.append("run order:")
    for i, group in enumerate(levels(workflow), start=1):
        nodes = ", ".join(
            _show(workflow, n) + (f" [{states[n]}]" if n in states else "") for n in group
        )
        lines.append(f"  {i}. {nodes}")
    never = sorted(set(WorkflowGraph(workflow).nodes) - {n for g in levels(workflow) for n in g})
    if never:
        lines.append(f"  never started: {', '.join(never)}")
    return "\n".join(lines) + "\n"


def _mid(name: str, prefix: str) -> str:
    return prefix + "_" + "".join(c if c.isalnum() else "_" for c in name)


def render_mermaid(workflow: WorkflowConfig, states: dict[str, str] | None = None) -> str:
    states = states or {}
    graph = WorkflowGraph(workflow)
    out = ["flowchart LR"]
    for name in workflow.crawlers:
        label = name + (f"<br/>{states[name]}" if name in states else "")
        out.append(f'  {_mid(name, "c")}(["crawler: {label}"])')
    for name in workflow.jobs:
        label = name + (f"<br/>{states[name]}" if name in states else "")
        out.append(f'  {_mid(name, "j")}["job: {label}"]')
    for name, job in graph.maintain_nodes().items():
        label = job + (f"<br/>{states[name]}" if name in states else "")
        out.append(f'  {_mid(name, "m")}[["maintain: {label}"]]')
    for t in workflow.triggers:
        tid = _mid(t.name, "t")
        desc = kind_of(t).label(t).replace('"', "'")
        out.append(f'  {tid}{{{{"{t.name}: {desc}"}}}}')
        for c in graph.node_conditions(t):
            src = _mid(c.node, _prefix(workflow, c.node))
            out.append(f"  {src} -- {c.state} --> {tid}")
        for a in t.actions:
            dst = _mid(a.node, _prefix(workflow, a.node))
            label = _args(a.arguments or a.maintain_options()).strip(" ()").replace('"', "'")
            out.append(f'  {tid} -- "{label}" --> {dst}' if label else f"  {tid} --> {dst}")
    used = sorted({s for s in states.values() if s in STATE_COLORS})
    for s in used:
        out.append(f"  classDef {s.lower()} fill:{STATE_COLORS[s]}")
    for node, s in states.items():
        if s in STATE_COLORS and node in graph.nodes:
            out.append(f"  class {_mid(node, _prefix(workflow, node))} {s.lower()}")
    return "\n".join(out) + "\n"


def _dq(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(workflow: WorkflowConfig, states: dict[str, str] | None = None) -> str:
    states = states or {}
    graph = WorkflowGraph(workflow)
    out = [f"digraph {_dq(workflow.workflow)} {{", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for name in list(workflow.crawlers) + list(workflow.jobs) + list(graph.maintain_nodes()):
        kind = _kind(workflow, name)
        shown = name if kind == "maintain" else f"{kind}: {name}"
        attrs = [f"label={_dq(shown + (chr(10) + states[name] if name in states else ''))}",
                 "shape=" + {"crawler": "cylinder", "maintain": "component"}.get(kind, "box")]
        if states.get(name) in STATE_COLORS:
            attrs += ["style=filled", f"fillcolor={_dq(STATE_COLORS[states[name]])}"]
        out.append(f"  {_dq(kind + ':' + name)} [{', '.join(attrs)}];")
    for t in workflow.triggers:
        desc = kind_of(t).label(t)
        out.append(f"  {_dq('trigger:' + t.name)} [label={_dq(t.name + chr(10) + desc)}, shape=hexagon"
                   + ("" if t.enabled else ", style=dashed") + "];")
        for c in graph.node_conditions(t):
            out.append(f"  {_dq(_kind(workflow, c.node) + ':' + c.node)} -> {_dq('trigger:' + t.name)} "
                       f"[label={_dq(c.state)}];")
        for a in t.actions:
            label = _args(a.arguments or a.maintain_options()).strip(" ()")
            attr = f" [label={_dq(label)}]" if label else ""
            out.append(f"  {_dq('trigger:' + t.name)} -> {_dq(_kind(workflow, a.node) + ':' + a.node)}{attr};")
    out.append("}")
    return "\n".join(out) + "\n"
