"""The one model of a workflow's graph, and the one place per trigger type (SPEC §7, §12).

`WorkflowGraph` is built from a `WorkflowConfig` and answers every graph question the framework asks: which triggers
start a run (`starters`), which triggers fire inside a run (`in_run`), the edges watched node -> started node with the
condition of each (`edges`, `conditions_between`), what is `downstream` of some nodes (resume), the run order
(`levels`), which triggers can ever fire (`reachable`), `cycles`, whether a trigger's conditions hold for given node
states and run properties (`evaluate`), and the layered drawing of any node/edge graph (`layered`, for the HTML report).
Validation, the engine, the scheduler, `etl plan`, the report, both deploy targets (Glue Workflows and Step
Functions) and `etl export airflow` use it; nothing else walks the graph.

`TRIGGER_KINDS` holds one `TriggerKind` per trigger type: its description, its checks, its Glue `CreateTrigger`
fields, how Step Functions starts a run for it, how an Airflow DAG expresses it, and the scheduler source that fires
it locally.

Importable in milliseconds (no pydantic model import at module level, no AWS, no Spark).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etl_framework.config.model import Condition, Trigger, WorkflowConfig

OPS = (">=", ">", "<=", "<", "==", "!=")
NUMERIC_OPS = (">=", ">", "<=", "<")
MAINTAIN_PREFIX = "maintain:"  # a maintain node's name: `maintain:JOB` (':' is in no job or crawler name)


def maintain_node(job: str) -> str:
    """The node of a `maintain: JOB` action (and of `{maintain: JOB, state: ...}` conditions)."""
    return MAINTAIN_PREFIX + job


def maintained_job(node: str) -> str | None:
    """The job whose tables a maintain node maintains; None for a job or crawler node."""
    return node[len(MAINTAIN_PREFIX):] if node.startswith(MAINTAIN_PREFIX) else None


# ------------------------------------------------------------------------------------------------ trigger kinds


@dataclass(frozen=True)
class TriggerKind:
    """Everything that depends on a trigger's `type`."""

    name: str
    glue_type: str
    starts_run: bool  # a start trigger (on demand, schedule, event) rather than one that fires inside a run
    needs: str | None = None  # the field this type requires (and only it may have)
    scheduler_source: str | None = None  # what `etl scheduler` watches for it: "schedule" | "event" | None
    run_properties: tuple[str, ...] = ()  # run properties the scheduler sets on the runs it starts
    glue_activated: bool = True  # Glue activates it after creation (on-demand and event triggers cannot be)
    # which start trigger becomes a Glue workflow's one start trigger when the YAML has several (lowest first):
    # the event trigger (Glue batches its events), then a schedule, then on demand (see WorkflowGraph.glue_start)
    glue_start_rank: int = 9
    # how an Airflow DAG expresses it: "manual" (a manual DAG run), "timetable" (the DAG's cron), "asset" (an Asset
    # / Dataset schedule), "trigger_rule" (trigger rules on the tasks it starts)
    airflow: str = ""

    # -- description ---------------------------------------------------------------------------------------
    def describe(self, t: Trigger, now: datetime | None = None, with_next: bool = True) -> str:
        if self.name == "on_demand":
            return "on demand"
        if self.name == "scheduled":
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
        if self.name == "event":
            w = t.watch
            batch = f", batch {t.batch.size} files or {t.batch.window_seconds}s" if t.batch else ""
            return f"event: new files {w.pattern} under {w.path}{batch}" if w else "event"
        joiner = " and " if t.logical == "and" else " or "
        return "when " + joiner.join(describe_condition(c) for c in t.conditions)

    def label(self, t: Trigger) -> str:
        """Short label for graph drawings: the join of a conditional trigger, else the description."""
        if self.starts_run:
            return self.describe(t, None, with_next=False)
        props = [describe_condition(c) for c in t.conditions if is_property(c)]
        return t.logical.upper() + (" " + ", ".join(props) if props else "")

    def detail(self, t: Trigger) -> str:
        """The report's trigger detail: `conditional (and)`, `scheduled`..."""
        return self.name.replace("_", "-") + ("" if self.starts_run else f" ({t.logical})")

    # -- checks ----------------------------------------------------------------------------------------------
    def check_fields(self, t: Trigger) -> str | None:
        """The model-level check: the type's own field is there, no other type's field is."""
        for kind in TRIGGER_KINDS.values():
            key = kind.needs
            if key is None:
                continue
            if kind.name == self.name and not getattr(t, key):
                return f"a {kind.name} trigger needs '{key}'"
            if kind.name != self.name and getattr(t, key):
                return f"'{key}' is only for {kind.name} triggers"
        if t.batch and self.name != "event":
            return "'batch' is only for event triggers"
        return None

    def check(self, t: Trigger) -> list[tuple[tuple[Any, ...], str, int]]:
        """Semantic checks: (path inside the trigger, message, offset in the scalar)."""
        out: list[tuple[tuple[Any, ...], str, int]] = []
        if self.name == "scheduled" and t.schedule is not None:
            from etl_framework.config.cron import CronError, parse

            try:
                parse(t.schedule)
            except CronError as e:
                out.append((("schedule",), f"trigger '{t.name}': invalid schedule: {e}", e.offset))
        return out

    # -- Glue Workflows --------------------------------------------------------------------------------------
    def glue_fields(self, t: Trigger, prefix: str, crawlers: set[str]) -> dict[str, Any]:
        """The type-specific fields of Glue's CreateTrigger."""
        if self.name == "scheduled":
            return {"Schedule": t.schedule}
        if self.name == "event":
            b = t.batch
            return {"EventBatchingCondition": {"BatchSize": b.size if b else 1,
                                               "BatchWindow": b.window_seconds if b else 900}}
        if self.name == "conditional":
            conds = []
            for c in t.conditions:
                if c.crawler or c.node in crawlers:
                    conds.append({"LogicalOperator": "EQUALS", "CrawlerName": prefix + c.node, "CrawlState": c.state})
                else:
                    conds.append({"LogicalOperator": "EQUALS", "JobName": prefix + c.node, "State": c.state})
            return {"Predicate": {"Logical": "AND" if t.logical == "and" else "ANY", "Conditions": conds}}
        return {}

    # -- Step Functions --------------------------------------------------------------------------------------
    def sfn_starter(self) -> str | None:
        """What starts a state machine execution for this trigger on AWS: `StartExecution` by hand (on demand),
        an EventBridge Scheduler `schedule`, an EventBridge `event_rule`; None inside the state machine."""
        return {"on_demand": "start_execution", "scheduled": "schedule", "event": "event_rule"}.get(self.name)

    # -- Airflow ---------------------------------------------------------------------------------------------
    def airflow_rule(self, t: Trigger, state_class: str) -> str:
        """The Airflow trigger rule of a conditional trigger whose node conditions all wait for one class of state
        ("ok": SUCCEEDED, "failed": FAILED/TIMEOUT/STOPPED/CANCELLED): `and` -> all_*, `any` -> one_*."""
        if self.airflow != "trigger_rule":
            raise ValueError(f"a {self.name} trigger has no trigger rule")
        return ("all_" if t.logical == "and" else "one_") + ("success" if state_class == "ok" else "failed")


TRIGGER_KINDS: dict[str, TriggerKind] = {
    k.name: k for k in (
        TriggerKind("on_demand", "ON_DEMAND", starts_run=True, glue_activated=False, airflow="manual",
                    glue_start_rank=2),
        TriggerKind("scheduled", "SCHEDULED", starts_run=True, needs="schedule", scheduler_source="schedule",
                    run_properties=("scheduled_time",), airflow="timetable", glue_start_rank=1),
        TriggerKind("conditional", "CONDITIONAL", starts_run=False, needs="conditions", airflow="trigger_rule"),
        # Glue refuses to start an EVENT trigger ("Trigger Type EVENT cannot be started"; it stays CREATED and
        # StartOnCreation must be false): its EventBridge rule's state is what turns it on or off
        TriggerKind("event", "EVENT", starts_run=True, needs="watch", scheduler_source="event", glue_activated=False,
                    run_properties=("event_files", "event_batch_id", "event_trigger"), airflow="asset",
                    glue_start_rank=0),
    )
}


def kind_of(t: Trigger | str) -> TriggerKind:
    return TRIGGER_KINDS[t if isinstance(t, str) else t.type]


def run_properties_of(types: Iterable[str]) -> tuple[str, ...]:
    """Run properties set by the scheduler for triggers of these types (raw YAML types: unknown ones ignored)."""
    wanted = set(types)
    return tuple(p for name, kind in TRIGGER_KINDS.items() if name in wanted for p in kind.run_properties)


# ------------------------------------------------------------------------------------------------- conditions


def describe_condition(c: Condition) -> str:
    if getattr(c, "property", None):
        return f"run property {c.property} {c.op} {c.value!r}"
    return f"{c.node} {c.state}"


def is_property(c: Condition) -> bool:
    return bool(getattr(c, "property", None))


def as_number(value: Any) -> float | None:
    """A run property as a number (run properties are strings on Glue): None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


@dataclass
class Verdict:
    """How a condition (or a trigger) came out: `holds`, and why (for the run record)."""

    holds: bool
    why: str
    error: bool = False  # a runtime ERROR: a property that is not a number compared with >=, >, <=, <


def compare(c: Condition, properties: dict[str, Any]) -> Verdict:
    """A run-property condition against the run's properties."""
    name, op, want = c.property or "", c.op or "==", c.value
    if name not in properties:
        return Verdict(False, f"run property {name} is not set (needs {op} {want!r})")
    have = properties[name]
    if op in NUMERIC_OPS:
        a, b = as_number(have), as_number(want)
        if a is None or b is None:
            return Verdict(False, f"run property {name} = {have!r} is not a number (needs {op} {want!r})", True)
        ok = {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b}[op]
    else:
        a, b = as_number(have), as_number(want)
        same = (a == b) if a is not None and b is not None else str(have) == str(want)
        ok = same if op == "==" else not same
    return Verdict(ok, f"run property {name} = {have!r} {'meets' if ok else 'does not meet'} {op} {want!r}")


# ------------------------------------------------------------------------------------------------------ graph


@dataclass(frozen=True)
class Edge:
    """Watched node -> node started by the trigger watching it, with the state the condition waits for."""

    src: str
    dst: str
    trigger: str
    state: str


@dataclass
class Cycle:
    nodes: list[str]
    trigger_index: int


@dataclass
class Reach:
    fired: set[int] = field(default_factory=set)  # trigger indexes that can fire
    reached: set[str] = field(default_factory=set)  # nodes that can start


class WorkflowGraph:
    """The graph of one workflow. `config.triggers` may hold None for triggers that failed validation; they are
    left out (validation reports them)."""

    def __init__(self, config: WorkflowConfig) -> None:
        self.config = config
        self.name = getattr(config, "workflow", None) or "workflow"
        self.indexed: list[tuple[int, Trigger]] = [(i, t) for i, t in enumerate(config.triggers) if t is not None]
        self.triggers: list[Trigger] = [t for _, t in self.indexed]
        self.nodes: dict[str, str] = {**{n: "job" for n in config.jobs}, **{n: "crawler" for n in config.crawlers}}
        # maintain nodes exist through the actions that start them (`maintain: JOB` -> node `maintain:JOB`)
        self.nodes.update({a.node: "maintain" for t in self.triggers for a in t.actions if a.maintain})

    # -- nodes and triggers --------------------------------------------------------------------------------
    def kind(self, node: str) -> str:
        """"job", "crawler" or "maintain" (the maintenance of a job's tables)."""
        if node in self.config.crawlers:
            return "crawler"
        return "maintain" if maintained_job(node) is not None else "job"

    def maintain_nodes(self) -> dict[str, str]:
        """maintain node -> the job whose tables it maintains."""
        return {n: maintained_job(n) or "" for n, k in self.nodes.items() if k == "maintain"}

    def maintain_actions(self) -> list[tuple[int, int, Any]]:
        """(trigger index, action index, action) of every maintain action."""
        return [(i, j, a) for i, t in self.indexed for j, a in enumerate(t.actions) if a.maintain]

    def trigger(self, name: str) -> Trigger | None:
        return next((t for t in self.triggers if t.name == name), None)

    def starters(self, enabled_only: bool = False) -> list[Trigger]:
        """Triggers that start a run (on demand, scheduled, event)."""
        return [t for t in self.triggers if kind_of(t).starts_run and (t.enabled or not enabled_only)]

    def in_run(self, enabled_only: bool = True) -> list[Trigger]:
        """Triggers that fire inside a run (conditional)."""
        return [t for t in self.triggers if not kind_of(t).starts_run and (t.enabled or not enabled_only)]

    def on_demand(self) -> list[Trigger]:
        return [t for t in self.triggers if t.type == "on_demand" and t.enabled]

    def default_start(self) -> str:
        """The start trigger a run starts from when none is named: the first enabled on-demand one, else the first
        enabled start trigger ("" when there is none)."""
        starters = self.starters(enabled_only=True)
        return next((t.name for t in self.on_demand()), starters[0].name if starters else "")

    def scheduler_triggers(self) -> list[Trigger]:
        """The enabled triggers `etl scheduler` fires (scheduled and event triggers)."""
        return [t for t in self.triggers if t.enabled and kind_of(t).scheduler_source]

    def started_by(self) -> dict[str, list[int]]:
        """node -> indexes of the triggers that start it."""
        out: dict[str, list[int]] = {}
        for i, t in self.indexed:
            for a in t.actions:
                out.setdefault(a.node, []).append(i)
        return out

    # -- edges -----------------------------------------------------------------------------------------------
    def edges(self) -> list[Edge]:
        return [Edge(c.node, a.node, t.name, c.state or "") for t in self.triggers for c in t.conditions
                if not is_property(c) for a in t.actions]

    def conditions_between(self, src: str, dst: str) -> list[tuple[str, str]]:
        """(trigger, state) of every condition on `src` of a trigger that starts `dst`."""
        return [(e.trigger, e.state) for e in self.edges() if e.src == src and e.dst == dst]

    def each_condition(self) -> list[tuple[int, int, Trigger, Condition]]:
        """(trigger index, condition index, trigger, condition) of every condition."""
        return [(i, j, t, c) for i, t in self.indexed for j, c in enumerate(t.conditions)]

    def node_conditions(self, t: Trigger) -> list[Condition]:
        return [c for c in t.conditions if not is_property(c)]

    def property_conditions(self, t: Trigger) -> list[Condition]:
        return [c for c in t.conditions if is_property(c)]

    def join(self, t: Trigger) -> str:
        """How a conditional trigger joins its conditions: "and" (all) or "any" (one)."""
        return t.logical

    def watching(self, nodes: Iterable[str]) -> set[str]:
        """Names of the in-run triggers with a condition on one of `nodes`."""
        wanted = set(nodes)
        return {t.name for t in self.in_run() if any(c.node in wanted for c in self.node_conditions(t))}

    def unmet(self) -> tuple[list[tuple[int, int, str]], list[tuple[int, list[str]]]]:
        """What can never happen: conditions on nodes no trigger starts (trigger index, condition index, node), and
        triggers that can never fire because the nodes they watch only start after such triggers (index, nodes)."""
        started_by = self.started_by()
        direct = [(i, j, c.node) for i, j, _t, c in self.each_condition()
                  if not is_property(c) and c.node in self.nodes and c.node not in started_by]
        reach = self.reachable()
        later: list[tuple[int, list[str]]] = []
        for i, t in self.indexed:
            if i in reach.fired:
                continue
            never = [c.node for c in self.node_conditions(t) if c.node not in reach.reached]
            indirect = [n for n in never if n in started_by]
            if indirect:  # the rest is already reported at the condition itself
                later.append((i, indirect))
        return direct, later

    def sfn_problems(self) -> list[tuple[int, str]]:
        """What a Step Functions state machine cannot express, as (trigger index, message). The state machine tests a
        trigger once a wave of nodes has ended (`waves`); a conditional trigger with run-property conditions only
        watches no node, so nothing says when to test it (the local engine tests it after every node)."""
        out = []
        for i, t in self.indexed:
            if not kind_of(t).starts_run and t.enabled and not self.node_conditions(t):
                out.append((i, (f"trigger '{t.name}' has only run-property conditions: Step Functions tests a "
                               "trigger when the nodes it watches have ended, and this one watches none; add the "
                               "condition on the job that writes the property (e.g. {job: J, state: SUCCEEDED})")))
        return out

    def glue_start(self) -> tuple[Trigger | None, list[Trigger]]:
        """(the Glue workflow's start trigger, the other start triggers). AWS Glue gives a workflow one start trigger
        ("each workflow has a start trigger": on demand, schedule or EventBridge event). When the YAML has several,
        the event trigger is the one (its EventBridge rule notifies the workflow and Glue batches the events), else
        the first schedule, else on demand; the others start the same nodes by Glue's StartWorkflowRun, which any
        workflow accepts: an on-demand trigger is `aws glue start-workflow-run` itself, a further schedule an
        EventBridge Scheduler schedule that calls it. `glue_problems` refuses what this cannot keep."""
        starters = self.starters()
        if not starters:
            return None, []
        primary = min(starters, key=lambda t: kind_of(t).glue_start_rank)  # min keeps the YAML's order on ties
        return primary, [t for t in starters if t is not primary]

    def glue_problems(self) -> list[tuple[int, str]]:
        """What one Glue workflow cannot hold, as (trigger index, message): start triggers that start different
        nodes (StartWorkflowRun runs the start trigger's actions), or a second event trigger."""
        primary, others = self.glue_start()
        if primary is None:
            return []

        def actions(t: Trigger) -> list[tuple[str, str, int | None]]:
            return sorted((a.node, repr(sorted(a.arguments.items())), a.timeout_minutes) for a in t.actions)

        out = []
        for i, t in self.indexed:
            if t not in others:
                continue
            if t.type == "event":
                out.append((i, (f"trigger '{t.name}': a Glue workflow starts from one event trigger, and "
                                f"'{primary.name}' is already it; put both watched folders under one trigger, split "
                                "the workflow, or deploy with orchestrator: step_functions")))
            elif actions(t) != actions(primary):
                out.append((i, (f"trigger '{t.name}' starts other nodes than '{primary.name}': a Glue workflow has "
                                f"one start trigger ('{primary.name}'; the others run as StartWorkflowRun, which "
                                "starts its actions); give the start triggers the same actions, split the workflow, "
                                "or deploy with orchestrator: step_functions")))
        return out

    def display_edges(self) -> list[tuple[str, str, str]]:
        """Edges as Glue draws a workflow (triggers are nodes): node -> trigger (labelled with the state), trigger
        -> node. Trigger ids are `trigger:NAME`."""
        out: list[tuple[str, str, str]] = []
        for t in self.triggers:
            key = f"trigger:{t.name}"
            for c in t.conditions:
                if not is_property(c):
                    out.append((c.node, key, c.state or ""))
            for a in t.actions:
                out.append((key, a.node, ""))
        return out

    # -- walks -----------------------------------------------------------------------------------------------
    def downstream(self, nodes: Iterable[str]) -> set[str]:
        """Every node reachable from `nodes` through conditional triggers that watch them (nodes included)."""
        succ: dict[str, set[str]] = {}
        for e in self.edges():
            succ.setdefault(e.src, set()).add(e.dst)
        seen = set(nodes)
        todo = list(seen)
        while todo:
            for m in succ.get(todo.pop(), ()):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    def reachable(self) -> Reach:
        """Which triggers can ever fire and which nodes can ever start (every start trigger fires; a conditional
        trigger fires when its node conditions can be met: `and` all, `any` one; property conditions may hold)."""
        r = Reach()
        changed = True
        while changed:
            changed = False
            for i, t in self.indexed:
                if i in r.fired:
                    continue
                nodes = [c.node for c in t.conditions if not is_property(c)]
                if kind_of(t).starts_run or not nodes:
                    ok = True
                elif t.logical == "and":
                    ok = all(n in r.reached for n in nodes)
                else:
                    ok = any(n in r.reached for n in nodes) or len(nodes) < len(t.conditions)
                if ok:
                    r.fired.add(i)
                    r.reached |= {a.node for a in t.actions}
                    changed = True
        return r

    def cycles(self) -> list[Cycle]:
        """Cycles node -> (a trigger watching it) -> node ... -> the first node, each once, at its closing trigger."""
        edges: dict[str, list[tuple[str, int]]] = {}
        for i, t in self.indexed:
            for c in t.conditions:
                if is_property(c):
                    continue
                for a in t.actions:
                    edges.setdefault(c.node, []).append((a.node, i))
        color: dict[str, int] = {}
        found: list[Cycle] = []
        reported: set[frozenset[str]] = set()

        def dfs(n: str, stack: list[str]) -> None:
            color[n] = 1
            for m, i in edges.get(n, []):
                if color.get(m) == 1:
                    cycle = stack[stack.index(m):] + [m] if m in stack else [n, m]
                    if frozenset(cycle) not in reported:
                        reported.add(frozenset(cycle))
                        found.append(Cycle(cycle, i))
                elif color.get(m) is None:
                    dfs(m, stack + [m])
            color[n] = 2

        roots = [a.node for t in self.starters() for a in t.actions]
        for n in list(dict.fromkeys(roots)) + sorted(edges):  # from the start, so the back edge closes the cycle
            if color.get(n) is None:
                dfs(n, [n])
        return found

    def levels(self) -> list[list[str]]:
        """Nodes in the order they can run: level 0 is started by start triggers, level n+1 by conditions on
        earlier levels (`and`: after the last watched node, `any`: after the first); never-started nodes are left
        out."""
        level: dict[str, int] = {}
        for _ in range(len(self.nodes) + 2):  # bounded: cycles never settle
            new: dict[str, int] = {}
            for t in self.triggers:
                lv = 0
                nodes = [c.node for c in t.conditions if not is_property(c)]
                if not kind_of(t).starts_run and nodes:
                    watched = [level[n] for n in nodes if n in level]
                    if not watched or (t.logical == "and" and len(watched) < len(nodes)):
                        continue
                    lv = (max(watched) if t.logical == "and" else min(watched)) + 1
                for a in t.actions:
                    new[a.node] = min(new.get(a.node, lv), lv)
            if new == level:
                break
            level = new
        return _group(level)

    def waves(self) -> tuple[list[list[tuple[str, int]]], dict[str, int]]:
        """The placement Step Functions uses: wave k holds (node, trigger index) slots that may start the node once
        wave k-1 has ended. A start trigger's actions are in wave 0; a conditional trigger's actions are in the
        wave after each watched node's last wave (`and`: after all of them; `any`: after each, so the node starts as
        soon as the first condition holds, and later slots start it only if it did not run yet). Returns the waves
        and each node's last wave. Needs an acyclic graph."""
        last: dict[str, int] = {}
        slots: dict[int, list[tuple[str, int]]] = {}
        for _ in range(len(self.nodes) + 2):
            placed: dict[int, list[tuple[str, int]]] = {}
            new_last: dict[str, int] = {}
            for i, t in self.indexed:
                nodes = [c.node for c in t.conditions if not is_property(c)]
                if kind_of(t).starts_run:
                    at = [0]
                elif not nodes:
                    continue  # watches no node: see sfn_problems
                else:
                    known = [last[n] for n in nodes if n in last]
                    if not known or (t.logical == "and" and len(known) < len(nodes)):
                        continue
                    at = [max(known) + 1] if t.logical == "and" else sorted({k + 1 for k in known})
                for w in at:
                    for a in t.actions:
                        placed.setdefault(w, []).append((a.node, i))
                        new_last[a.node] = max(new_last.get(a.node, w), w)
            if new_last == last:
                slots = placed
                break
            last = new_last
            slots = placed
        waves = [sorted(set(slots.get(w, [])), key=lambda s: (s[0], s[1]))
                 for w in range(max(slots, default=-1) + 1)]
        return waves, last

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluate(self, t: Trigger, states: dict[str, str | None],
                 properties: Callable[[], dict[str, Any]] | None = None) -> tuple[Verdict, list[str]]:
        """Whether a conditional trigger's conditions hold now (`and`: all, `any`: one), with the conditions that
        hold. Property conditions read the run properties (only when asked)."""
        holds: list[bool] = []
        met: list[str] = []
        whys: list[str] = []
        error = False
        props: dict[str, Any] | None = None
        for c in t.conditions:
            if is_property(c):
                if props is None:
                    props = properties() if properties else {}
                v = compare(c, props)
                error = error or v.error
                whys.append(v.why)
                ok = v.holds
            else:
                st = states.get(c.node)
                ok = st == c.state
                whys.append(f"{c.node} {'did not run' if st is None else 'ended ' + st} (needs {c.state})")
            holds.append(ok)
            if ok:
                met.append(describe_condition(c))
        result = all(holds) if t.logical == "and" else any(holds)
        if result:
            return Verdict(True, f"{t.logical}: " + ", ".join(met)), met
        return Verdict(False, f"not fired ({t.logical}): " + ("ERROR: " if error else "") + "; ".join(whys),
                       error), met


def _group(level: dict[str, int]) -> list[list[str]]:
    out: list[list[str]] = []
    for node, lv in sorted(level.items(), key=lambda kv: (kv[1], kv[0])):
        while len(out) <= lv:
            out.append([])
        out[lv].append(node)
    return out


def layered(nodes: list[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Topological layers of any drawn graph by longest path from the roots (the report draws triggers as nodes
    too); nodes on a cycle (never valid, never fatal here) go to one extra last layer; each layer is ordered by the
    mean position of its predecessors to cut edge crossings."""
    preds: dict[str, set[str]] = {n: set() for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        if src in preds and dst in preds and src != dst:
            preds[dst].add(src)
            succs[src].append(dst)
    level: dict[str, int] = {}
    indeg = {n: len(p) for n, p in preds.items()}
    ready = [n for n in nodes if indeg[n] == 0]
    for n in ready:
        level[n] = 0
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succs[n]:
            level[m] = max(level.get(m, 0), level[n] + 1)
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    depth = max(level.values(), default=-1) + 1
    for n in nodes:
        if n not in order:
            level[n] = depth
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for n in nodes:
        out[level[n]].append(n)
    pos: dict[str, float] = {}
    for layer in out:
        if pos:
            def mean(n: str) -> float:
                known = [pos[p] for p in preds[n] if p in pos]
                return sum(known) / len(known) if known else 1e9
            layer.sort(key=mean)
        for i, n in enumerate(layer):
            pos[n] = float(i)
    return out


__all__ = [
    "MAINTAIN_PREFIX", "OPS", "TRIGGER_KINDS", "Cycle", "Edge", "Reach", "TriggerKind", "Verdict", "WorkflowGraph",
    "as_number", "compare", "describe_condition", "is_property", "kind_of", "layered", "maintain_node",
    "maintained_job", "run_properties_of",
]
