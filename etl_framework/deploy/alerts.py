"""Alerting on AWS (`notifications: {sns: TOPIC_ARN}`): EventBridge rules that route Glue's own "Glue Job State
Change" / "Glue Crawler State Change" events of exactly this project's jobs and crawlers, and the jobs' own
"Quality Gate Result" events (source `etl_framework`, published with PutEvents), to the SNS topic with an input
transformer that makes one readable line. Pure: the rules are `event_rule` resources planned, tagged, diffed and
pruned like every other (deploy/plan.py)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from etl_framework.config.errors import ConfigError, ConfigErrors

QUALITY_SOURCE = "etl_framework"
QUALITY_DETAIL_TYPE = "Quality Gate Result"
JOB_STATES = {"failed": "FAILED", "timeout": "TIMEOUT", "succeeded": "SUCCEEDED"}
CRAWLER_STATES = {"failed": "Failed", "succeeded": "Succeeded"}
JOB_MESSAGE = {"InputPathsMap": {"job": "$.detail.jobName", "state": "$.detail.state", "run": "$.detail.jobRunId",
                                 "message": "$.detail.message", "time": "$.time"},
               "InputTemplate": '"<time> Glue job <job> run <run> <state>: <message>"'}
CRAWLER_MESSAGE = {"InputPathsMap": {"crawler": "$.detail.crawlerName", "state": "$.detail.state",
                                     "message": "$.detail.errorMessage", "time": "$.time"},
                   "InputTemplate": '"<time> Glue crawler <crawler> <state>: <message>"'}
LATE_MESSAGE = {"InputPathsMap": {"job": "$.detail.jobName", "run": "$.detail.jobRunId", "message": "$.detail.message",
                                  "time": "$.time"},
                "InputTemplate": '"<time> Glue job <job> run <run> is late: <message>"'}
QUALITY_MESSAGE = {"InputPathsMap": {"job": "$.detail.job", "env": "$.detail.env", "run": "$.detail.run_id",
                                     "state": "$.detail.state", "summary": "$.detail.summary"},
                   "InputTemplate": '"etl_framework job <job> (<env>) run <run>: quality <state>: <summary>"'}


def topic_region(arn: str) -> str:
    return arn.split(":")[3] if arn.count(":") >= 5 else ""


def rule_name(prefix: str, project: str, env: str, what: str, topic: str) -> str:
    digest = hashlib.sha256(topic.encode()).hexdigest()[:8]
    name = re.sub(r"[^\w.-]", "-", f"{prefix}etl-{project}-{env}-alert-{what}-{digest}")
    return name[:64]


def job_pattern(glue_jobs: list[str], states: list[str]) -> dict[str, Any]:
    return {"source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
            "detail": {"jobName": sorted(glue_jobs), "state": sorted(states)}}


def crawler_pattern(crawlers: list[str], states: list[str]) -> dict[str, Any]:
    return {"source": ["aws.glue"], "detail-type": ["Glue Crawler State Change"],
            "detail": {"crawlerName": sorted(crawlers), "state": sorted(states)}}


def late_pattern(glue_jobs: list[str]) -> dict[str, Any]:
    """Glue emits 'Glue Job Run Status' when a run exceeds its job's NotificationProperty.NotifyDelayAfter."""
    return {"source": ["aws.glue"], "detail-type": ["Glue Job Run Status"], "detail": {"jobName": sorted(glue_jobs)}}


def late_minutes(state: Any, env_cfg: Any, jobs: dict[str, Any], workflows: dict[str, Any]) -> dict[str, int]:
    """Glue job name -> notifications.late_after_minutes (env, workflow, job merged), for NotifyDelayAfter."""
    from etl_framework.notify import effective

    job_workflow: dict[str, Any] = {}
    for lw in workflows.values():
        for jname in lw.config.jobs:
            job_workflow.setdefault(jname, lw.config)
    out = {}
    for name, lj in jobs.items():
        n = effective(env_cfg.notifications, getattr(job_workflow.get(name), "notifications", None),
                      lj.config.notifications)
        if n is not None and n.late_after_minutes is not None:
            out[state.deploy.name_prefix + name] = n.late_after_minutes
    return out


def quality_pattern(jobs: list[str], env: str) -> dict[str, Any]:
    return {"source": [QUALITY_SOURCE], "detail-type": [QUALITY_DETAIL_TYPE],
            "detail": {"job": sorted(jobs), "env": [env], "notify": [True]}}


def alert_resources(state: Any, env_cfg: Any, jobs: dict[str, Any], workflows: dict[str, Any],
                    src: str, env_file: Any = None) -> list[Any]:
    """The EventBridge rules of every SNS topic the project's notifications name (none without `sns:`)."""
    from etl_framework.deploy.spec import Resource
    from etl_framework.notify import effective

    d = state.deploy
    by_topic: dict[str, dict[str, Any]] = {}
    job_workflow: dict[str, Any] = {}
    for lw in workflows.values():
        for jname in lw.config.jobs:
            job_workflow.setdefault(jname, lw.config)
    for name, lj in sorted(jobs.items()):
        n = effective(env_cfg.notifications, getattr(job_workflow.get(name), "notifications", None),
                      lj.config.notifications)
        if n is None or not n.sns:
            continue
        g = by_topic.setdefault(n.sns, {"jobs": {}, "crawlers": set(), "quality": set()})
        for ev in n.events_or_default:
            if ev in JOB_STATES:
                g["jobs"].setdefault(JOB_STATES[ev], set()).add(d.name_prefix + name)
        if "quality_failed" in n.events_or_default or n.quarantine_above is not None:
            g["quality"].add(name)
        if n.late_after_minutes is not None:  # Glue's own delay notification (NotificationProperty)
            g.setdefault("late", {})[d.name_prefix + name] = n.late_after_minutes
    for wname, lw in sorted(workflows.items()):
        n = effective(env_cfg.notifications, lw.config.notifications, None)
        if n is not None and n.sns and "failed" in n.events_or_default and lw.config.crawlers:
            g = by_topic.setdefault(n.sns, {"jobs": {}, "crawlers": set(), "quality": set()})
            g["crawlers"] |= {d.name_prefix + c for c in lw.config.crawlers}
    errors = []
    for topic in by_topic:
        if topic_region(topic) != env_cfg.aws.region:
            errors.append(ConfigError(src, *key_pos(env_file, "sns", topic), (
                f"notifications.sns {topic} is in region {topic_region(topic)}, but the project deploys to "
                f"{env_cfg.aws.region}: EventBridge rules deliver only to an SNS topic in their own region; create "
                f"the topic in {env_cfg.aws.region}")))
    if errors:
        raise ConfigErrors(errors)
    out = []
    for topic, g in sorted(by_topic.items()):
        jobs_states: dict[str, set[str]] = {}
        for st, names in g["jobs"].items():
            for j in names:
                jobs_states.setdefault(j, set()).add(st)
        groups: dict[tuple[str, ...], list[str]] = {}  # jobs with the same states share a rule
        for j, sts in jobs_states.items():
            groups.setdefault(tuple(sorted(sts)), []).append(j)
        specs = []
        for i, (sts, names) in enumerate(sorted(groups.items())):
            specs.append((f"jobs{i or ''}", job_pattern(names, list(sts)), JOB_MESSAGE,
                          f"Glue job state changes ({', '.join(sts)}) of {len(names)} job(s) -> SNS"))
        if g.get("late"):
            specs.append(("late", late_pattern(sorted(g["late"])), LATE_MESSAGE,
                          "Glue job runs still running after their notifications.late_after_minutes -> SNS"))
        if g["crawlers"]:
            specs.append(("crawlers", crawler_pattern(sorted(g["crawlers"]), ["Failed"]), CRAWLER_MESSAGE,
                          "Glue crawler failures -> SNS"))
        if g["quality"]:
            specs.append(("quality", quality_pattern(sorted(g["quality"]), state.env), QUALITY_MESSAGE,
                          "etl_framework quality gate results -> SNS"))
        for what, pattern, message, desc in specs:
            name = rule_name(d.name_prefix, state.project, state.env, what, topic)
            spec = {"Name": name, "EventPattern": json.dumps(pattern, sort_keys=True), "State": "ENABLED",
                    "Description": f"etl_framework alerting: {desc}",
                    "Targets": [{"Id": "sns", "Arn": topic, "InputTransformer": dict(message)}]}
            out.append(Resource("event_rule", name, spec, src))
    return out



def key_pos(path: Any, key: str, value: str) -> tuple[int, int]:
    """Line/column of `key:` (block or flow style) on a line that holds `value`, else of the first `key:`."""
    first: tuple[int, int] | None = None
    try:
        lines = path.read_text().splitlines() if path is not None else []
    except OSError:
        lines = []
    for i, line in enumerate(lines, 1):
        m = re.search(rf"(?:^|[\s{{,]){re.escape(key)}\s*:", line)
        if m:
            pos = (i, m.end() - len(m.group(0).lstrip(" {,")) + 1)
            if value in line:
                return pos
            first = first or pos
    return first or (1, 1)


def alarm_resources(state: Any, env_cfg: Any, jobs: dict[str, Any], src: str) -> list[Any]:
    """`deploy: {alarms: [...]}`: one CloudWatch alarm per (alarm, job) on the run metrics the jobs publish."""
    from etl_framework.deploy.spec import Resource
    from etl_framework.metrics import CLOUDWATCH_NAMES, NAMESPACE

    d = state.deploy
    topic = env_cfg.notifications.sns if env_cfg.notifications else None
    out = []
    for a in d.alarms:
        for job in sorted(jobs) if a.job is None else [a.job]:
            side = "above" if a.above is not None else "below"
            name = re.sub(r"[^\w.-]", "-", f"{d.name_prefix}etl-{state.project}-{state.env}-{job}-{a.metric}-{side}")
            counts = a.metric.startswith(("rows_", "bytes_"))
            spec: dict[str, Any] = {
                "AlarmName": name[:255],
                "AlarmDescription": f"etl_framework: job {job} {a.metric} {side} {a.above or a.below}",
                "Namespace": NAMESPACE, "MetricName": CLOUDWATCH_NAMES[a.metric],
                "Dimensions": [{"Name": "job", "Value": job}, {"Name": "env", "Value": state.env}],
                "Statistic": "Sum" if counts else "Maximum", "Period": a.period_minutes * 60,
                "EvaluationPeriods": a.evaluation_periods,
                "Threshold": float(a.above if a.above is not None else a.below),
                "ComparisonOperator": "GreaterThanThreshold" if side == "above" else "LessThanThreshold",
                "TreatMissingData": "notBreaching"}
            if topic:
                spec["AlarmActions"] = [topic]
            out.append(Resource("alarm", spec["AlarmName"], spec, src))
    return out
