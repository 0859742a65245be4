"""Loading job and workflow files: YAML with positions -> interpolation -> the pydantic model -> paths made
absolute -> semantic checks. Every problem of a file is collected and raised at once as `ConfigErrors`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl_framework.config.errors import ConfigError, ConfigErrors
from etl_framework.config.interpolate import Context, RefProblem, interpolate
from etl_framework.config.loader import YamlDoc, load_yaml, validate_model
from etl_framework.config.model import JobConfig, WorkflowConfig
from etl_framework.config.project import Project, display_path, resolve_path
from etl_framework.errors import UsageError


@dataclass
class LoadedJob:
    config: JobConfig
    path: Path
    params: dict[str, Any]  # effective params: defaults overridden by the given ones
    doc: YamlDoc | None = field(default=None, repr=False)  # positions, for checks and messages
    env: str = "local"


@dataclass
class LoadedWorkflow:
    config: WorkflowConfig
    path: Path
    jobs: dict[str, LoadedJob]
    job_paths: dict[str, Path]
    doc: YamlDoc | None = field(default=None, repr=False)
    env: str = "local"


def file_kind(data: Any) -> str | None:
    """'job' or 'workflow' by the top-level key (None when neither)."""
    if isinstance(data, dict):
        if "workflow" in data:
            return "workflow"
        if "job" in data:
            return "job"
    return None


def coerce_param(value: Any, default: Any) -> Any:
    """`--param k=v` gives text; give it the default's type when the default is a number or a boolean."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    text = value.strip()
    if isinstance(default, bool):
        if text.lower() in ("true", "yes", "1"):
            return True
        if text.lower() in ("false", "no", "0"):
            return False
        return value
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return value


def _problem_adder(doc: YamlDoc, errors: list[ConfigError]):
    def add(path: tuple, p: RefProblem) -> None:
        line, col = doc.scalar_pos(path, p.offset)
        errors.append(ConfigError(doc.file, line, col, p.message))

    return add


def effective_params(doc: YamlDoc, env_vars: dict[str, Any], overrides: dict[str, Any] | None,
                     run: dict[str, Any] | None, errors: list[ConfigError], job: str = "") -> dict[str, Any]:
    """The job's params: defaults from the file (themselves interpolated with env and run) with overrides."""
    raw = doc.data.get("params") if isinstance(doc.data, dict) else None
    defaults = raw if isinstance(raw, dict) else {}
    ctx = Context(env=env_vars, params=None, run=run)
    params = interpolate(defaults, ctx, _problem_adder(doc, errors), ("params",))
    params = dict(params)
    unknown = sorted(set(overrides or {}) - set(defaults))
    if unknown:
        declared = ", ".join(sorted(defaults)) or "none"
        raise UsageError(f"job {job or doc.file}: unknown param{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)} (declared: {declared})\n  what to do: declare it under 'params:' "
                         f"in {doc.file} with a default, or fix the name")
    for k, v in (overrides or {}).items():
        v = interpolate(v, Context(env=env_vars, params=None, run=run)) if isinstance(v, str) else v
        params[k] = coerce_param(v, defaults.get(k))
    return params


def _resolve_job_paths(cfg: JobConfig, base: Path) -> None:
    for src in cfg.sources.values():
        if src.path:
            src.path = resolve_path(src.path, base)
        if src.jars:
            src.jars = [resolve_path(j, base) for j in src.jars]
        if src.url and src.url.startswith("jdbc:sqlite:") and not src.url.startswith("jdbc:sqlite::"):
            db = src.url[len("jdbc:sqlite:"):]  # a SQLite file, relative to the job file like any path
            src.url = "jdbc:sqlite:" + resolve_path(db, base)
    for c in cfg.crawl:
        if c.path:
            c.path = resolve_path(c.path, base)
    cfg.target.path = resolve_path(cfg.target.path, base)
    if cfg.target.quarantine_path:
        cfg.target.quarantine_path = resolve_path(cfg.target.quarantine_path, base)


def load_job(path: str | Path, project: Project, env: str = "local", params: dict[str, Any] | None = None,
             run: dict[str, Any] | None = None, check: bool = True) -> LoadedJob:
    """Load a job file for `env`: env vars and params interpolated, `${run.X}` substituted when `run` is given
    (else left as text), `${secret:NAME}` left as text, relative paths resolved against the file. With `check`,
    the semantic checks of `checks.py` run too (SQL, references, expectations)."""
    path = Path(path).expanduser().resolve()
    doc = load_yaml(path, display=display_path(path))
    env_cfg = project.env_config(env)
    errors: list[ConfigError] = []
    name = doc.data.get("job") if isinstance(doc.data.get("job"), str) else ""
    if file_kind(doc.data) != "job":
        what = "a workflow file" if file_kind(doc.data) == "workflow" else "not a job file"
        raise ConfigErrors([ConfigError(doc.file, 1, 1, f"{what}: a job file starts with 'job: NAME'")])
    if run is not None:  # the built-ins a caller may leave out
        from datetime import UTC, datetime

        run = {"job": name, "env": env, "workflow": "", "date": datetime.now(UTC).strftime("%Y-%m-%d"), **run}
    eff = effective_params(doc, env_cfg.vars, params, run, errors, name)
    ctx = Context(env=env_cfg.vars, params=eff, run=run)
    body = {k: v for k, v in doc.data.items() if k != "params"}
    data = interpolate(body, ctx, _problem_adder(doc, errors))
    data["params"] = doc.data.get("params", {})
    if "params" not in doc.data:
        del data["params"]
    model, errs = validate_model(doc, JobConfig, data)
    errors += errs
    if model is None:
        if check:  # still check the parts that are valid, so that all errors of the file come at once
            from etl_framework.config.checks import check_job

            part = LoadedJob(config=partial_job(data), path=path, params=eff, doc=doc, env=env)  # type: ignore[arg-type]
            errors += check_job(part, project, run_known=run is not None)
        raise ConfigErrors(errors)
    assert isinstance(model, JobConfig)
    _resolve_job_paths(model, path.parent)
    loaded = LoadedJob(config=model, path=path, params=eff, doc=doc, env=env)
    if check:
        from etl_framework.config.checks import check_job

        errors += check_job(loaded, project, run_known=run is not None)
    if errors:
        raise ConfigErrors(errors)
    return loaded


def partial_job(data: Any) -> Any:
    """The valid parts of an invalid job file, for the semantic checks: each section validated on its own; an
    invalid list item or source is None (its index and name are kept, so positions and references still work)."""
    from types import SimpleNamespace

    from pydantic import TypeAdapter, ValidationError

    data = data if isinstance(data, dict) else {}
    fields = JobConfig.model_fields
    out: dict[str, Any] = {}
    for name in ("params", "sources", "crawl", "transform", "quality", "target", "register"):
        ann = fields[name].annotation
        value = data.get(name)
        try:
            out[name] = TypeAdapter(ann).validate_python(value) if value is not None else fields[name].get_default(
                call_default_factory=True)
            continue
        except ValidationError:
            pass
        if name == "sources" and isinstance(value, dict):
            from etl_framework.config.model import Source

            out[name] = {k: _try(TypeAdapter(Source), v) for k, v in value.items()}
        elif name in ("crawl", "transform", "quality") and isinstance(value, list):
            inner = ann.__args__[0]  # list[X]
            out[name] = [_try(TypeAdapter(inner), v) for v in value]
        else:
            out[name] = {} if name in ("params", "sources") else [] if name in ("crawl", "transform", "quality") \
                else None
    return SimpleNamespace(**out)


def _try(adapter: Any, value: Any) -> Any:
    from pydantic import ValidationError

    try:
        return adapter.validate_python(value)
    except ValidationError:
        return None


def load_workflow(path: str | Path, project: Project, env: str = "local", check: bool = True) -> LoadedWorkflow:
    """Load a workflow file and every job file it names (paths relative to the workflow file)."""
    path = Path(path).expanduser().resolve()
    doc = load_yaml(path, display=display_path(path))
    env_cfg = project.env_config(env)
    errors: list[ConfigError] = []
    if file_kind(doc.data) != "workflow":
        raise ConfigErrors([ConfigError(doc.file, 1, 1, "not a workflow file: a workflow file starts with "
                                                        "'workflow: NAME'")])
    ctx = Context(env=env_cfg.vars, params=None, run=None)
    data = interpolate(doc.data, ctx, _problem_adder(doc, errors))
    model, errs = validate_model(doc, WorkflowConfig, data)
    errors += errs
    partial = model is None
    if partial:
        if not check:
            raise ConfigErrors(errors)
        model = partial_workflow(data)  # check the valid parts too: all errors of the file at once
    base = path.parent
    for c in model.crawlers.values():
        if c is not None:
            c.path = resolve_path(c.path, base)
    for t in model.triggers:
        if t is not None and t.watch:
            t.watch.path = resolve_path(t.watch.path, base)
    jobs: dict[str, LoadedJob] = {}
    job_paths: dict[str, Path] = {}
    for name, rel in model.jobs.items():
        if not isinstance(rel, str):
            continue
        jp = Path(resolve_path(rel, base))
        job_paths[name] = jp
        if not jp.is_file():
            line, col = doc.pos(("jobs", name))
            errors.append(ConfigError(doc.file, line, col, f"job file '{rel}' of job '{name}' does not exist "
                                                           f"(looked for {display_path(jp)})"))
            continue
        try:
            lj = load_job(jp, project, env, check=check)
        except ConfigErrors as e:
            errors += e.errors
            continue
        if lj.config.job != name:
            line, col = doc.pos(("jobs", name), at_key=True)
            errors.append(ConfigError(doc.file, line, col, f"workflow node '{name}' names {rel}, whose job is "
                                                           f"'{lj.config.job}': use the same name (Glue names "
                                                           "workflow nodes by job name)"))
        jobs[name] = lj
    loaded = LoadedWorkflow(config=model, path=path, jobs=jobs, job_paths=job_paths, doc=doc,  # type: ignore[arg-type]
                            env=env)
    if check:
        from etl_framework.config.checks import check_workflow

        errors += check_workflow(loaded, project)
    if errors:
        raise ConfigErrors(errors)
    return loaded


def partial_workflow(data: Any) -> Any:
    """The valid parts of an invalid workflow file (see `partial_job`)."""
    from types import SimpleNamespace

    from pydantic import TypeAdapter, ValidationError

    from etl_framework.config.model import Trigger, WorkflowCrawler

    data = data if isinstance(data, dict) else {}
    fields = WorkflowConfig.model_fields
    out: dict[str, Any] = {}
    for name in ("run_properties", "jobs"):
        try:
            out[name] = TypeAdapter(fields[name].annotation).validate_python(data.get(name) or {})
        except ValidationError:
            out[name] = {}
    crawlers = data.get("crawlers") if isinstance(data.get("crawlers"), dict) else {}
    out["crawlers"] = {k: _try(TypeAdapter(WorkflowCrawler), v) for k, v in crawlers.items()}
    triggers = data.get("triggers") if isinstance(data.get("triggers"), list) else []
    out["triggers"] = [_try(TypeAdapter(Trigger), t) for t in triggers]
    return SimpleNamespace(**out)
