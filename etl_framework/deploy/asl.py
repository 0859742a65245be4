"""A workflow as an AWS Step Functions state machine (Amazon States Language, JSONPath), from `WorkflowGraph`.

Shape (README "Glue Workflows or Step Functions?"):
- the execution input names the start trigger (`{"trigger": "nightly", "run_properties": {...}}`; default: the first
  on-demand trigger) and may override run properties; the execution name is the workflow run id;
- `$.nodes` holds one record per node (`{"state": "NOT_RUN"}` until it runs): the per-node states of the run;
- the graph runs in waves (`WorkflowGraph.waves`): each wave is a Parallel state with one branch per node that may
  start in it; the branch's Choice starts the node when the node has not run yet and one of its triggers' conditions
  holds on `$.nodes` (`and`: every condition; `any`: one) — Glue's at-most-once firing. An `any` join has a slot after
  each watched node's wave, so it starts as soon as the first condition holds, as in Glue;
- a job is `glue:startJobRun` (request-response) + Wait + `aws-sdk:glue:getJobRun` + Choice, inside a one-branch
  Parallel that carries `Retry` (the job's retries: interval, backoff rate, max attempts) and `Catch`: a FAILED,
  TIMEOUT or STOPPED job becomes that node state, so downstream conditions on FAILED fire and the execution
  SUCCEEDS with the per-node states in its output (Glue: a run is COMPLETED even when nodes failed);
- a crawler is `aws-sdk:glue:startCrawler` + Wait + `aws-sdk:glue:getCrawler` + Choice on its last crawl;
- run properties live in one S3 JSON object per execution (written at the start, read before a wave with property
  conditions, written by jobs through `--run_properties_uri`); property conditions become Choice rules;
- `max_concurrent_runs`: the execution first counts the state machine's RUNNING executions and fails with
  `ConcurrentRunsExceeded` beyond the limit, as Glue refuses such a run.

Why polling rather than `glue:startJobRun.sync`: `.sync` costs no transitions while it waits, but (1) moto's
`.sync` Glue integration fails (its callback path assumes a task token), so the deployed definition could not be the
one our tests execute; (2) with polling every state of a job attempt is visible in the execution history and a
redrive restarts exactly the failed node's wave. The price is 2 state transitions per poll interval per running
node (`deploy.poll_seconds`, default 30 s: about 240 transitions per job-hour).
"""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

from etl_framework.workflow_graph import NUMERIC_OPS, WorkflowGraph, as_number, is_property, kind_of

SFN_DEFINITION_LIMIT = 1_048_576  # characters: Step Functions' maximum definition size
DEFAULT_TIMEOUT = 2880
GLUE_FAILED, GLUE_TIMEOUT, GLUE_STOPPED = "Glue.FAILED", "Glue.TIMEOUT", "Glue.STOPPED"
CRAWLER_FAILED, CRAWLER_CANCELLED = "Glue.CRAWLER_FAILED", "Glue.CRAWLER_CANCELLED"


class AslError(ValueError):
    """The workflow cannot be a state machine (the message says why and what to do)."""


def _s(name: str) -> str:
    """A state name (<= 80 characters, no JSONPath-breaking characters)."""
    return name[:80]


def _path(node: str) -> str:
    return f"$.nodes['{node}']" if not node.replace("_", "").isalnum() else f"$.nodes.{node}"


def _node_cond(node: str, state: str) -> dict[str, Any]:
    return {"Variable": f"{_path(node)}.state", "StringEquals": state}


def _prop_var(name: str) -> str:
    return f"$.props.values.{name}"


def _prop_rule(c: Any) -> dict[str, Any]:
    var = _prop_var(c.property)
    if c.op in NUMERIC_OPS:
        op = {">=": "NumericGreaterThanEquals", ">": "NumericGreaterThan", "<=": "NumericLessThanEquals",
              "<": "NumericLessThan"}[c.op]
        return {"And": [{"Variable": var, "IsPresent": True}, {"Variable": var, "IsNumeric": True},
                        {"Variable": var, op: as_number(c.value)}]}
    num = as_number(c.value)
    if num is not None and not isinstance(c.value, str):
        same: dict[str, Any] = {"And": [{"Variable": var, "IsNumeric": True}, {"Variable": var, "NumericEquals": num}]}
    elif isinstance(c.value, bool):
        same = {"And": [{"Variable": var, "IsBoolean": True}, {"Variable": var, "BooleanEquals": c.value}]}
    else:
        same = {"And": [{"Variable": var, "IsString": True}, {"Variable": var, "StringEquals": str(c.value)}]}
    rule = {"And": [{"Variable": var, "IsPresent": True}, same]}
    return rule if c.op == "==" else {"And": [{"Variable": var, "IsPresent": True}, {"Not": same}]}


def trigger_rule(t: Any) -> dict[str, Any]:
    """A trigger's conditions as one Choice rule (start triggers: the execution input names them)."""
    if kind_of(t).starts_run:
        return {"Variable": "$.run.trigger", "StringEquals": t.name}
    rules = [_prop_rule(c) if is_property(c) else _node_cond(c.node, c.state) for c in t.conditions]
    if len(rules) == 1:
        return rules[0]
    return {"And": rules} if t.logical == "and" else {"Or": rules}


def _with_next(rule: dict[str, Any], nxt: str) -> dict[str, Any]:
    return {**rule, "Next": nxt}


# --------------------------------------------------------------------------------------------- one node


def _job_branch(name: str, glue_name: str, poll: int) -> dict[str, Any]:
    """One attempt of a job: start, then poll until it ends; failures end the branch with Glue.<STATE>."""
    start, wait, get, check = (_s(f"{name}: {w}") for w in ("start job run", "wait", "get job run", "job run ended?"))
    return {"StartAt": start, "States": {
        start: {"Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun",
                "Parameters": {"JobName": glue_name, "Arguments.$": "$.via.args", "Timeout.$": "$.via.timeout"},
                "ResultSelector": {"JobRunId.$": "$.JobRunId"}, "ResultPath": "$.jr",
                "Retry": [{"ErrorEquals": ["Glue.ThrottlingException", "Glue.InternalServiceException",
                                           "Glue.ConcurrentRunsExceededException"],
                           "IntervalSeconds": 5, "BackoffRate": 2.0, "MaxAttempts": 5}],
                "Next": wait},
        wait: {"Type": "Wait", "Seconds": poll, "Next": get},
        get: {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:glue:getJobRun",
              "Parameters": {"JobName": glue_name, "RunId.$": "$.jr.JobRunId"},
              "ResultSelector": {"state.$": "$.JobRun.JobRunState"}, "ResultPath": "$.poll", "Next": check},
        check: {"Type": "Choice", "Choices": [
            {"Variable": "$.poll.state", "StringEquals": "SUCCEEDED", "Next": _s(f"{name}: job run succeeded")},
            {"Or": [{"Variable": "$.poll.state", "StringEquals": "FAILED"},
                    {"Variable": "$.poll.state", "StringEquals": "ERROR"}], "Next": _s(f"{name}: job run failed")},
            {"Variable": "$.poll.state", "StringEquals": "TIMEOUT", "Next": _s(f"{name}: job run timed out")},
            {"Or": [{"Variable": "$.poll.state", "StringEquals": "STOPPED"},
                    {"Variable": "$.poll.state", "StringEquals": "STOPPING"}], "Next": _s(f"{name}: job run stopped")},
        ], "Default": wait},
        _s(f"{name}: job run succeeded"): {"Type": "Succeed"},
        _s(f"{name}: job run failed"): {"Type": "Fail", "Error": GLUE_FAILED, "Cause": f"job {glue_name} FAILED"},
        _s(f"{name}: job run timed out"): {"Type": "Fail", "Error": GLUE_TIMEOUT,
                                           "Cause": f"job {glue_name} TIMEOUT"},
        _s(f"{name}: job run stopped"): {"Type": "Fail", "Error": GLUE_STOPPED, "Cause": f"job {glue_name} STOPPED"},
    }}


def _crawler_branch(name: str, glue_name: str, poll: int) -> dict[str, Any]:
    start, wait, get, check, last = (_s(f"{name}: {w}") for w in (
        "start crawler", "wait", "get crawler", "crawler ready?", "last crawl"))
    return {"StartAt": start, "States": {
        start: {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:glue:startCrawler",
                "Parameters": {"Name": glue_name}, "ResultPath": None, "Next": wait},
        wait: {"Type": "Wait", "Seconds": poll, "Next": get},
        get: {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:glue:getCrawler", "Parameters": {"Name": glue_name},
              "ResultSelector": {"crawler.$": "$.Crawler"}, "ResultPath": "$.poll", "Next": check},
        check: {"Type": "Choice", "Choices": [
            {"And": [{"Variable": "$.poll.crawler.State", "StringEquals": "READY"},
                     {"Variable": "$.poll.crawler.LastCrawl.Status", "IsPresent": True}], "Next": last}],
            "Default": wait},
        last: {"Type": "Choice", "Choices": [
            {"Variable": "$.poll.crawler.LastCrawl.Status", "StringEquals": "FAILED",
             "Next": _s(f"{name}: crawl failed")},
            {"Variable": "$.poll.crawler.LastCrawl.Status", "StringEquals": "CANCELLED",
             "Next": _s(f"{name}: crawl cancelled")}],
            "Default": _s(f"{name}: crawl succeeded")},
        _s(f"{name}: crawl succeeded"): {"Type": "Succeed"},
        _s(f"{name}: crawl failed"): {"Type": "Fail", "Error": CRAWLER_FAILED, "Cause": f"crawler {glue_name} FAILED"},
        _s(f"{name}: crawl cancelled"): {"Type": "Fail", "Error": CRAWLER_CANCELLED,
                                         "Cause": f"crawler {glue_name} CANCELLED"},
    }}


def _record(state: str) -> dict[str, Any]:
    return {"state": state, "trigger.$": "$.via.trigger"}


def _node_states(graph: WorkflowGraph, node: str, trig_idx: list[int], ctx: dict[str, Any]) -> dict[str, Any]:
    """The branch of one node in one wave: should it start (and by which trigger), then run it once."""
    jobs, prefix, poll = ctx["jobs"], ctx["prefix"], ctx["poll"]
    kind = graph.kind(node)
    triggers = [graph.config.triggers[i] for i in trig_idx if graph.config.triggers[i].enabled]
    decide, keep, run, done = (_s(f"{node}?"), _s(f"{node}: not started"), _s(node), _s(f"{node}: ended"))
    states: dict[str, Any] = {}
    choices: list[dict[str, Any]] = [{"Not": _node_cond(node, "NOT_RUN"), "Next": keep}]
    for t in triggers:
        via = _s(f"{node} <- {t.name}")
        choices.append(_with_next(trigger_rule(t), via))
        action = next(a for a in t.actions if a.node == node)
        if kind == "job":
            from etl_framework.runtime.args import to_glue_arguments

            cfg = jobs.get(node)
            args = {**to_glue_arguments(action.arguments), "--WORKFLOW_NAME": prefix + graph.name,
                    "--WORKFLOW_RUN_ID.$": "$.run.run_id", "--run_properties_uri.$": "$.run.properties_uri"}
            timeout = action.timeout_minutes or (cfg.timeout_minutes if cfg else None) or DEFAULT_TIMEOUT
            states[via] = {"Type": "Pass", "Parameters": {"trigger": t.name, "args": args, "timeout": timeout},
                           "ResultPath": "$.via", "Next": run}
        else:
            states[via] = {"Type": "Pass", "Parameters": {"trigger": t.name}, "ResultPath": "$.via", "Next": run}
    for t in triggers:  # why a property condition kept the node from starting (missing: false; not a number: ERROR)
        for c in t.conditions:
            if not is_property(c):
                continue
            var = _prop_var(c.property)
            if c.op in NUMERIC_OPS:
                err = _s(f"{node}: {t.name} ERROR on {c.property}")
                choices.append({"And": [{"Variable": var, "IsPresent": True}, {"Not": {"Variable": var,
                                                                                          "IsNumeric": True}}],
                                "Next": err})
                states[err] = {"Type": "Pass", "Result": {"state": "NOT_RUN", "trigger": t.name, "trigger_state": "ERROR",
                                                          "why": f"run property {c.property} is not a number "
                                                                 f"(needs {c.op} {c.value!r})"}, "End": True}
            missing = _s(f"{node}: {t.name} lacks {c.property}")
            choices.append({"Not": {"Variable": var, "IsPresent": True}, "Next": missing})
            states[missing] = {"Type": "Pass", "Result": {"state": "NOT_RUN", "trigger": t.name,
                                                          "why": f"run property {c.property} is not set"},
                               "End": True}
    states[decide] = {"Type": "Choice", "Choices": choices, "Default": keep}
    states[keep] = {"Type": "Pass", "InputPath": _path(node), "End": True}
    glue_name = prefix + node
    retry: list[dict[str, Any]] = []
    timeout_s: int | None = None
    if kind == "job":
        cfg = jobs.get(node)
        branch = _job_branch(node, glue_name, poll)
        r = cfg.retries if cfg else None
        if r and r.max_attempts > 1:
            retry = [{"ErrorEquals": [GLUE_FAILED], "IntervalSeconds": max(1, round(r.backoff_seconds)),
                      "BackoffRate": float(r.backoff_rate), "MaxAttempts": r.max_attempts - 1}]
        minutes = max([a.timeout_minutes or 0 for t in triggers for a in t.actions if a.node == node]
                      + [(cfg.timeout_minutes if cfg else None) or DEFAULT_TIMEOUT])
        timeout_s = minutes * 60 + 2 * poll + 60  # backstop: Glue's own Timeout ends the run first
    else:
        branch = _crawler_branch(node, glue_name, poll)
    failed_to = {GLUE_TIMEOUT: "TIMEOUT", GLUE_STOPPED: "STOPPED", "States.Timeout": "TIMEOUT",
                 CRAWLER_CANCELLED: "CANCELLED"}
    catches = [{"ErrorEquals": [err], "ResultPath": "$.error", "Next": _s(f"{node}: {st}")}
               for err, st in failed_to.items() if kind == "job" or st == "CANCELLED"]
    catches.append({"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": _s(f"{node}: FAILED")})
    wrapper: dict[str, Any] = {"Type": "Parallel", "Branches": [branch], "ResultPath": None, "Catch": catches,
                               "Next": done}
    if retry:
        wrapper["Retry"] = retry
    if timeout_s:
        wrapper["TimeoutSeconds"] = timeout_s
    states[run] = wrapper
    states[done] = {"Type": "Pass", "Parameters": _record("SUCCEEDED"), "End": True}
    for st in sorted({s for s in failed_to.values()} | {"FAILED"}):
        if kind == "crawler" and st not in ("FAILED", "CANCELLED"):
            continue
        states[_s(f"{node}: {st}")] = {"Type": "Pass", "Parameters": {
            **_record(st), "error.$": "$.error.Error", "cause.$": "$.error.Cause"}, "End": True}
    return {"StartAt": decide, "States": states}


# ---------------------------------------------------------------------------------------- the machine


def state_machine(workflow: Any, jobs: dict[str, Any] | None = None, *, prefix: str = "", poll_seconds: int = 30,
                  properties_root: str = "s3://BUCKET/PREFIX/runs") -> dict[str, Any]:
    """The ASL definition of a workflow. `jobs`: job name -> JobConfig (retries, timeout); `properties_root`: the
    S3 folder of the run property objects (`<root>/<workflow>/<execution>.json`)."""
    graph = WorkflowGraph(workflow)
    if graph.cycles():
        raise AslError(f"workflow {graph.name} has a cycle: a state machine (like a Glue workflow) is acyclic")
    if graph.maintain_nodes():
        raise AslError(f"workflow {graph.name}: {', '.join(graph.maintain_nodes())}: maintain actions run in the local "
                       "engine and the scheduler, not in a state machine; on AWS run `etl maintain` on its own")
    problems = graph.sfn_problems()
    if problems:
        raise AslError(f"workflow {graph.name}: " + "; ".join(msg for _, msg in problems))
    ctx = {"jobs": jobs or {}, "prefix": prefix, "poll": max(1, int(poll_seconds))}
    waves, _ = graph.waves()
    starters = graph.starters(enabled_only=True)
    default_trigger = graph.default_start()
    bucket, _, key_root = properties_root.removeprefix("s3://").removeprefix("s3a://").partition("/")
    key_root = key_root.strip("/")
    key_root = (key_root + "/" if key_root else "") + graph.name
    states: dict[str, Any] = {}
    order: list[str] = []

    def add(name: str, state: dict[str, Any]) -> None:
        states[name] = state
        order.append(name)

    add("Defaults", {"Type": "Pass", "Result": {"trigger": default_trigger, "run_properties": dict(
        workflow.run_properties)}, "ResultPath": "$.defaults"})
    add("Start run", {"Type": "Pass", "Parameters": {"merged.$": "States.JsonMerge($.defaults, $, false)"}})
    add("Run record", {"Type": "Pass", "Parameters": {
        "run": {"trigger.$": "$.merged.trigger", "run_id.$": "$$.Execution.Name",
                "run_properties.$": "States.JsonMerge($.merged.defaults.run_properties, $.merged.run_properties, "
                                    "false)",
                "properties_uri.$": f"States.Format('s3://{bucket}/{key_root}/{{}}.json', $$.Execution.Name)"},
        "nodes": {n: {"state": "NOT_RUN"} for n in graph.nodes}}})
    known = [{"Variable": "$.run.trigger", "StringEquals": t.name} for t in starters]
    if not known:
        raise AslError(f"workflow {graph.name} has no enabled start trigger (on_demand, scheduled or event)")
    add("Known start trigger?", {"Type": "Choice", "Choices": [
        {**(known[0] if len(known) == 1 else {"Or": known}), "Next": "Start trigger known"}],
        "Default": "UnknownTrigger"})
    states["UnknownTrigger"] = {"Type": "Fail", "Error": "UnknownTrigger",
                                "Cause": f"the execution input names no enabled start trigger of workflow {graph.name} "
                                         f"(one of: {', '.join(t.name for t in starters) or 'none'})"}
    add("Start trigger known", {"Type": "Pass"})
    if workflow.max_concurrent_runs:
        n = workflow.max_concurrent_runs
        add("Count running executions", {
            "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:sfn:listExecutions",
            "Parameters": {"stateMachineArn.$": "$$.StateMachine.Id", "statusFilter": "RUNNING"},
            "ResultSelector": {"count.$": "States.ArrayLength($.executions)"}, "ResultPath": "$.running"})
        add("Within max_concurrent_runs?", {"Type": "Choice", "Choices": [
            {"Variable": "$.running.count", "NumericGreaterThan": n, "Next": "ConcurrentRunsExceeded"}]})
        states["ConcurrentRunsExceeded"] = {"Type": "Fail", "Error": "ConcurrentRunsExceeded",
                                            "Cause": f"workflow {graph.name} allows {n} concurrent run(s) "
                                                     "(max_concurrent_runs), as Glue refuses another"}
    add("Write run properties", {
        "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
        "Parameters": {"Bucket": bucket, "Key.$": f"States.Format('{key_root}/{{}}.json', $.run.run_id)",
                       "Body.$": "States.JsonToString($.run.run_properties)"},
        "ResultPath": None})
    for w, slots in enumerate(waves):
        by_node: dict[str, list[int]] = {}
        for node, idx in slots:
            by_node.setdefault(node, []).append(idx)
        if not by_node:
            continue
        props = any(is_property(c) for ids in by_node.values() for i in ids
                    for c in graph.config.triggers[i].conditions)
        if props:
            read = f"Read run properties {w}"
            add(read, {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                       "Parameters": {"Bucket": bucket, "Key.$": f"States.Format('{key_root}/{{}}.json', $.run.run_id)"},
                       "ResultSelector": {"values.$": "States.StringToJson($.Body)"}, "ResultPath": "$.props",
                       "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.props_error",
                                  "Next": f"Run properties as started {w}"}]})
            states[f"Run properties as started {w}"] = {
                "Type": "Pass", "Parameters": {"values.$": "$.run.run_properties"}, "ResultPath": "$.props"}
        names = sorted(by_node)
        add(f"Wave {w}", {"Type": "Parallel",
                          "Branches": [_node_states(graph, n, by_node[n], ctx) for n in names],
                          "ResultSelector": {f"{n}.$": f"$[{i}]" for i, n in enumerate(names)},
                          "ResultPath": "$.wave"})
        add(f"Record wave {w}", {"Type": "Pass", "Parameters": {
            "run.$": "$.run", "nodes.$": "States.JsonMerge($.nodes, $.wave, false)"}})
    add("Run ended", {"Type": "Succeed"})
    for a, b in pairwise(order):
        if states[a]["Type"] == "Choice":
            states[a].setdefault("Default", b)
        else:
            states[a]["Next"] = b
        if a.startswith("Read run properties "):
            states[f"Run properties as started {a.rsplit(' ', 1)[1]}"]["Next"] = b
    return {"Comment": f"etl_framework workflow {graph.name}: one Parallel state per wave of the trigger graph",
            "StartAt": order[0], "States": states}


HISTORY_LIMIT = 25_000  # events in one execution's history (Standard workflows)
EVENTS_PER_POLL = 9  # Wait entered/exited, Task entered/scheduled/started/succeeded/exited, Choice entered/exited


def worst_case_events(workflow: Any, jobs: dict[str, Any], poll_seconds: int) -> int:
    """History events of polling if every job ran every attempt to its timeout (crawlers not counted)."""
    total = 0
    for name in WorkflowGraph(workflow).nodes:
        cfg = jobs.get(name)
        if name in workflow.crawlers:
            continue
        minutes = (cfg.timeout_minutes if cfg else None) or DEFAULT_TIMEOUT
        attempts = cfg.retries.max_attempts if cfg else 1
        total += attempts * (minutes * 60 // max(1, poll_seconds)) * EVENTS_PER_POLL
    return total


def definition_json(machine: dict[str, Any]) -> str:
    """The definition as deployed (compact, stable key order), refused over Step Functions' size limit."""
    text = json.dumps(machine, sort_keys=True, separators=(",", ":"))
    if len(text) > SFN_DEFINITION_LIMIT:
        raise AslError(f"the state machine definition is {len(text):,} characters, over Step Functions' limit of "
                       f"{SFN_DEFINITION_LIMIT:,}: split the workflow into smaller workflows")
    return text


__all__ = ["HISTORY_LIMIT", "SFN_DEFINITION_LIMIT", "AslError", "definition_json", "state_machine", "trigger_rule",
           "worst_case_events"]
