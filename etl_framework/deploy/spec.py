"""What `etl deploy` wants to exist: the S3 artifacts and the Glue resources of a project for one env, as the
exact parameters of Glue's Create* APIs. Pure (no AWS call), so the translation is unit-testable and every
problem Glue would reject is caught before the first call.

Naming: every Glue resource is `deploy.name_prefix` + its name; triggers are `name_prefix + workflow + "__" +
trigger`, because Glue trigger names are global and two workflows usually both have a `start` trigger.

Ownership: every resource carries the tags `etl:managed-by`, `etl:project` and `etl:env`, and every uploaded file
lives under `<s3_prefix>/<project>/<env>/`. Two projects (or two envs) sharing an account, a name prefix and a
bucket therefore never mistake each other's resources for their own: `--prune` deletes only what carries all
three tags with this project's and env's values, and only files under this project's and env's own prefix.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl_framework.config.errors import ConfigError, ConfigErrors
from etl_framework.config.model import DeployConfig, EnvConfig, JobConfig, Trigger, WorkflowConfig
from etl_framework.errors import UsageError
from etl_framework.runtime.args import to_glue_arguments
from etl_framework.workflow_graph import WorkflowGraph, kind_of

MANAGED_TAG = "etl:managed-by"
MANAGED_VALUE = "etl_framework"
PROJECT_TAG = "etl:project"
ENV_TAG = "etl:env"
DEFAULT_TIMEOUT = 2880  # minutes: Glue's default for glueetl jobs
GLUE_SPARK = {"5.0": "3.5", "4.0": "3.3", "3.0": "3.1", "2.0": "2.4"}
SPARK_WORKER_TYPES = ("G.1X", "G.2X", "G.4X", "G.8X")
DELTA_CONF = (
    "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension"
    " --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog"
)
ICEBERG_EXTENSION = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"


def datalake_formats(cfg: JobConfig) -> list[str]:
    """Glue's `--datalake-formats` for a job: the table formats it reads or writes (its quarantine is Delta)."""
    used = {cfg.target.format} | {s.format for s in cfg.sources.values()}
    if cfg.quality:
        used.add("delta")
    return sorted(used & {"delta", "iceberg"}) or ["delta"]


def spark_conf(formats: list[str]) -> str:
    """`--conf` for the job: the session extensions of its formats (the Iceberg catalog itself is configured at run
    time by `etl_framework.tables.iceberg`, from the env's catalog settings)."""
    ext = ["io.delta.sql.DeltaSparkSessionExtension"] + ([ICEBERG_EXTENSION] if "iceberg" in formats else [])
    return (f"spark.sql.extensions={','.join(ext)}"
            " --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog")


SCHEMA_CHANGE = {
    # Glue forces LOG/LOG for crawlers that re-crawl new folders only; `update` therefore re-crawls everything.
    "log": ({"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"}, "CRAWL_NEW_FOLDERS_ONLY"),
    "fail": ({"UpdateBehavior": "LOG", "DeleteBehavior": "LOG"}, "CRAWL_NEW_FOLDERS_ONLY"),
    "update": ({"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "DEPRECATE_IN_DATABASE"},
               "CRAWL_EVERYTHING"),
}
KIND_ORDER = ("role", "security_configuration", "state_table", "database", "job", "crawler", "workflow", "trigger", "state_machine", "schedule_group",
              "schedule", "event_rule", "alarm")
SFN_ARN = "arn:{partition}:states:{region}:{account}:stateMachine:"


@dataclass
class Artifact:
    """One S3 object to upload."""

    uri: str
    data: bytes
    label: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Resource:
    """One Glue resource: `spec` holds the Create API parameters (tags apart)."""

    kind: str
    name: str
    spec: dict[str, Any]
    source: str = ""
    enabled: bool = True  # triggers: activated after creation (never for on-demand ones)
    tags: dict[str, str] = field(default_factory=dict)  # the user's own tags of this resource (a job's `glue.tags`)


@dataclass
class DesiredState:
    env: str
    deploy: DeployConfig
    project: str = "project"
    artifacts: list[Artifact] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def tags(self) -> dict[str, str]:
        """What marks a resource as this project's in this env: `--prune` deletes nothing without all three."""
        return {MANAGED_TAG: MANAGED_VALUE, PROJECT_TAG: self.project, ENV_TAG: self.env}

    def tags_for(self, res: Resource) -> dict[str, str]:
        """Every tag a resource carries: the env's `deploy.tags`, the resource's own (a job's `glue.tags`), and the
        three ownership tags, which nothing overrides."""
        return {**self.deploy.tags, **res.tags, **self.tags}

    @property
    def s3_root(self) -> str:
        """This project's and env's own upload prefix: the only place `--prune` deletes files from."""
        return upload_root(self.deploy, self.project, self.env)

    def of(self, kind: str) -> list[Resource]:
        return [r for r in self.resources if r.kind == kind]


def s3_join(prefix: str, *parts: str) -> str:
    return "/".join([prefix.rstrip("/"), *[p.strip("/") for p in parts]])


def project_name(root: Path, d: DeployConfig) -> tuple[str, bool]:
    """The project's deploy name and whether it was given (`deploy.project`) rather than taken from the
    directory's name, which another checkout of the same project may not share."""
    if d.project:
        return d.project, True
    return default_project_name(root), False


def default_project_name(root: Path) -> str:
    """The directory's name as a valid `deploy.project` (lower case; other characters become '-')."""
    name = re.sub(r"[^a-z0-9_-]+", "-", root.resolve().name.lower()).strip("-_")[:63]
    return name or "project"


def upload_root(d: DeployConfig, project: str, env: str) -> str:
    """`<s3_prefix>/<project>/<env>`: two projects or envs sharing `s3_prefix` never share a key."""
    return s3_join(d.s3_prefix, project, env)


def to_s3(path: str) -> str:
    """Glue reads s3:// (Spark's s3a:// locally is the same object)."""
    for scheme in ("s3a://", "s3n://"):
        if path.startswith(scheme):
            return "s3://" + path[len(scheme):]
    return path


def job_spec(cfg: JobConfig, params: dict[str, Any], d: DeployConfig, env: str, *, job_uri: str,
             project_uri: str, script_uri: str, wheel_uri: str, temp_uri: str,
             jar_uri: str | None = None, driver_uris: list[str] | None = None) -> dict[str, Any]:
    glue = cfg.glue
    args = {
        "--job_config": job_uri,
        "--env": env,
        "--project_dir": project_uri,
        "--datalake-formats": ",".join(datalake_formats(cfg)),
        "--additional-python-modules": wheel_uri,
        "--conf": spark_conf(datalake_formats(cfg)),
        "--enable-glue-datacatalog": "true",
        "--job-bookmark-option": "job-bookmark-disable",  # the framework keeps its own bookmarks
        "--TempDir": temp_uri,
    }
    jars = ([jar_uri] if jar_uri else []) + list(driver_uris or [])
    if jars:  # the framework's Spark helper (the quality gate's side output) and the jdbc sources' drivers
        args["--extra-jars"] = ",".join(jars)
    args.update(to_glue_arguments(params))
    spec: dict[str, Any] = {
        "Name": d.name_prefix + cfg.job,
        "Description": cfg.description,
        "Role": d.role,
        "Command": {"Name": "glueetl", "ScriptLocation": script_uri, "PythonVersion": "3"},
        "DefaultArguments": args,
        "MaxRetries": cfg.retries.max_attempts - 1,
        "Timeout": cfg.timeout_minutes or DEFAULT_TIMEOUT,
        "GlueVersion": d.glue_version,
        "WorkerType": (glue.worker_type if glue and glue.worker_type else d.worker_type),
        "NumberOfWorkers": (glue.number_of_workers if glue and glue.number_of_workers else d.number_of_workers),
    }
    apply_run_settings(spec, d, glue, spark_ui_uri=temp_uri.rstrip("/").rsplit("/", 1)[0] + "/sparkui/")
    return spec


RUN_FLAGS = {"auto_scaling": "--enable-auto-scaling", "metrics": "--enable-metrics",
             "observability_metrics": "--enable-observability-metrics", "spark_ui": "--enable-spark-ui",
             "continuous_logging": "--enable-continuous-cloudwatch-log", "job_insights": "--enable-job-insights"}


def apply_run_settings(spec: dict[str, Any], d: DeployConfig, glue: Any, *, spark_ui_uri: str) -> None:
    """The Glue settings users set (`GlueRunSettings`), the job's `glue:` over the env's `deploy:`: execution
    class, Glue's own `--enable-*` flags, Spark confs as `--conf`, more arguments, connections."""

    def pick(name: str) -> Any:
        own = getattr(glue, name, None) if glue is not None else None
        return own if own is not None else getattr(d, name, None)

    args = spec["DefaultArguments"]
    if pick("execution_class"):
        spec["ExecutionClass"] = pick("execution_class")
    for name, flag in RUN_FLAGS.items():
        on = pick(name)
        if on is not None:
            args[flag] = "true" if on else "false"
    if pick("spark_ui"):
        args["--spark-event-logs-path"] = spark_ui_uri
    confs = {**d.spark_conf, **(glue.spark_conf if glue is not None else {})}
    args["--conf"] += "".join(f" --conf {k}={str(v).lower() if isinstance(v, bool) else v}"
                              for k, v in confs.items())
    args.update({**d.default_arguments, **(glue.default_arguments if glue is not None else {})})
    if glue is not None and glue.connections:
        spec["Connections"] = {"Connections": list(glue.connections)}


def crawler_spec(name: str, path: str, database: str, table: str | None, schema_change: str, d: DeployConfig,
                 workflow: str) -> tuple[dict[str, Any], str | None]:
    """Glue crawler parameters, and a warning when the table name cannot be what the YAML says."""
    policy, recrawl = SCHEMA_CHANGE[schema_change]
    spec: dict[str, Any] = {
        "Name": d.name_prefix + name,
        "Role": d.role,
        "DatabaseName": database,
        "Description": f"etl_framework crawler '{name}' of workflow '{workflow}' (schema_change: {schema_change})",
        "Targets": {"S3Targets": [{"Path": to_s3(path)}]},
        "SchemaChangePolicy": dict(policy),
        "RecrawlPolicy": {"RecrawlBehavior": recrawl},
    }
    warning = None
    folder = path.rstrip("/").rsplit("/", 1)[-1]
    if table and table != folder:
        if table.endswith(folder) and len(table) > len(folder):
            spec["TablePrefix"] = table[: -len(folder)]
        else:
            warning = (f"crawler {name}: Glue names the table after the folder ('{folder}'), not '{table}'; "
                       f"the Glue crawler creates {database}.{folder}")
    return spec, warning


def predicate(t: Trigger, prefix: str, crawlers: set[str]) -> dict[str, Any]:
    return kind_of(t).glue_fields(t, prefix, crawlers).get("Predicate", {})


def trigger_spec(wf: WorkflowConfig, t: Trigger, d: DeployConfig) -> dict[str, Any]:
    prefix = d.name_prefix
    actions: list[dict[str, Any]] = []
    for a in t.actions:
        if a.crawler:
            actions.append({"CrawlerName": prefix + a.crawler})
        else:
            act: dict[str, Any] = {"JobName": prefix + (a.job or "")}
            if a.arguments:
                act["Arguments"] = to_glue_arguments(a.arguments)
            if a.timeout_minutes:
                act["Timeout"] = a.timeout_minutes
            actions.append(act)
    spec: dict[str, Any] = {
        "Name": trigger_name(prefix, wf.workflow, t.name),
        "WorkflowName": prefix + wf.workflow,
        "Type": kind_of(t).glue_type,
        "Actions": actions,
    }
    spec.update(kind_of(t).glue_fields(t, prefix, set(wf.crawlers)))
    return spec


def trigger_specs(wf: WorkflowConfig, d: DeployConfig) -> list[tuple[Trigger, dict[str, Any]]]:
    """Every trigger of the workflow with its Glue CreateTrigger parameters."""
    return [(t, trigger_spec(wf, t, d)) for t in WorkflowGraph(wf).triggers]


def trigger_name(prefix: str, workflow: str, trigger: str) -> str:
    return f"{prefix}{workflow}__{trigger}"


def event_rule_spec(name: str, path: str, pattern: str, workflow: str, d: DeployConfig,
                    enabled: bool = True) -> dict[str, Any]:
    """The EventBridge rule that feeds an EVENT trigger: S3 'Object Created' events under the watched path (and
    matching its file pattern) go to the Glue workflow. `{partition}`/`{region}`/`{account}` in the target ARN are
    filled in once the account is known."""
    import json

    bucket, _, prefix = to_s3(path)[len("s3://"):].partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    key: dict[str, str] = {"wildcard": prefix + pattern} if pattern not in ("", "*") else {"prefix": prefix}
    event_pattern = {"source": ["aws.s3"], "detail-type": ["Object Created"],
                     "detail": {"bucket": {"name": [bucket]}, "object": {"key": [key]}}}
    return {
        "Name": name,
        "EventPattern": json.dumps(event_pattern, sort_keys=True),
        "State": "ENABLED" if enabled else "DISABLED",
        "Description": f"S3 files of {to_s3(path)}{pattern if pattern != '*' else ''} -> Glue workflow {workflow}",
        "Targets": [{"Id": "glue-workflow", "Arn": "arn:{partition}:glue:{region}:{account}:workflow/" + workflow,
                     "RoleArn": d.role}],
    }


def schedule_group_name(d: DeployConfig, project: str, env: str) -> str:
    """EventBridge Scheduler schedules carry no tags: they live in this project's and env's own (tagged) group."""
    return f"{d.name_prefix}etl-{project}-{env}"[:64]


def state_machine_specs(wf: WorkflowConfig, lw: Any, d: DeployConfig, group: str, runs_root: str,
                        warnings: list[str] | None = None) -> list[tuple[str, dict[str, Any], bool]]:
    """Step Functions: the state machine of a workflow, an EventBridge Scheduler schedule per scheduled trigger (Glue
    cron is EventBridge cron: same six fields, evaluated in UTC) and an EventBridge rule per event trigger (one
    execution per new S3 object). Returns (kind, spec, enabled)."""
    import json

    from etl_framework.deploy.asl import HISTORY_LIMIT, definition_json, state_machine, worst_case_events

    warnings = warnings if warnings is not None else []
    name = d.name_prefix + wf.workflow
    jobs = {n: j.config for n, j in (getattr(lw, "jobs", None) or {}).items()}
    machine = state_machine(wf, jobs, prefix=d.name_prefix, poll_seconds=d.poll_seconds, properties_root=runs_root)
    events = worst_case_events(wf, jobs, d.poll_seconds)
    if events > HISTORY_LIMIT:
        warnings.append(
            f"workflow {wf.workflow}: if every job ran to its timeout_minutes, polling every {d.poll_seconds} s would "
            f"take up to {events:,} execution history events, over Step Functions' {HISTORY_LIMIT:,} (the execution "
            f"would then fail); raise deploy.poll_seconds to {d.poll_seconds * events // HISTORY_LIMIT + 1} or more, "
            "or set shorter timeout_minutes on the jobs")
    out: list[tuple[str, dict[str, Any], bool]] = [("state_machine", {
        "name": name, "definition": definition_json(machine), "roleArn": d.role}, True)]
    arn = SFN_ARN + name
    for t in WorkflowGraph(wf).starters():
        starter = kind_of(t).sfn_starter()
        tname = trigger_name(d.name_prefix, wf.workflow, t.name)
        if starter == "schedule":
            out.append(("schedule", {
                "Name": tname, "GroupName": group, "ScheduleExpression": t.schedule,
                "ScheduleExpressionTimezone": "UTC", "FlexibleTimeWindow": {"Mode": "OFF"},
                "State": "ENABLED" if t.enabled else "DISABLED",
                "Description": f"etl_framework: trigger {t.name} of workflow {wf.workflow}",
                "Target": {"Arn": arn, "RoleArn": d.role, "Input": json.dumps({"trigger": t.name})}}, t.enabled))
        elif starter == "event_rule" and t.watch:
            if t.batch and t.batch.size > 1:
                warnings.append(
                    f"workflow {wf.workflow}, trigger {t.name}: Step Functions starts one execution per new S3 object; "
                    f"Glue's batching ({t.batch.size} files or {t.batch.window_seconds} s) has no EventBridge "
                    "equivalent and is not kept" + (
                        f"; beyond max_concurrent_runs ({wf.max_concurrent_runs}) an execution is refused "
                        "(ConcurrentRunsExceeded)" if wf.max_concurrent_runs else ""))
            rule = event_rule_spec(tname, t.watch.path, t.watch.pattern, name, d, t.enabled)
            rule["Description"] = rule["Description"].replace("Glue workflow", "state machine")
            bucket = json.loads(rule["EventPattern"])["detail"]["bucket"]["name"][0]
            rule["Targets"] = [{
                "Id": "state-machine", "Arn": arn, "RoleArn": d.role,
                "InputTransformer": {
                    "InputPathsMap": {"key": "$.detail.object.key"},
                    "InputTemplate": json.dumps({"trigger": t.name, "run_properties": {
                        "event_files": f"s3://{bucket}/<key>", "event_trigger": t.name}})}}]
            out.append(("event_rule", rule, t.enabled))
    return out


def start_run_schedule_spec(wf: WorkflowConfig, t: Trigger, d: DeployConfig, group: str) -> dict[str, Any]:
    """A scheduled trigger of a Glue workflow whose one start trigger is another (`WorkflowGraph.glue_start`): an
    EventBridge Scheduler schedule (Glue cron is EventBridge cron, in UTC) whose universal target calls Glue's
    StartWorkflowRun with the run properties a Glue schedule would give (`scheduled_time`)."""
    import json

    return {
        "Name": trigger_name(d.name_prefix, wf.workflow, t.name)[:64], "GroupName": group,
        "ScheduleExpression": t.schedule, "ScheduleExpressionTimezone": "UTC", "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED" if t.enabled else "DISABLED",
        "Description": f"etl_framework: trigger {t.name} of workflow {wf.workflow} (Glue StartWorkflowRun)",
        "Target": {"Arn": "arn:{partition}:scheduler:::aws-sdk:glue:startWorkflowRun", "RoleArn": d.role,
                   "Input": json.dumps({"Name": d.name_prefix + wf.workflow, "RunProperties": {
                       "scheduled_time": "<aws.scheduler.scheduled-time>", "trigger": t.name}})}}


def workflow_spec(wf: WorkflowConfig, d: DeployConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "Name": d.name_prefix + wf.workflow,
        "Description": wf.description,
        "DefaultRunProperties": {k: v if isinstance(v, str) else str(v) for k, v in wf.run_properties.items()},
    }
    if wf.max_concurrent_runs:
        spec["MaxConcurrentRuns"] = wf.max_concurrent_runs
    return spec


def _yaml_pos(path: Path, key: str) -> tuple[int, int]:
    """Line/column of `key:` in a file (for env config errors; the env config keeps no positions)."""
    try:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            m = re.match(rf"^(\s*){re.escape(key)}\s*:", line)
            if m:
                return i, len(m.group(1)) + 1
    except OSError:
        pass
    return 1, 1


def check_worker_settings(spec: dict[str, Any], job_file: str, from_job: dict[str, tuple[int, int]],
                          env_file: Path, display_env: str) -> list[ConfigError]:
    """What Glue would reject for a glueetl job, caught before any call."""
    errors: list[ConfigError] = []
    wt, n, name = spec["WorkerType"], spec["NumberOfWorkers"], spec["Name"]

    def at(key: str) -> tuple[str, int, int]:
        if key in from_job:
            return (job_file, *from_job[key])
        return (display_env, *_yaml_pos(env_file, key))

    if wt not in SPARK_WORKER_TYPES:
        why = "streaming jobs" if wt == "G.025X" else "Ray jobs" if wt == "Z.2X" else "other job types"
        f, line, col = at("worker_type")
        errors.append(ConfigError(f, line, col, f"Glue job {name}: worker type {wt} is for {why}, not for Spark "
                                                f"ETL (glueetl) jobs; use one of {', '.join(SPARK_WORKER_TYPES)}"))
    if n < 2:
        f, line, col = at("number_of_workers")
        errors.append(ConfigError(f, line, col, f"Glue job {name}: number_of_workers {n} is below Glue's minimum "
                                                "of 2 for Spark jobs (one driver + executors); use 2 or more"))
    gv = spec["GlueVersion"]
    if GLUE_SPARK.get(gv) != "3.5":
        f, line, col = (display_env, *_yaml_pos(env_file, "glue_version"))
        have = f"Glue {gv} runs Spark {GLUE_SPARK[gv]}" if gv in GLUE_SPARK else f"Glue version {gv} is unknown"
        errors.append(ConfigError(f, line, col, f"{have}, but this project runs Spark 3.5 locally; use "
                                                "glue_version \"5.0\" (Spark 3.5.4, Python 3.11, Delta 3.3)"))
    return errors


def check_paths(cfg: JobConfig, job_file: str, pos: Any) -> list[ConfigError]:
    """A job deployed to Glue must read and write S3, not this machine's disk."""
    errors: list[ConfigError] = []
    places: list[tuple[tuple[Any, ...], str | None]] = [(("sources", k, "path"), s.path) for k, s in cfg.sources.items()]
    places.append((("target", "path"), cfg.target.path))
    for where, path in places:
        if path and not path.startswith(("s3://", "s3a://", "s3n://")):
            line, col = pos(where)
            errors.append(ConfigError(job_file, line, col, f"job {cfg.job}: path {path} is not on S3; a Glue job "
                                                           "cannot read this machine's files (set the env's "
                                                           "vars to s3:// roots)"))
    return errors


def unique(resources: list[Resource]) -> list[Resource]:
    """Drop exact duplicates (a crawler shared by two workflows); conflicting ones are an error."""
    seen: dict[tuple[str, str], Resource] = {}
    for r in resources:
        key = (r.kind, r.name)
        if key in seen:
            if seen[key].spec != r.spec:
                raise UsageError(f"{r.kind} {r.name} is defined differently in {seen[key].source} and {r.source}\n"
                                 "  what to do: give them different names, or make the definitions equal")
            continue
        seen[key] = r
    return list(seen.values())


def build_desired(project: Any, env: str, env_cfg: EnvConfig, jobs: dict[str, Any], workflows: dict[str, Any],
                  files: list[Path], script: Path, wheel: Any) -> DesiredState:
    """The full desired state. `jobs`: name -> LoadedJob, `workflows`: name -> LoadedWorkflow, `files`: project
    files to upload (relative layout kept under `<s3_prefix>/project/`)."""
    from etl_framework.config.project import display_path

    d = env_cfg.deploy
    assert d is not None
    name, given = project_name(project.root, d)
    state = DesiredState(env=env, deploy=d, project=name)
    if not given:
        state.warnings.append(
            f"deploy.project is not set in conf/{env}.yaml: this project deploys as '{name}' (its directory's "
            f"name); set `project: {name}` under deploy: so that every checkout deploys as the same project")
    prefix = state.s3_root
    project_uri = s3_join(prefix, "project") + "/"
    script_uri = s3_join(prefix, "scripts", "etl_job.py")
    wheel_uri = s3_join(prefix, "wheels", wheel.filename)
    state.artifacts.append(Artifact(script_uri, script.read_bytes(), "entry script"))
    state.artifacts.append(Artifact(wheel_uri, wheel.data, "framework wheel"))
    from etl_framework.runtime.spark import HELPER_JAR, jars_dir

    helper = jars_dir(project.root) / HELPER_JAR
    jar_uri = s3_join(prefix, "jars", HELPER_JAR) if helper.is_file() else None
    if jar_uri:
        state.artifacts.append(Artifact(jar_uri, helper.read_bytes(), "framework Spark helper"))
    root = project.root
    env_file = project.env_file(env)
    state.artifacts.append(Artifact(s3_join(project_uri, "conf", f"{env}.yaml"), env_file.read_bytes(),
                                    "env config"))
    for f in files:
        rel = f.resolve().relative_to(root).as_posix()
        state.artifacts.append(Artifact(s3_join(project_uri, rel), f.read_bytes(), "project file"))

    errors: list[ConfigError] = []
    resources: list[Resource] = []
    databases: dict[str, str] = {}
    # Glue refuses a job run beyond the job's MaxConcurrentRuns (default 1): a job of a workflow that may run N
    # times at once must accept N concurrent runs (an unlimited workflow keeps Glue's default).
    concurrency: dict[str, int] = {}
    for lw in workflows.values():
        for jname in lw.config.jobs:
            concurrency[jname] = max(concurrency.get(jname, 1), lw.config.max_concurrent_runs or 1)
    for name, lj in sorted(jobs.items()):
        cfg: JobConfig = lj.config
        rel = lj.path.resolve().relative_to(root).as_posix()
        from etl_framework.stages.jdbc import driver_jars

        driver_uris = []
        for jar in driver_jars(cfg, root, jars_dir(root)):  # jdbc sources: their drivers travel with the job
            uri = s3_join(prefix, "jars", jar.name)
            if jar.is_file() and not any(a.uri == uri for a in state.artifacts):
                state.artifacts.append(Artifact(uri, jar.read_bytes(), "JDBC driver"))
            driver_uris.append(uri)
        spec = job_spec(cfg, lj.params, d, env, job_uri=s3_join(project_uri, rel), project_uri=project_uri,
                        script_uri=script_uri, wheel_uri=wheel_uri, temp_uri=s3_join(prefix, "tmp") + "/",
                        jar_uri=jar_uri, driver_uris=driver_uris)
        if d.connections and "Connections" not in spec and any(s.format == "jdbc" for s in cfg.sources.values()):
            # the Glue Connection(s) give the job's workers a network path to the database (VPC, subnet, SG)
            spec["Connections"] = {"Connections": list(d.connections)}
        spec["ExecutionProperty"] = {"MaxConcurrentRuns": concurrency.get(cfg.job, 1)}
        if d.orchestrator == "step_functions":  # the state machine's Retry retries (one retry mechanism, not two)
            spec["MaxRetries"] = 0
        jf = display_path(lj.path)
        from_job: dict[str, tuple[int, int]] = {}
        doc = lj.doc
        if cfg.glue and doc is not None:
            if cfg.glue.worker_type:
                from_job["worker_type"] = doc.pos(("glue", "worker_type"))
            if cfg.glue.number_of_workers:
                from_job["number_of_workers"] = doc.pos(("glue", "number_of_workers"))
        errors += check_worker_settings(spec, jf, from_job, env_file, display_path(env_file))
        errors += check_paths(cfg, jf, (lambda p, doc=doc: doc.pos(p) if doc else (1, 1)))
        resources.append(Resource("job", spec["Name"], spec, jf, tags=dict(cfg.glue.tags) if cfg.glue else {}))
        for c in cfg.crawl:
            databases.setdefault(c.database, jf)
        if cfg.register:
            databases.setdefault(cfg.register.database, jf)
    for wname, lw in sorted(workflows.items()):
        wf: WorkflowConfig = lw.config
        wfile = display_path(lw.path)
        for cname, c in sorted(wf.crawlers.items()):
            if not c.path.startswith(("s3://", "s3a://", "s3n://")):
                line, col = lw.doc.pos(("crawlers", cname, "path")) if lw.doc else (1, 1)
                errors.append(ConfigError(wfile, line, col, f"crawler {cname}: path {c.path} is not on S3; a Glue "
                                                            "crawler crawls S3 (set the env's vars to s3:// roots)"))
            spec, warning = crawler_spec(cname, c.path, c.database, c.table, c.schema_change, d, wname)
            if warning:
                state.warnings.append(warning)
            resources.append(Resource("crawler", spec["Name"], spec, wfile))
            databases.setdefault(c.database, wfile)
        if d.orchestrator == "step_functions":
            group = schedule_group_name(d, state.project, env)
            try:
                made = state_machine_specs(wf, lw, d, group, s3_join(prefix, "runs"), state.warnings)
            except ValueError as e:  # AslError: over the size limit, a cycle
                errors.append(ConfigError(wfile, 1, 1, f"workflow {wname}: {e}"))
                continue
            for kind, spec, enabled in made:
                if kind == "schedule":
                    resources.append(Resource("schedule_group", group, {"Name": group}, wfile))
                rname = spec.get("Name") or spec["name"]
                resources.append(Resource(kind, rname, spec, wfile, enabled=enabled))
            continue
        resources.append(Resource("workflow", d.name_prefix + wname, workflow_spec(wf, d), wfile))
        graph = WorkflowGraph(wf)
        for i, msg in graph.glue_problems():
            line, col = lw.doc.pos(("triggers", i, "name")) if lw.doc else (1, 1)
            errors.append(ConfigError(wfile, line, col, msg))
        primary, by_start_run = graph.glue_start()
        for t in by_start_run:
            if kind_of(t).scheduler_source == "schedule":  # a further schedule: StartWorkflowRun on its cron
                group = schedule_group_name(d, state.project, env)
                resources.append(Resource("schedule_group", group, {"Name": group}, wfile))
                spec = start_run_schedule_spec(wf, t, d, group)
                resources.append(Resource("schedule", spec["Name"], spec, wfile, enabled=t.enabled))
            else:
                what = kind_of(t).describe(t, with_next=False)
                state.warnings.append(
                    f"workflow {wname}: trigger {t.name} ({what}) is not a Glue trigger: a Glue workflow has one "
                    f"start trigger ({primary.name if primary else '-'}); start a run on demand with `aws glue "
                    f"start-workflow-run --name {d.name_prefix + wname}`")
        for t, spec in trigger_specs(wf, d):
            if t in by_start_run:
                continue
            resources.append(Resource("trigger", spec["Name"], spec, wfile,
                                      enabled=t.enabled and kind_of(t).glue_activated))
            if kind_of(t).sfn_starter() == "event_rule" and t.watch:
                if not t.watch.path.startswith(("s3://", "s3a://", "s3n://")):
                    idx = wf.triggers.index(t)
                    line, col = lw.doc.pos(("triggers", idx, "watch", "path")) if lw.doc else (1, 1)
                    errors.append(ConfigError(wfile, line, col, f"trigger {t.name}: watch path {t.watch.path} is "
                                                                "not on S3; on Glue an event trigger watches S3"))
                    continue
                rule = event_rule_spec(spec["Name"], t.watch.path, t.watch.pattern, d.name_prefix + wname, d,
                                       t.enabled)
                resources.append(Resource("event_rule", rule["Name"], rule, wfile))
    if d.kms_key:
        add_security_configuration(state, resources, display_path(env_file))
    if d.iam == "generate":
        errors += add_generated_roles(state, env_cfg, jobs, workflows, resources, display_path(env_file))
    from etl_framework.deploy.alerts import alarm_resources, alert_resources, late_minutes

    resources += alert_resources(state, env_cfg, jobs, workflows, display_path(env_file), env_file)
    resources += alarm_resources(state, env_cfg, jobs, display_path(env_file))
    late = late_minutes(state, env_cfg, jobs, workflows)
    for r in resources:  # notifications.late_after_minutes: Glue's own delay notification on the job
        if r.kind == "job" and r.name in late:
            r.spec["NotificationProperty"] = {"NotifyDelayAfter": late[r.name]}
    if errors:
        raise ConfigErrors(errors)
    for db, src in sorted(databases.items()):
        resources.append(Resource("database", db, {"Name": db}, src))
    if env_cfg.state.backend == "dynamodb":  # made here so that the Glue role needs no dynamodb:CreateTable
        table = f"{env_cfg.state.table_prefix}state"
        resources.append(Resource("state_table", table, {"TableName": table}, display_path(env_file)))
    resources = unique(resources)
    resources.sort(key=lambda r: (KIND_ORDER.index(r.kind), r.name))
    state.resources = resources
    return state


SECURITY_CONFIGURATION = "{prefix}etl-{project}-{env}"
KMS_ARN = "{kms_key_arn}"  # the key's ARN, filled in once deploy has resolved deploy.kms_key (an alias too)


def security_configuration_name(state: DesiredState) -> str:
    return SECURITY_CONFIGURATION.format(prefix=state.deploy.name_prefix, project=state.project, env=state.env)[:255]


def security_configuration_spec(name: str) -> dict[str, Any]:
    """Glue's SecurityConfiguration: S3 SSE-KMS, CloudWatch logs SSE-KMS, job bookmarks CSE-KMS, one key."""
    return {"Name": name, "EncryptionConfiguration": {
        "S3Encryption": [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": KMS_ARN}],
        "CloudWatchEncryption": {"CloudWatchEncryptionMode": "SSE-KMS", "KmsKeyArn": KMS_ARN},
        "JobBookmarksEncryption": {"JobBookmarksEncryptionMode": "CSE-KMS", "KmsKeyArn": KMS_ARN}}}


def s3a_kms_conf(key: str) -> dict[str, str]:
    """Spark's S3A writes with SSE-KMS and the project's key (Hadoop 3.3 names)."""
    return {"spark.hadoop.fs.s3a.server-side-encryption-algorithm": "SSE-KMS",
            "spark.hadoop.fs.s3a.server-side-encryption.key": key}


def add_security_configuration(state: DesiredState, resources: list[Resource], src: str) -> None:
    """Every job and crawler gets the project's security configuration; jobs also write S3A with SSE-KMS."""
    name = security_configuration_name(state)
    resources.insert(0, Resource("security_configuration", name, security_configuration_spec(name), src))
    for r in resources:
        if r.kind == "job":
            r.spec["SecurityConfiguration"] = name
            args = r.spec["DefaultArguments"]
            args["--conf"] += "".join(f" --conf {k}={v}" for k, v in s3a_kms_conf(KMS_ARN).items())
        elif r.kind == "crawler":
            r.spec["CrawlerSecurityConfiguration"] = name


def add_generated_roles(state: DesiredState, env_cfg: EnvConfig, jobs: dict[str, Any], workflows: dict[str, Any],
                        resources: list[Resource], src: str) -> list[ConfigError]:
    """`deploy: {iam: generate}`: a role per job, one for the crawlers, one for the orchestrator; every Role /
    RoleArn of the resources points at its generated role. Returns the config errors (dynamic secret names)."""
    import json

    from etl_framework.config.project import display_path
    from etl_framework.deploy import iam

    d, project, env = state.deploy, state.project, state.env
    errors: list[ConfigError] = []
    sfn = d.orchestrator == "step_functions"
    in_workflows: dict[str, list[str]] = {}
    for wname, lw in workflows.items():
        for jname in lw.config.jobs:
            in_workflows.setdefault(jname, []).append(d.name_prefix + wname)
    roles: dict[str, iam.RolePlan] = {}
    for name, lj in sorted(jobs.items()):
        if lj.doc is not None:
            errors += iam.dynamic_secret_errors(lj.doc, name, lj.doc.file)
        glue_name = d.name_prefix + name
        policy = iam.job_policy(lj.config, env_cfg, project=project, env=env, s3_root=state.s3_root,
                                glue_job=glue_name, workflows=[] if sfn else in_workflows.get(name, []),
                                state_machine_runs=sfn)
        size = len(json.dumps(policy, separators=(",", ":")))
        if size > iam.INLINE_POLICY_LIMIT:
            errors.append(ConfigError(display_path(lj.path), 1, 1, (
                f"job {name}: its generated policy is {size:,} characters, over IAM's {iam.INLINE_POLICY_LIMIT:,} for "
                "a role's inline policies; read fewer prefixes (a common parent folder) or bring your own role")))
        rname = iam.role_name(d.name_prefix, project, env, f"job-{name}")
        roles[glue_name] = iam.RolePlan(rname, f"job:{name}", iam.trust_policy(iam.TRUST["job"]), policy)
    crawled = [(r.spec["Targets"]["S3Targets"][0]["Path"], r.spec["DatabaseName"], None)
               for r in resources if r.kind == "crawler"]
    crawler_role = None
    if crawled:
        crawler_role = iam.RolePlan(iam.role_name(d.name_prefix, project, env, "crawlers"), "crawlers",
                                    iam.trust_policy(iam.TRUST["crawlers"]),
                                    iam.crawler_policy(crawled, bool(d.kms_key)))
    orchestrated = [r for r in resources if r.kind in ("state_machine", "schedule", "event_rule")]
    orch_role = None
    if orchestrated:
        policy = iam.orchestrator_policy(
            [r.name for r in resources if r.kind == "job"], [r.name for r in resources if r.kind == "crawler"],
            [r.spec["Targets"][0]["Arn"].rsplit("/", 1)[-1] for r in resources
             if r.kind == "event_rule" and ":workflow/" in r.spec["Targets"][0]["Arn"]],
            [r.spec["name"] for r in resources if r.kind == "state_machine"],
            s3_join(state.s3_root, "runs") if sfn else None, [], bool(d.kms_key),
            [json.loads(r.spec["Target"]["Input"])["Name"] for r in resources
             if r.kind == "schedule" and r.spec["Target"]["Arn"].endswith(":glue:startWorkflowRun")])
        orch_role = iam.RolePlan(iam.role_name(d.name_prefix, project, env, "orchestrator"), "orchestrator",
                                 iam.trust_policy(iam.TRUST["orchestrator"]), policy)
    for r in resources:
        if r.kind == "job":
            role = roles[r.name]
            r.spec["Role"] = role.arn
            group = iam.job_log_group(project, env, r.name[len(d.name_prefix):])
            r.spec["DefaultArguments"].update({"--enable-continuous-cloudwatch-log": "true",
                                               "--continuous-log-logGroup": group})
        elif r.kind == "crawler" and crawler_role:
            r.spec["Role"] = crawler_role.arn
        elif orch_role and r.kind == "state_machine":
            r.spec["roleArn"] = orch_role.arn
        elif orch_role and r.kind == "schedule":
            r.spec["Target"]["RoleArn"] = orch_role.arn
        elif orch_role and r.kind == "event_rule":
            for t in r.spec["Targets"]:
                t["RoleArn"] = orch_role.arn
    plans = [*roles.values(), *([crawler_role] if crawler_role else []), *([orch_role] if orch_role else [])]
    for p in plans:
        resources.insert(0, Resource("role", p.name, role_spec(p, project, env), src))
    return errors


ROLE_POLICY = "etl-least-privilege"


def role_spec(p: Any, project: str, env: str) -> dict[str, Any]:
    from etl_framework.deploy.iam import ROLE_PATH

    return {"RoleName": p.name, "Path": ROLE_PATH, "Description": f"etl_framework {p.purpose} of project {project}, env {env} "
                                               "(generated from the YAML)",
            "AssumeRolePolicyDocument": p.trust, "PolicyName": ROLE_POLICY, "PolicyDocument": p.policy}
