"""The one model of the config language: job files, workflow files and environment configs.

Every key a user can write is a field here; validation, the JSON Schema (`etl schema`), the defaults and the YAML
reference in the README all come from these classes. Checks that need more than one field or outside knowledge
(SQL parsing, GX registry, cron, references between files) live in `checks.py`, not here, so that the model stays
importable in milliseconds.
"""

from __future__ import annotations

import builtins
import re
import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from etl_framework.workflow_graph import maintain_node

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
IDENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

SourceFormat = Literal["csv", "json", "parquet", "delta", "iceberg", "catalog", "jdbc"]
TargetFormat = Literal["delta", "iceberg", "parquet"]
WriteMode = Literal["append", "overwrite", "overwrite_partitions", "merge"]
BadRecords = Literal["fail", "drop", "quarantine"]
QUARANTINE_FORMAT = "delta"  # the quality gate's quarantine table
BAD_RECORDS_FORMAT = "parquet"  # malformed input rows (bad_records: quarantine)
OnFail = Literal["fail", "quarantine", "warn"]
SchemaChange = Literal["log", "update", "fail"]
JobState = Literal["SUCCEEDED", "STOPPED", "FAILED", "TIMEOUT"]
CrawlerState = Literal["SUCCEEDED", "FAILED", "CANCELLED"]
NodeState = Literal["SUCCEEDED", "STOPPED", "FAILED", "TIMEOUT", "CANCELLED"]
MIN_RETAIN_HOURS = 168  # tables.base.DEFAULT_RETAIN_HOURS: `etl maintain --retain-hours` and `maintain:` actions


class Strict(BaseModel):
    """Unknown keys are errors (with a 'did you mean'), never silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ------------------------------------------------------------------------------------------------- notifications

NotifyEvent = Literal["failed", "timeout", "quality_failed", "succeeded"]


class Notifications(Strict):
    """Who hears about a run (SPEC §13): the env config's block, overridden key by key by a workflow's and then a
    job's own `notifications:`. A notification never changes a run's result."""

    events: list[NotifyEvent] | None = Field(
        None, description="end states that notify; default [failed, timeout, quality_failed] (add succeeded to "
                          "opt in)")
    quarantine_above: int | str | None = Field(
        None, description="also notify when a run quarantines more than N rows, or more than 'P%' of its rows")
    late_after_minutes: int | None = Field(None, ge=1, description="also notify when a run takes longer than this")
    webhook: str | None = Field(None, description="http(s) URL: a JSON POST per notification, retried with backoff")
    command: list[str] | None = Field(None, description="argv run per notification; the JSON on its stdin")
    sns: str | None = Field(None, description="SNS topic ARN (on AWS: EventBridge rules created by `etl deploy`)")
    timeout_seconds: float = Field(5.0, gt=0, le=60, description="per webhook attempt")
    attempts: int = Field(3, ge=1, le=10, description="webhook attempts in all")

    @builtins.property
    def events_or_default(self) -> list[str]:
        return list(self.events) if self.events is not None else ["failed", "timeout", "quality_failed"]

    @model_validator(mode="after")
    def _threshold(self) -> Notifications:
        q = self.quarantine_above
        if isinstance(q, str) and not re.fullmatch(r"\d+(\.\d+)?%", q.strip()):
            raise ValueError("quarantine_above is a row count (100) or a percentage ('5%')")
        if self.webhook and not self.webhook.startswith(("http://", "https://")):
            raise ValueError("webhook must be an http:// or https:// URL")
        if self.sns and not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+", self.sns):
            raise ValueError("sns must be a topic ARN: arn:aws:sns:REGION:ACCOUNT:NAME")
        return self


# --------------------------------------------------------------------------------------------------- job file


class Incremental(Strict):
    """Bookmark of an incremental source: `files` remembers processed files by path, size and mtime;
    `watermark` remembers the highest value of `column` written."""

    mode: Literal["files", "watermark"]
    column: str | list[str] | None = Field(
        None, description="watermark column (mode: watermark only); jdbc sources also take a compound key "
        "[updated_at, id] (ties broken by the later columns, as Glue's jobBookmarkKeys)")

    @property
    def columns(self) -> list[str]:
        """The watermark key as a list (one column, or a compound key)."""
        if self.column is None:
            return []
        return [self.column] if isinstance(self.column, str) else list(self.column)

    @model_validator(mode="after")
    def _column_matches_mode(self) -> Incremental:
        if self.mode == "watermark" and not self.column:
            raise ValueError("incremental mode 'watermark' needs 'column'")
        if isinstance(self.column, list) and len(set(self.column)) != len(self.column):
            raise ValueError("a compound watermark key lists each column once")
        if self.mode == "files" and self.column:
            raise ValueError("'column' is only for incremental mode 'watermark'")
        return self


class Parallel(Strict):
    """A parallel JDBC read (Spark's partitionColumn/lowerBound/upperBound/numPartitions; Glue's
    hashfield/hashpartitions): `partitions` queries, each reading one stride of `column`'s range."""

    column: str = Field(description="numeric, date or timestamp column (or SQL expression) that strides the read")
    partitions: int = Field(4, ge=1, le=1000, description="parallel queries (Spark's numPartitions)")
    lower_bound: int | float | str | None = Field(
        None, description="first stride's start; default: min(column), found with one cheap query")
    upper_bound: int | float | str | None = Field(
        None, description="last stride's end; default: max(column), found with one cheap query")


class Source(Strict):
    """One input; it becomes a temp view named by its key in `sources`."""

    format: SourceFormat
    path: str | None = Field(None, description="file or folder (csv/json/parquet/delta)")
    table: str | None = Field(None, description="database.table (format: catalog)")
    options: dict[str, Any] = Field(default_factory=dict, description="Spark reader options")
    schema_: dict[str, str] | Literal["infer", "catalog"] | None = Field(
        None,
        alias="schema",
        description="column -> Spark SQL type, or 'infer', or 'catalog'; default: infer (catalog for catalog sources)",
    )
    incremental: Incremental | None = None
    bad_records: BadRecords = Field("fail", description="what to do with malformed rows")
    push_down_predicate: str | None = Field(None, description="partition predicate (format: catalog)")
    url: str | None = Field(None, description="jdbc:<subprotocol>://host:port/database (format: jdbc)")
    query: str | None = Field(None, description="a SELECT run by the database, instead of 'table' (format: jdbc)")
    user: str | None = Field(None, description="database user (format: jdbc)")
    password: str | None = Field(None, description="${secret:NAME} only (format: jdbc); never logged or stored")
    driver: str | None = Field(None, description="JDBC driver class; default from the url (postgresql, mysql, "
                               "mariadb, sqlserver, oracle, redshift, sqlite)")
    fetchsize: int | None = Field(None, ge=1, description="rows fetched per round trip (format: jdbc; default 1000)")
    parallel: Parallel | None = Field(None, description="parallel read in strides of a column (format: jdbc)")
    jars: list[str] = Field(default_factory=list, description="extra driver JARs for this source's database "
                            "(format: jdbc), added to the Spark session's classpath; relative to the job file")

    @model_validator(mode="after")
    def _location(self) -> Source:
        jdbc_only = ("url", "query", "user", "password", "driver", "fetchsize", "parallel")
        if self.format != "jdbc":
            given = [k for k in jdbc_only if getattr(self, k) is not None] + (["jars"] if self.jars else [])
            if given:
                raise ValueError(f"'{given[0]}' is only for format 'jdbc'")
        if self.format == "jdbc":
            if not self.url:
                raise ValueError("a 'jdbc' source needs 'url: jdbc:<database>://host:port/name'")
            if bool(self.table) == bool(self.query):
                raise ValueError("a 'jdbc' source needs exactly one of 'table' or 'query'")
            if self.path:
                raise ValueError("a 'jdbc' source reads from 'url'; remove 'path'")
            if self.push_down_predicate:
                raise ValueError("'push_down_predicate' is only for format 'catalog'")
        elif self.format == "catalog":
            if not self.table:
                raise ValueError("a 'catalog' source needs 'table: database.table'")
            if self.path:
                raise ValueError("a 'catalog' source takes its location from the catalog; remove 'path'")
            if "." not in self.table:
                raise ValueError(f"table '{self.table}' must be 'database.table'")
        else:
            if self.table:
                raise ValueError(f"'table' is for format 'catalog' or 'jdbc'; a '{self.format}' source has 'path'")
            if not self.path:
                raise ValueError(f"a '{self.format}' source needs 'path'")
            if self.push_down_predicate:
                raise ValueError("'push_down_predicate' is only for format 'catalog'")
        return self


class CrawlSpec(Strict):
    """A crawl run before extract: discovers schema and partitions of a source into the catalog."""

    source: str | None = Field(None, description="name of a source of this job (its path is crawled)")
    path: str | None = Field(None, description="folder to crawl, instead of 'source'")
    database: str
    table: str | None = Field(None, description="default: the crawled folder's name, as Glue names it")
    schema_change: SchemaChange = "log"

    @model_validator(mode="after")
    def _one_location(self) -> CrawlSpec:
        if bool(self.source) == bool(self.path):
            raise ValueError("a crawl entry needs exactly one of 'source' or 'path'")
        return self


class Dedupe(Strict):
    keys: list[str] = Field(min_length=1)
    order_by: str | list[str] | None = Field(
        None, description="SQL ORDER BY terms; the first row per key in this order is kept"
    )


class Join(Strict):
    with_: str = Field(alias="with", description="name of a source view to join with")
    on: str | list[str] = Field(description="column names (equi-join) or a SQL condition")
    how: Literal["inner", "left", "right", "full", "left_semi", "left_anti", "cross"] = "inner"


class Union(Strict):
    with_: list[str] = Field(alias="with", min_length=1, description="source views appended to the current data")
    by_name: bool = True
    allow_missing_columns: bool = False
    distinct: bool = False


class Aggregate(Strict):
    group_by: list[str] = Field(default_factory=list)
    aggs: dict[str, str] = Field(min_length=1, description="output column -> aggregate SQL expression")


STEP_KINDS = (
    "sql", "select", "filter", "with_columns", "rename", "cast", "drop", "dedupe", "join", "union",
    "aggregate", "python",
)


class TransformStep(Strict):
    """One transform step: exactly one of the keys below. Each step reads the previous step's result
    (the first step: the first source); `sql` steps see every source as a view and the previous result as the view `previous`."""

    name: str | None = Field(None, description="optional label shown in progress and run records")
    sql: str | None = Field(None, description="a Spark SQL query")
    select: list[str] | None = Field(None, description="SQL expressions")
    filter: str | None = Field(None, description="SQL boolean expression; rows where it is true are kept")
    with_columns: dict[str, str] | None = Field(None, description="column -> SQL expression")
    rename: dict[str, str] | None = Field(None, description="old name -> new name")
    cast: dict[str, str] | None = Field(None, description="column -> Spark SQL type")
    drop: list[str] | None = None
    dedupe: Dedupe | None = None
    join: Join | None = None
    union: Union | None = None
    aggregate: Aggregate | None = None
    python: str | None = Field(None, description="'package.module:function', called as function(df, ctx) -> df")

    @model_validator(mode="after")
    def _exactly_one(self) -> TransformStep:
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a transform step needs exactly one of " + ", ".join(STEP_KINDS)
                + (f" (found {', '.join(kinds)})" if kinds else "")
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    @property
    def arg(self) -> Any:
        return getattr(self, self.kind)


class Expectation(BaseModel):
    """A Great Expectations expectation: its type in `expect` and GX's own keyword arguments beside it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    expect: str = Field(description="GX expectation type, e.g. expect_column_values_to_not_be_null")
    on_fail: OnFail = "fail"
    name: str | None = Field(None, description="rule name used in results and quarantine; default derived")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def rule_name(self) -> str:
        if self.name:
            return self.name
        col = self.kwargs.get("column")
        return f"{self.expect}({col})" if col else self.expect


class Target(Strict):
    format: TargetFormat = "delta"
    path: str
    partition_by: list[str] = Field(default_factory=list)
    mode: WriteMode = "append"
    merge_keys: list[str] = Field(default_factory=list, description="merge only (delta, iceberg)")
    options: dict[str, Any] = Field(default_factory=dict, description="Spark writer options")
    quarantine_path: str | None = Field(None, description="default: '<path>_quarantine' (a Delta table)")
    schema_evolution: Literal["add_columns", "fail"] = Field(
        "fail", description="new columns in the data: add them to the target (and its quarantine), or stop "
        "before any commit naming them; a changed column type always stops")

    @model_validator(mode="after")
    def _merge(self) -> Target:
        if self.mode == "merge":
            if not self.merge_keys:
                raise ValueError("mode 'merge' needs 'merge_keys'")
            if self.format not in ("delta", "iceberg"):
                raise ValueError("mode 'merge' needs format 'delta' or 'iceberg'")
        elif self.merge_keys:
            raise ValueError("'merge_keys' is only for mode 'merge'")
        return self


class Register(Strict):
    database: str
    table: str
    description: str | None = None


class Retries(Strict):
    max_attempts: int = Field(1, ge=1, le=10, description="attempts in all, the first included")
    backoff_seconds: float = Field(0, ge=0)
    backoff_rate: float = Field(2.0, ge=1.0)


# Job arguments the framework sets itself (what the entry script reads, how Glue finds the code): never overridden
# by `default_arguments`, where a typo would silently break every run of the job.
GLUE_OWNED_ARGUMENTS = ("--job_config", "--env", "--project_dir", "--datalake-formats",
                        "--additional-python-modules", "--conf", "--TempDir", "--job-bookmark-option",
                        "--extra-jars", "--enable-glue-datacatalog")


class GlueRunSettings(Strict):
    """The Glue job settings data engineers set (deploy): in the env's `deploy:` for every job, in a job's `glue:`
    for that job (the job's value wins; unset = Glue's default)."""

    execution_class: Literal["STANDARD", "FLEX"] | None = Field(
        None, description="FLEX runs on spare capacity at a lower price (may start later; G.1X/G.2X workers)")
    auto_scaling: bool | None = Field(None, description="--enable-auto-scaling: number_of_workers is the maximum")
    metrics: bool | None = Field(None, description="--enable-metrics: Glue's job metrics in CloudWatch")
    observability_metrics: bool | None = Field(None, description="--enable-observability-metrics")
    spark_ui: bool | None = Field(None, description="--enable-spark-ui, event logs under <upload prefix>/sparkui/")
    continuous_logging: bool | None = Field(None, description="--enable-continuous-cloudwatch-log")
    job_insights: bool | None = Field(None, description="--enable-job-insights")
    spark_conf: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Spark confs for the job on Glue, passed as --conf (static ones: memory, "
        "shuffle; the env's `spark:` block is for local runs)")
    default_arguments: dict[str, str] = Field(
        default_factory=dict, description="more Glue job arguments, e.g. {'--enable-auto-scaling': 'true'}; the "
        "arguments the framework sets itself cannot be overridden")
    connections: list[str] | None = Field(
        None, description="Glue connections (VPC, subnet, security group) the job's workers use, jdbc or not")
    tags: dict[str, str] = Field(
        default_factory=dict, description="your tags (cost allocation, owner), on every resource deploy makes (env "
        "`deploy:`) or on the job (`glue:`, added to the env's); the `etl:` tags that mark ownership are the "
        "framework's")

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if k.lower().startswith(("etl:", "aws:"))]
        if bad:
            raise ValueError(f"tags {', '.join(bad)}: keys starting with 'aws:' are AWS's and 'etl:' the framework's "
                             "(they mark what --prune may delete)")
        long = [k for k, x in v.items() if not 1 <= len(k) <= 128 or len(str(x)) > 256]
        if long:
            raise ValueError(f"tags {', '.join(long)}: AWS takes keys of 1-128 and values of up to 256 characters")
        if len(v) > 47:
            raise ValueError(f"{len(v)} tags: AWS takes 50 per resource, 3 of them the framework's ownership tags")
        return v

    @field_validator("default_arguments")
    @classmethod
    def _not_owned(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not k.startswith("--") or k in GLUE_OWNED_ARGUMENTS]
        if bad:
            raise ValueError(f"default_arguments {', '.join(bad)}: Glue arguments start with '--', and these are "
                             f"set by the framework: {', '.join(GLUE_OWNED_ARGUMENTS)}")
        return v


class GlueJobSettings(GlueRunSettings):
    """Per-job overrides of the env config's Glue settings (deploy)."""

    worker_type: Literal["G.1X", "G.2X", "G.4X", "G.8X", "G.025X", "Z.2X"] | None = None
    number_of_workers: int | None = Field(None, ge=1)


# `register` is a field name users write; pydantic warns that it shadows ABCMeta.register of the class (not of
# instances, where the field value is what `cfg.register` returns).
warnings.filterwarnings("ignore", message='Field name "register" in "JobConfig" shadows', category=UserWarning)


class JobConfig(Strict):
    job: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict, description="defaults; override with --param k=v")
    sources: dict[str, Source] = Field(min_length=1)
    crawl: list[CrawlSpec] = Field(default_factory=list)
    transform: list[TransformStep] = Field(default_factory=list)
    quality: list[Expectation] = Field(default_factory=list)
    target: Target
    register: Register | None = None
    retries: Retries = Field(default_factory=Retries)
    timeout_minutes: int | None = Field(None, ge=1, description="default: none locally, 2880 on Glue")
    glue: GlueJobSettings | None = None
    notifications: Notifications | None = Field(None, description="overrides the env's and workflow's, key by key")

    def quarantine_location(self) -> str:
        """`target.quarantine_path`, else `<target.path>_quarantine`."""
        return self.target.quarantine_path or self.target.path.rstrip("/") + "_quarantine"

    def bad_records_location(self) -> str:
        return self.target.path.rstrip("/") + "_bad_records"

    def tables_written(self) -> dict[str, str]:
        """Every table a run of the job may write — its target, quarantine and bad-records tables — with its
        format: what a run locks, and what may hold nothing but its own table."""
        out = {self.target.path: self.target.format}
        if any(r.on_fail == "quarantine" for r in self.quality):
            out.setdefault(self.quarantine_location(), QUARANTINE_FORMAT)
        if any(s.bad_records == "quarantine" for s in self.sources.values()):
            out.setdefault(self.bad_records_location(), BAD_RECORDS_FORMAT)
        return out


# ---------------------------------------------------------------------------------------------- workflow file


class WorkflowCrawler(Strict):
    path: str
    database: str
    table: str | None = Field(None, description="default: the crawled folder's name, as Glue names it")
    schema_change: SchemaChange = "log"


class Action(Strict):
    """What a trigger starts: a job, a crawler, or the maintenance of a job's tables (`maintain: JOB`, as
    `etl maintain JOB`: its target, quarantine and bad-records tables; run by the local engine, node
    `maintain:JOB`)."""

    job: str | None = None
    crawler: str | None = None
    maintain: str | None = Field(None, description="a job of this workflow whose tables to compact and clean up "
                                 "(target, quarantine, bad records), as `etl maintain`; local engine only")
    arguments: dict[str, Any] = Field(default_factory=dict, description="override job params")
    timeout_minutes: int | None = Field(None, ge=1)
    zorder: list[str] = Field(default_factory=list, description="maintain actions: Z-order by these columns "
                              "(Delta, Iceberg)")
    retain_hours: float | None = Field(None, description="maintain actions: keep files replaced less than this "
                                       "long ago (default and minimum 168; raised to cover the oldest running job)")

    @field_validator("retain_hours")
    @classmethod
    def _retention(cls, v: float | None) -> float | None:
        if v is not None and v < MIN_RETAIN_HOURS:
            raise ValueError(f"retain_hours {v:g}: files replaced less than {MIN_RETAIN_HOURS} hours ago may still "
                             f"be read (a reader of an older version, a job that began before); give "
                             f"{MIN_RETAIN_HOURS} or more")
        return v

    @model_validator(mode="after")
    def _one(self) -> Action:
        if sum(bool(x) for x in (self.job, self.crawler, self.maintain)) != 1:
            raise ValueError("an action names exactly one of 'job', 'crawler' or 'maintain'")
        if not self.job and self.arguments:
            raise ValueError("'arguments' are only for job actions")
        if not self.maintain and (self.zorder or self.retain_hours is not None):
            raise ValueError("'zorder' and 'retain_hours' are only for maintain actions")
        return self

    @property
    def node(self) -> str:
        return maintain_node(self.maintain) if self.maintain else self.job or self.crawler or ""

    @property
    def kind(self) -> str:
        return "maintain" if self.maintain else "crawler" if self.crawler else "job"

    def maintain_options(self) -> dict[str, Any]:
        """A maintain action's options as its node's arguments (what the run record shows)."""
        out: dict[str, Any] = {}
        if self.zorder:
            out["zorder"] = list(self.zorder)
        if self.retain_hours is not None:
            out["retain_hours"] = self.retain_hours
        return out


class Condition(Strict):
    """A node's end state (Glue's Condition: `{job: J, state: SUCCEEDED}`; `{maintain: J, state: SUCCEEDED}` watches
    the maintenance of job J's tables), or, beyond Glue, a run property a job wrote (`{property: auc, op: ">=",
    value: 0.8}`; run locally and on Step Functions, refused for Glue Workflows)."""

    job: str | None = None
    crawler: str | None = None
    maintain: str | None = Field(None, description="the maintenance of this job's tables (a `maintain:` action)")
    state: NodeState | None = Field(None, description="the node's end state (job, crawler and maintain conditions)")
    property: str | None = Field(
        None, pattern=IDENT_PATTERN,
        description="a run property (written by a job of the run, or given at start), compared with 'value'")
    op: Literal[">=", ">", "<=", "<", "==", "!="] | None = Field(
        None, description="property conditions: >=, >, <=, < compare numbers; == and != numbers or text")
    value: str | int | float | bool | None = Field(None, description="property conditions: what 'op' compares with")

    @model_validator(mode="after")
    def _one(self) -> Condition:
        if sum(bool(x) for x in (self.job, self.crawler, self.maintain, self.property)) != 1:
            raise ValueError("a condition names exactly one of 'job', 'crawler', 'maintain' or 'property'")
        if self.property:
            if self.state:
                raise ValueError("'state' is for job, crawler and maintain conditions; a property condition has "
                                 "'op' and 'value'")
            if self.op is None or self.value is None:
                raise ValueError("a property condition needs 'op' (>=, >, <=, <, ==, !=) and 'value'")
        else:
            if self.state is None:
                raise ValueError("a job, crawler or maintain condition needs 'state'")
            if self.op is not None or self.value is not None:
                raise ValueError("'op' and 'value' are only for property conditions")
        return self

    @builtins.property  # the field `property` shadows the builtin in this class body
    def node(self) -> str:
        return maintain_node(self.maintain) if self.maintain else self.job or self.crawler or ""


class Watch(Strict):
    path: str
    pattern: str = "*"


class Batch(Strict):
    """Glue's EventBatchingCondition."""

    size: int = Field(1, ge=1, le=100)
    window_seconds: int = Field(900, ge=1, le=900)


class Trigger(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    type: Literal["on_demand", "scheduled", "conditional", "event"]
    schedule: str | None = Field(None, description="AWS Glue cron: cron(Min Hour DoM Month DoW Year), UTC")
    logical: Literal["and", "any"] = "and"
    conditions: list[Condition] = Field(default_factory=list)
    watch: Watch | None = None
    batch: Batch | None = None
    actions: list[Action] = Field(min_length=1)
    enabled: bool = True

    @model_validator(mode="after")
    def _fields_for_type(self) -> Trigger:
        from etl_framework.workflow_graph import kind_of

        problem = kind_of(self).check_fields(self)
        if problem:
            raise ValueError(problem)
        return self


class WorkflowConfig(Strict):
    workflow: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    max_concurrent_runs: int | None = Field(None, ge=1, description="default: unlimited, as in Glue")
    run_properties: dict[str, Any] = Field(default_factory=dict)
    jobs: dict[str, str] = Field(default_factory=dict, description="job name -> job file, relative to this file")
    crawlers: dict[str, WorkflowCrawler] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(min_length=1)
    executor: Literal["inline", "subprocess"] = Field(
        "inline", description="inline: jobs share one Spark session; subprocess: one spark-submit per job"
    )
    concurrency: int = Field(2, ge=1, description="nodes running at once in a run")
    notifications: Notifications | None = Field(None, description="overrides the env's, key by key, for its jobs")


# ------------------------------------------------------------------------------------------------ env config


class StateConfig(Strict):
    backend: Literal["sqlite", "dynamodb"] = "sqlite"
    path: str = Field(".etl/state.db", description="sqlite: the state file, relative to the project")
    table_prefix: str = Field("etl_", description="dynamodb: prefix of the state tables")


class CatalogConfig(Strict):
    backend: Literal["local", "glue"] = "local"
    path: str = Field(".etl/catalog.db", description="local: the catalog file, relative to the project")


class AwsConfig(Strict):
    region: str = "us-east-1"
    endpoint_url: str | None = Field(None, description="override for every AWS client (e.g. a moto server)")


RunMetric = Literal["rows_read", "rows_written", "rows_quarantined", "duration_s", "bytes_written", "bookmark_lag_s"]


class Alarm(Strict):
    """A CloudWatch alarm on a run metric (namespace etl_framework), one per job it applies to; its action is the
    env's notifications.sns topic when one is set."""

    metric: RunMetric = Field(description="the run metric (CloudWatch: RowsRead, RowsWritten, RowsQuarantined, "
                                          "Duration, BytesWritten, BookmarkLag)")
    above: float | None = Field(None, description="alarm when the metric goes above this")
    below: float | None = Field(None, description="alarm when the metric goes below this")
    job: str | None = Field(None, description="only this job; default: every job of the project")
    period_minutes: int = Field(60, ge=1, le=1440, description="evaluation period")
    evaluation_periods: int = Field(1, ge=1, le=100, description="periods in a row over the bound before it alarms")

    @model_validator(mode="after")
    def _one_bound(self) -> Alarm:
        if (self.above is None) == (self.below is None):
            raise ValueError("an alarm has exactly one of 'above' or 'below'")
        return self


class DeployConfig(GlueRunSettings):
    project: str | None = Field(
        None, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="the project's name: tagged as etl:project on every Glue resource and part of the S3 upload "
                    "prefix, so that --prune never touches another project's resources; default: the project "
                    "directory's name")
    s3_prefix: str = Field(description="s3://bucket/prefix; uploads go under <s3_prefix>/<project>/<env>/")
    role: str | None = Field(None, description="IAM role ARN of the Glue jobs and crawlers (bring your own role); "
                             "or iam: generate")
    iam: Literal["generate"] | None = Field(
        None, description="generate: one least-privilege role per job, one for the crawlers and one for the "
                          "orchestrator, derived from the YAML (instead of role)")
    kms_key: str | None = Field(
        None, description="KMS key ARN or alias/NAME: a Glue security configuration (S3, CloudWatch logs, "
                          "bookmarks), SSE-KMS uploads and S3A writes, KMS-encrypted DynamoDB state tables")
    glue_version: str = "5.0"
    worker_type: Literal["G.1X", "G.2X", "G.4X", "G.8X", "G.025X", "Z.2X"] = "G.1X"
    number_of_workers: int = Field(2, ge=1)
    name_prefix: str = Field("", description="prefix of every Glue resource name")
    connections: list[str] = Field(
        default_factory=list, description="Glue Connections (existing, by name) attached to every job with a jdbc "
        "source: the network path to the database; the password stays a ${secret:NAME} in Secrets Manager")
    orchestrator: Literal["glue_workflows", "step_functions"] = Field(
        "glue_workflows", description="what runs the workflows on AWS: a Glue Workflow with its triggers, or a Step "
                                      "Functions state machine (with EventBridge schedules and rules) per workflow")
    poll_seconds: int = Field(30, ge=1, le=3600, description="step_functions: seconds between two polls of a "
                                                             "running Glue job run or crawler")

    alarms: list[Alarm] = Field(default_factory=list, description="CloudWatch alarms on the jobs' run metrics")

    @model_validator(mode="after")
    def _one_role(self) -> DeployConfig:
        if bool(self.role) == bool(self.iam):
            raise ValueError("deploy needs exactly one of 'role: ARN' (bring your own role) or 'iam: generate'")
        return self


class EnvConfig(Strict):
    vars: dict[str, Any] = Field(default_factory=dict, description="referenced as ${env.NAME}")
    state: StateConfig = Field(default_factory=StateConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    spark: dict[str, str | int | float | bool] = Field(default_factory=dict, description="Spark conf overrides")
    deploy: DeployConfig | None = None
    notifications: Notifications | None = Field(None, description="alerting: events and targets (SPEC §13)")
    executor: Literal["inline", "subprocess"] | None = Field(
        None, description="workflow executor for this environment (overrides the workflow file's; --executor wins)"
    )
