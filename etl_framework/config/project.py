"""Project directory discovery (SPEC §4.0) and environment configs (SPEC §4.1).

The project is `--project-dir`, else `$ETL_PROJECT_DIR`, else the nearest parent of the working directory (or of a
given start path) that holds `conf/`. Relative paths in an env config resolve against the conf file: `state.path`,
`catalog.path` and every `vars` value that starts with `./` or `../` (a path by its looks; other values stay
text). Keys left out take their defaults relative to the project root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_framework.config.errors import ConfigError, ConfigErrors
from etl_framework.errors import UsageError

if TYPE_CHECKING:  # the model is imported when an env is loaded: `etl run` finds its project before that
    from etl_framework.config.model import EnvConfig


def is_remote(path: str) -> bool:
    """s3://, s3a://, file:// and other URIs are left alone by path resolution."""
    return "://" in path


def resolve_path(value: str, base: Path) -> str:
    """A path relative to `base` made absolute; URIs and absolute paths unchanged; a trailing '/' is kept."""
    if not value or is_remote(value) or "${" in value:
        return value
    p = Path(os.path.expanduser(value))
    out = os.path.normpath(str(p if p.is_absolute() else base / p))
    if value.endswith("/") and not out.endswith("/"):
        out += "/"
    return out


def looks_like_path(value: Any) -> bool:
    return isinstance(value, str) and (value in (".", "..") or value.startswith(("./", "../")))


@dataclass
class Project:
    """A project directory: conf/<env>.yaml, jobs/, spark-conf/."""

    root: Path
    _env_cache: dict[str, EnvConfig] = field(default_factory=dict, repr=False)

    @classmethod
    def discover(cls, project_dir: str | Path | None = None, start: str | Path | None = None) -> Project:
        """Find the project: explicit dir, then $ETL_PROJECT_DIR, then the nearest parent of `start` (default:
        the working directory) holding conf/."""
        explicit = project_dir or os.environ.get("ETL_PROJECT_DIR")
        if explicit:
            root = Path(explicit).expanduser().resolve()
            if not root.is_dir():
                raise UsageError(f"project directory {root} does not exist\n  what to do: pass an existing "
                                 "directory to --project-dir (or ETL_PROJECT_DIR), or create one with `etl init DIR`")
            return cls(root)
        here = Path(start).expanduser().resolve() if start else Path.cwd().resolve()
        if here.is_file() or not here.exists():
            here = here.parent
        for cand in (here, *here.parents):
            if (cand / "conf").is_dir():
                return cls(cand)
        raise UsageError(f"no project found: neither {here} nor a parent holds conf/\n  what to do: cd into a "
                         "project, pass --project-dir DIR (or set ETL_PROJECT_DIR), or create one with `etl init DIR`")

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def spark_conf_dir(self) -> Path:
        return self.root / "spark-conf"

    def env_file(self, env: str = "local") -> Path:
        return self.conf_dir / f"{env}.yaml"

    def envs(self) -> list[str]:
        return sorted(p.stem for p in self.conf_dir.glob("*.yaml")) if self.conf_dir.is_dir() else []

    def env_config(self, env: str = "local") -> EnvConfig:
        """The validated env config of `env`, with `state.path`, `catalog.path` and path-like vars absolute."""
        if env not in self._env_cache:
            self._env_cache[env] = self._load_env(env)
        return self._env_cache[env]

    def _load_env(self, env: str) -> EnvConfig:
        from etl_framework.config.loader import load_yaml, validate_model
        from etl_framework.config.model import EnvConfig

        path = self.env_file(env)
        if not path.is_file():
            if env == "local":
                cfg = EnvConfig()
                cfg.state.path = resolve_path(cfg.state.path, self.root)
                cfg.catalog.path = resolve_path(cfg.catalog.path, self.root)
                return cfg
            known = ", ".join(self.envs()) or "none"
            raise UsageError(f"environment '{env}' has no config file {path} (environments: {known})\n"
                             f"  what to do: pass --env with one of them, or create conf/{env}.yaml")
        doc = load_yaml(path, display=display_path(path))
        errors: list[ConfigError] = []
        model, errs = validate_model(doc, EnvConfig)
        errors += errs
        if errors or model is None:
            raise ConfigErrors(errors)
        cfg = model if isinstance(model, EnvConfig) else EnvConfig.model_validate(model)
        base = path.parent
        given_state = isinstance(doc.data.get("state"), dict) and "path" in doc.data["state"]
        given_catalog = isinstance(doc.data.get("catalog"), dict) and "path" in doc.data["catalog"]
        cfg.state.path = resolve_path(cfg.state.path, base if given_state else self.root)
        cfg.catalog.path = resolve_path(cfg.catalog.path, base if given_catalog else self.root)
        cfg.vars = {k: resolve_path(v, base) if looks_like_path(v) else v for k, v in cfg.vars.items()}
        return cfg


def display_path(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


def project_for(path: str | Path, project_dir: str | Path | None = None) -> Project:
    """The project of a file: explicit, else the nearest parent of the file holding conf/."""
    if project_dir or os.environ.get("ETL_PROJECT_DIR"):
        return Project.discover(project_dir)
    return Project.discover(start=path)
