"""Rendering of a workflow's graph (`etl plan`): triggers -> nodes, with the conditions that fire them, as text,
Mermaid or Graphviz DOT. `states` (node -> state, e.g. from a workflow run) colours the nodes, so that a run's
progress can be drawn with the same renderer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from etl_framework.config.model import Trigger, WorkflowConfig

FORMATS = ("text", "mermaid", "dot")
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
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def _kind(workflow: WorkflowConfig, node: str) -> str:
    return "crawler" if node in workflow.crawlers else "job"


def levels(workflow: WorkflowConfig) -> list[list[str]]:
    """Nodes in the order they can run: level 0 is started by start triggers, level n+1 by conditions on
    earlier levels (nodes that are never started are left out)."""
    level: dict[str, int] = {}
    for _ in range(len(workflow.jobs) + len(workflow.crawlers) + 2):  # bounded: cycles never settle
        new: dict[str, int] = {}
        for t in workflow.triggers:
            lv = 0
            if t.type == "conditional":
                watched = [level[c.node] for c in t.conditions if c.node in level]
                if not watched or (t.logical == "and" and len(watched) < len(t.conditions)):
                    continue
                lv = (max(watched) if t.logical == "and" else min(watched)) + 1
            for a in t.actions:
                new[a.node] = min(new.get(a.node, lv), lv)
        if new == level:
            break
        level = new
    out: list[list[str]] = []
    for node, lv in sorted(level.items(), key=lambda kv: (kv[1], kv[0])):
        while len(out) <= lv:
            out.append([])
        out[lv].append(node)
    return out


def _describe_trigger(t: Trigger, now: datetime | None, with_next: bool = True) -> str:
    if t.type == "on_demand":
        return "on demand"
    if t.type == "scheduled":
        text = f"scheduled {t.schedule}"
        if not with_next:
            return text
        try:
            from etl_framework.config.cron import next_fire

            nxt = next_fire(t.schedule or "", now or datetime.now(UTC))
            if nxt:
                text += f" (next {nxt:%Y-%m-%d %H:%M} UTC)"
        except ValueError:
            pass
        return text
    if t.type == "event":
        w = t.watch
        batch = f", batch {t.batch.size} files or {t.batch.window_seconds}s" if t.batch else ""
        return f"event: new files {w.pattern} under {w.path}{batch}" if w else "event"
    joiner = " and " if t.logical == "and" else " or "
    return "when " + joiner.join(f"{c.node} {c.state}" for c in t.conditions)


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
            lines.append(f"    -> {_kind(workflow, a.node)} {a.node}{_args(a.arguments)}{state}")
    lines.append("")
    lines.append("run order:")
    for i, group in enumerate(levels(workflow), start=1):
        nodes = ", ".join(
            f"{_kind(workflow, n)} {n}" + (f" [{states[n]}]" if n in states else "") for n in group
        )
        lines.append(f"  {i}. {nodes}")
    never = sorted((set(workflow.jobs) | set(workflow.crawlers)) - {n for g in levels(workflow) for n in g})
    if never:
        lines.append(f"  never started: {', '.join(never)}")
    return "\n".join(lines) + "\n"


def _mid(name: str, prefix: str) -> str:
    return prefix + "_" + "".join(c if c.isalnum() else "_" for c in name)


def render_mermaid(workflow: WorkflowConfig, states: dict[str, str] | None = None) -> str:
    states = states or {}
    out = ["flowchart LR"]
    for name in workflow.crawlers:
        label = name + (f"<br/>{states[name]}" if name in states else "")
        out.append(f'  {_mid(name, "c")}(["crawler: {label}"])')
    for name in workflow.jobs:
        label = name + (f"<br/>{states[name]}" if name in states else "")
        out.append(f'  {_mid(name, "j")}["job: {label}"]')
    for t in workflow.triggers:
        tid = _mid(t.name, "t")
        desc = _describe_trigger(t, None, with_next=False).replace('"', "'")
        if t.type == "conditional":
            desc = f"{t.logical.upper()}"
        out.append(f'  {tid}{{{{"{t.name}: {desc}"}}}}')
        for c in t.conditions:
            src = _mid(c.node, "c" if _kind(workflow, c.node) == "crawler" else "j")
            out.append(f"  {src} -- {c.state} --> {tid}")
        for a in t.actions:
            dst = _mid(a.node, "c" if _kind(workflow, a.node) == "crawler" else "j")
            label = _args(a.arguments).strip(" ()").replace('"', "'")
            out.append(f'  {tid} -- "{label}" --> {dst}' if label else f"  {tid} --> {dst}")
    used = sorted({s for s in states.values() if s in STATE_COLORS})
    for s in used:
        out.append(f"  classDef {s.lower()} fill:{STATE_COLORS[s]}")
    for node, s in states.items():
        if s in STATE_COLORS and (node in workflow.jobs or node in workflow.crawlers):
            out.append(f"  class {_mid(node, 'c' if _kind(workflow, node) == 'crawler' else 'j')} {s.lower()}")
    return "\n".join(out) + "\n"


def _dq(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(workflow: WorkflowConfig, states: dict[str, str] | None = None) -> str:
    states = states or {}
    out = [f"digraph {_dq(workflow.workflow)} {{", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for name in list(workflow.crawlers) + list(workflow.jobs):
        kind = _kind(workflow, name)
        attrs = [f"label={_dq(f'{kind}: {name}' + (chr(10) + states[name] if name in states else ''))}",
                 "shape=" + ("cylinder" if kind == "crawler" else "box")]
        if states.get(name) in STATE_COLORS:
            attrs += ["style=filled", f"fillcolor={_dq(STATE_COLORS[states[name]])}"]
        out.append(f"  {_dq(kind + ':' + name)} [{', '.join(attrs)}];")
    for t in workflow.triggers:
        desc = t.logical.upper() if t.type == "conditional" else _describe_trigger(t, None, with_next=False)
        out.append(f"  {_dq('trigger:' + t.name)} [label={_dq(t.name + chr(10) + desc)}, shape=hexagon"
                   + ("" if t.enabled else ", style=dashed") + "];")
        for c in t.conditions:
            out.append(f"  {_dq(_kind(workflow, c.node) + ':' + c.node)} -> {_dq('trigger:' + t.name)} "
                       f"[label={_dq(c.state)}];")
        for a in t.actions:
            label = _args(a.arguments).strip(" ()")
            attr = f" [label={_dq(label)}]" if label else ""
            out.append(f"  {_dq('trigger:' + t.name)} -> {_dq(_kind(workflow, a.node) + ':' + a.node)}{attr};")
    out.append("}")
    return "\n".join(out) + "\n"
