"""`etl validate`'s half of "a job touches only its own table" (SPEC §13), without a JVM: the folders a job writes
(its target, quarantine and bad-records tables) may not contain what is not theirs — a source path, another
job's table, the project, the state or catalog folder — nor lie inside another job's table. Reading another job's
table and two jobs writing one table are normal. The run-time half (a folder holding foreign files is refused
before anything is read) is the table formats' preflight.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from etl_framework.config.errors import ConfigError

if TYPE_CHECKING:
    from etl_framework.config.load import LoadedJob
    from etl_framework.config.project import Project

_OTHERS: dict[tuple, list[tuple[str, dict[str, str], list[str]]]] = {}  # (project, env, file stamps) -> jobs


def key(path: str) -> str | None:
    """A comparable form of a path: symlinks resolved, `s3a://` spelled `s3://`; None when it cannot be known
    before a run (`${run.X}` placeholders) or is relative."""
    if not path or "${" in path:
        return None
    if "://" in path and not path.startswith("file://"):
        return path.rstrip("/").replace("s3a://", "s3://").replace("s3n://", "s3://")
    p = path.removeprefix("file://")
    return os.path.realpath(p).rstrip("/") or "/" if os.path.isabs(p) else None


def inside(child: str, parent: str) -> bool:
    """`child` lies strictly inside `parent`."""
    return child != parent and child.startswith(parent.rstrip("/") + "/")


def tables_of(cfg: Any) -> dict[str, tuple[tuple, str]]:
    """The job's written tables: path -> (YAML path of the setting, what it is); {} for a job file too broken to
    say."""
    from etl_framework.config.model import JobConfig

    if not isinstance(cfg, JobConfig):
        return {}
    out: dict[str, tuple[tuple, str]] = {}
    for path in cfg.tables_written():
        if path == cfg.target.path:
            out[path] = (("target", "path"), "target")
        elif path == cfg.quarantine_location():
            out[path] = (("target", "quarantine_path") if cfg.target.quarantine_path else ("target", "path"),
                         "quarantine table")
        else:
            out[path] = (("target", "path"), "bad-records table")
    return out


def _reads(cfg: Any) -> list[tuple[str, str]]:
    """(path, format) of everything the job reads or crawls."""
    out = [(s.path, s.format) for s in (getattr(cfg, "sources", None) or {}).values() if s is not None and s.path]
    out += [(c.path, "crawl") for c in getattr(cfg, "crawl", None) or [] if c is not None and getattr(c, "path", None)]
    return out


def _other_jobs(loaded: LoadedJob, project: Project) -> list[tuple[str, dict[str, str], list[str]]]:
    """(job file, written tables as key -> format, read paths as keys) of the project's other jobs; cached until a
    file changes."""
    from etl_framework.config.checks import _stamp, _yaml_files
    from etl_framework.config.load import load_job

    if not project.jobs_dir.is_dir():
        return []
    files = list(_yaml_files(project.jobs_dir))
    cache_key = (str(project.root), loaded.env, *((str(f), *_stamp(f)) for f in files))
    if cache_key not in _OTHERS:
        jobs = []
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
                if not text.lstrip().startswith("job:") and "\njob:" not in text:
                    continue
                other = load_job(f, project, loaded.env, check=False).config
            except Exception:  # noqa: BLE001, S112 - a broken job file is reported when it is validated itself
                continue
            tables = {k: other.target.format for p in tables_of(other) if (k := key(p))}
            reads = [k for p, _ in _reads(other) if (k := key(p))]
            jobs.append((str(f.resolve()), tables, reads))
        _OTHERS.clear()  # one project at a time is plenty
        _OTHERS[cache_key] = jobs
    return [j for j in _OTHERS[cache_key] if j[0] != str(loaded.path.resolve())]


def check_ownership(loaded: LoadedJob, project: Project | None) -> list[ConfigError]:
    cfg, doc = loaded.config, loaded.doc
    if doc is None:
        return []
    errors: list[ConfigError] = []
    protected: list[tuple[str, str]] = []  # (key, what) no written table may contain or be
    if project is not None:
        root = key(str(project.root))
        if root:
            protected.append((root, f"the project directory {project.root}"))
        try:
            env = project.env_config(loaded.env)
        except Exception:  # noqa: BLE001 - a broken env config is reported on its own
            env = None
        for what, p in (("state", getattr(env.state, "path", None) if env else None),
                        ("catalog", getattr(env.catalog, "path", None) if env else None)):
            k = key(os.path.dirname(p)) if p and getattr(getattr(env, what), "backend", "") in ("sqlite", "local") \
                else None
            if k:
                protected.append((k, f"the {what} folder {os.path.dirname(p)}"))
    own_format = getattr(getattr(cfg, "target", None), "format", None)
    for path, (yaml_path, what) in tables_of(cfg).items():
        t = key(path)
        if t is None:
            continue
        holds: list[str] = []  # what the table's folder would hold besides the table
        within: list[str] = []  # tables the folder lies inside
        holds += [desc for k, desc in protected if k == t or inside(k, t)]
        holds += [f"this job's input {p}" for p, fmt in _reads(cfg)
                  if (s := key(p)) and (inside(s, t) or (s == t and fmt != own_format))]
        for other_file, tables, reads in _other_jobs(loaded, project) if project is not None else []:
            shown = os.path.relpath(other_file, project.root) if project is not None else other_file
            holds += [f"the table {k} of {shown}" for k in tables if inside(k, t)]
            within += [f"the table {k} of {shown}" for k in tables if inside(t, k)]
            holds += [f"{k}, an input of {shown}" for k in reads if inside(k, t)]
        if holds:
            more = f" (and {len(holds) - 1} more: {'; '.join(holds[1:3])}{'; ...' if len(holds) > 3 else ''})" \
                if len(holds) > 1 else ""
            errors.append(doc.error(yaml_path, f"the {what} {path} contains {holds[0]}{more}: a write there could "
                                    "replace or delete them; give the table a folder of its own, e.g. "
                                    "${env.lake_root}/<table>"))
        if within:
            errors.append(doc.error(yaml_path, f"the {what} {path} lies inside {within[0]}: give each table a "
                                    "folder of its own"))
    return list(dict.fromkeys(errors))

