"""`etl deploy`: load the project for the env, build the wheel, check everything Glue would reject, check
credentials/role/bucket, plan, and (unless --dry-run) apply. Order matters: nothing is written before every check
passed, and the plan is computed from what AWS really holds, so re-running after an interruption completes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl_framework.config.errors import ConfigError, ConfigErrors
from etl_framework.errors import EtlError, UsageError


@dataclass
class DeployResult:
    env: str
    dry_run: bool
    prune: bool
    plan: Any
    applied: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    write_calls: list[str] = field(default_factory=list)
    project: str = ""
    s3_root: str = ""
    offline: bool = False

    @property
    def needs_yes(self) -> bool:
        """A prune that deletes more than it creates: refused without `--yes` (a dry run says so)."""
        return self.prune and self.plan.prunes_more_than_it_creates

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "project": self.project,
            "s3_root": self.s3_root,
            "dry_run": self.dry_run,
            "offline": self.offline,
            "prune": self.prune,
            "needs_yes": self.needs_yes,
            "changed": bool(self.applied),
            "summary": self.plan.summary(),
            "changes": [c.to_json() for c in self.plan.changes],
            "applied": [c.to_json() for c in self.applied],
            "warnings": self.warnings,
            "write_calls": len(self.write_calls),
        }


def collect_project(project: Any, env: str) -> tuple[dict[str, Any], dict[str, Any], list[Path]]:
    """Every job and workflow file under jobs/ (and the job files workflows name), loaded for `env`.
    Returns (jobs by name, workflows by name, files to upload)."""
    from etl_framework.config.load import file_kind, load_job, load_workflow
    from etl_framework.config.loader import load_yaml
    from etl_framework.config.project import display_path

    root: Path = project.root.resolve()
    jobs_dir: Path = project.jobs_dir
    if not jobs_dir.is_dir():
        raise UsageError(f"no jobs/ folder in project {root}\n  what to do: add job files under jobs/")
    files = sorted(p for p in jobs_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and not any(part.startswith(".") for part in p.relative_to(jobs_dir).parts))
    errors: list[ConfigError] = []
    jobs: dict[str, Any] = {}
    job_files: dict[str, Path] = {}
    workflows: dict[str, Any] = {}

    def add_job(lj: Any) -> None:
        name = lj.config.job
        other = job_files.get(name)
        if other is not None and other != lj.path.resolve():
            errors.append(ConfigError(display_path(lj.path), 1, 1, f"job '{name}' is also defined in "
                                                                   f"{display_path(other)}: job names must be unique"))
            return
        jobs[name], job_files[name] = lj, lj.path.resolve()

    for path in files:
        if path.suffix not in (".yaml", ".yml"):
            continue
        try:
            kind = file_kind(load_yaml(path, display=display_path(path)).data)
            if kind == "job":
                add_job(load_job(path, project, env))
            elif kind == "workflow":
                lw = load_workflow(path, project, env)
                workflows[lw.config.workflow] = lw
                for lj in lw.jobs.values():
                    add_job(lj)
        except ConfigErrors as e:
            errors += e.errors
    if errors:
        raise ConfigErrors(errors)
    upload = list(files)
    for p in job_files.values():
        if p not in [f.resolve() for f in upload]:
            try:
                p.relative_to(root)
            except ValueError:
                raise UsageError(f"job file {p} is outside the project {root}\n  what to do: move it under "
                                 "jobs/ so that deploy can upload it") from None
            upload.append(p)
    if not jobs and not workflows:
        raise UsageError(f"no job or workflow files under {jobs_dir}: nothing to deploy")
    return jobs, workflows, upload


def entry_script(project: Any) -> Path:
    from etl_framework.deploy.build import source_root

    candidates = [project.root / "scripts" / "etl_job.py"]
    try:
        candidates.append(source_root() / "scripts" / "etl_job.py")
    except EtlError:
        pass
    for c in candidates:
        if c.is_file():
            return c
    raise EtlError("the entry script scripts/etl_job.py was not found (looked in "
                   + ", ".join(str(c) for c in candidates) + ")")


def prune_refusal(plan: Any, project: str, env: str) -> UsageError:
    """Why a prune waits for `--yes`, with everything it would delete."""
    doomed = plan.by_action("orphan")
    created = len(plan.by_action("create"))
    return UsageError(
        f"deploy --prune would delete {len(doomed)} resource{'s' if len(doomed) != 1 else ''} of project "
        f"'{project}', env '{env}', and create {created}; nothing was changed. It would delete:\n"
        + "".join(f"  - {c.kind} {c.name}\n" for c in doomed)
        + "  what to do: check the list, then run again with --yes to delete them (or without --prune to keep them)")


def deploy(project: Any, env: str, dry_run: bool = False, prune: bool = False,
           progress: Any = None, aws: Any = None, wheel_path: str | Path | None = None,
           yes: bool = False, offline: bool = False) -> DeployResult:
    """Plan, then apply unless `dry_run`. A prune that deletes more than it creates needs `yes`: refused (exit 2)
    before any write otherwise. `offline` (a dry run only; also taken when no credentials are found) plans
    without reading AWS: every resource in full, as it would be created."""
    from etl_framework.deploy.build import build_wheel, load_wheel
    from etl_framework.deploy.plan import Aws, Deployer
    from etl_framework.deploy.spec import build_desired

    say = progress or (lambda msg: None)
    env_cfg = project.env_config(env)
    if env_cfg.deploy is None:
        raise UsageError(f"conf/{env}.yaml has no 'deploy:' block\n  what to do: add deploy: {{s3_prefix: "
                         "s3://bucket/prefix, role: arn:aws:iam::ACCOUNT:role/NAME}} to it")
    jobs, workflows, files = collect_project(project, env)
    if wheel_path:
        wheel = load_wheel(Path(wheel_path))
    else:
        say("building the framework wheel")
        wheel = build_wheel()
    desired = build_desired(project, env, env_cfg, jobs, workflows, files, entry_script(project), wheel)
    say(f"project {desired.project}, env {env}: files under {desired.s3_root}/, resources tagged "
        + ", ".join(f"{k}={v}" for k, v in desired.tags.items()))
    if offline and not dry_run:
        raise UsageError("--offline plans without reading AWS, so it can only be a --dry-run")
    aws = aws or Aws(env_cfg.aws.region, env_cfg.aws.endpoint_url)
    deployer = Deployer(desired, aws, say)
    if dry_run and not offline and not has_credentials():
        offline = True
        desired.warnings.append("no AWS credentials found: an offline dry run (AWS was not read; every resource is "
                                "shown as it would be created)")
    if offline:
        warnings = list(desired.warnings)
        plan = deployer.offline_plan()
        result = DeployResult(env, dry_run, prune, plan, warnings=warnings, project=desired.project,
                              s3_root=desired.s3_root, offline=True)
        return result
    role = env_cfg.deploy.role or "generation (iam: generate)"
    say(f"checking credentials, role {role} and {env_cfg.deploy.s3_prefix}")
    warnings = list(desired.warnings) + deployer.preflight()
    say("reading what is deployed")
    plan = deployer.plan()
    result = DeployResult(env, dry_run, prune, plan, warnings=warnings, project=desired.project,
                          s3_root=desired.s3_root)
    if result.needs_yes and not dry_run and not yes:
        raise prune_refusal(plan, desired.project, env)
    if not dry_run:
        n = len(plan.pending) + (len(plan.by_action("orphan")) if prune else 0)
        if n:
            say(f"applying {n} change{'s' if n != 1 else ''}")
        result.applied = deployer.apply(plan, prune=prune)
    result.write_calls = deployer.calls
    return result


def has_credentials() -> bool:
    """Whether boto3 finds any credentials (environment, profile, SSO cache, instance role), without calling AWS."""
    from etl_framework.aws import session

    try:
        return session().get_credentials() is not None
    except Exception:  # noqa: BLE001 - a broken profile is "no credentials" for the dry run's purpose
        return False


def generated_roles(project: Any, env: str, account: str = "{account}") -> list[dict[str, Any]]:
    """The roles `etl deploy` would generate for the env (deploy.iam: generate), offline: the same desired state
    as deploy (so the same policies), with the account and the KMS key's ARN as given or left as placeholders."""
    from types import SimpleNamespace

    from etl_framework.deploy.iam import fill
    from etl_framework.deploy.spec import build_desired

    env_cfg = project.env_config(env)
    if env_cfg.deploy is None or env_cfg.deploy.iam != "generate":
        raise UsageError(f"conf/{env}.yaml does not generate IAM\n  what to do: set deploy: {{iam: generate}} "
                         "(instead of role:) to have etl deploy generate least-privilege roles")
    jobs, workflows, files = collect_project(project, env)
    wheel = SimpleNamespace(filename="etl_framework.whl", data=b"")
    desired = build_desired(project, env, env_cfg, jobs, workflows, files, entry_script(project), wheel)
    names = {"partition": "aws", "region": env_cfg.aws.region, "account": account}
    if env_cfg.deploy.kms_key and env_cfg.deploy.kms_key.startswith("arn:"):
        names["kms_key_arn"] = env_cfg.deploy.kms_key
    out = []
    for r in desired.of("role"):
        purpose = r.spec["Description"].split(" of project")[0].removeprefix("etl_framework ")
        out.append({"role": r.name, "purpose": purpose, "arn": fill(f"arn:{{partition}}:iam::{{account}}:role"
                                                                     f"{r.spec['Path']}{r.name}", **names),
                    "trust": r.spec["AssumeRolePolicyDocument"], "policy": fill(r.spec["PolicyDocument"], **names)})
    return out
