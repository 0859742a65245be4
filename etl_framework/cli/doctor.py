"""`etl doctor`: is this machine ready to run jobs? Python, the venv and its pinned packages, Java 17, Spark's
JARs, the project's configs and state folder, whether the databases of jdbc sources are reachable (TCP), and for
a configured cluster master whether it is reachable and its executors run this Python minor version — each with the
command that fixes it. Starts no JVM, except the executor probe of a cluster master (a child process)."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from etl_framework.cli.common import print_json

PINNED = ("pyspark", "delta-spark", "great-expectations", "deltalake", "pydantic", "sqlglot")


def _java_major(java: str) -> tuple[int | None, str]:
    try:
        out = subprocess.run([java, "-version"], check=False, capture_output=True, text=True, timeout=20).stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    first = out.splitlines()[0] if out else ""
    for token in first.replace('"', " ").split():
        if token[:1].isdigit():
            head = token.split(".")[0]
            return (int(token.split(".")[1]) if head == "1" else int(head)), first
    return None, first


def checks(project_dir: str | None, env: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str, fix: str = "") -> None:
        out.append({"check": name, "ok": ok, "detail": detail, "fix": "" if ok else fix})

    v = sys.version_info
    add("python", (v.major, v.minor) == (3, 11), f"{v.major}.{v.minor}.{v.micro} at {sys.executable}",
        "install Python 3.11 and run `make install` (it creates .venv with it)")
    in_venv = sys.prefix != sys.base_prefix
    add("venv", in_venv, sys.prefix if in_venv else "not running inside a virtualenv",
        "run `make install`, then use .venv/bin/etl (or `source .venv/bin/activate`)")
    missing, versions = [], []
    for pkg in PINNED:
        try:
            versions.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(pkg)
    add("packages", not missing, ", ".join(versions) if not missing else "missing: " + ", ".join(missing),
        "run `make install` (pip install -e '.[dev]' into .venv)")

    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    major, text = _java_major(java) if java else (None, "no `java` on PATH and JAVA_HOME unset")
    if major not in (8, 11, 17):
        alt = sorted(Path("/usr/lib/jvm").glob("*17*")) if Path("/usr/lib/jvm").is_dir() else []
        alt = [a for a in alt if (a / "bin" / "java").exists()]
        if alt:
            add("java", True, f"default java is {major} ({text}); Spark will use {alt[0]} (Java 17)")
        else:
            add("java", False, f"{text or 'no java'} (Spark 3.5 needs Java 17; 21+ does not work)",
                "apt-get install openjdk-17-jdk-headless (or set JAVA_HOME to a Java 17 JDK)")
    else:
        add("java", True, f"{text} ({java})")

    project = None
    try:
        from etl_framework.config.project import Project

        project = Project.discover(project_dir)
        add("project", True, str(project.root))
    except Exception as e:  # noqa: BLE001
        add("project", False, str(e).splitlines()[0], "cd into a project, pass --project-dir, or `etl init DIR`")

    from etl_framework.runtime.spark import conf_dir, jars_dir, read_defaults

    root = project.root if project else None
    cdir = conf_dir(root)
    conf = read_defaults(cdir / "spark-defaults.conf")
    jdir = jars_dir(root)
    jars = [Path(j.strip()).name for j in conf.get("spark.jars", "").split(",") if j.strip()]
    absent = [j for j in jars if not (jdir / j).is_file()]
    add("spark jars", not absent, f"{len(jars)} JARs in {jdir}" if not absent else
        f"missing in {jdir}: {', '.join(absent)}",
        "run `make install` (resolves them once from Maven Central into .jars/; needs `mvn`)")
    add("spark conf", True, str(cdir / "spark-defaults.conf"))

    if project is not None:
        try:
            cfg = project.env_config(env)
            state = Path(cfg.state.path)
            state.parent.mkdir(parents=True, exist_ok=True)
            writable = os.access(state.parent, os.W_OK)
            add(f"env {env}", True, f"state {cfg.state.backend} {cfg.state.path}, catalog {cfg.catalog.backend}")
            add("state folder", writable, str(state.parent), f"make {state.parent} writable")
            from etl_framework.state.db import check_file

            files = []
            if cfg.state.backend == "sqlite":
                files.append(("state file", state, "state"))
            if cfg.catalog.backend == "local":
                files.append(("catalog file", Path(cfg.catalog.path), "catalog"))
            for name, path, role in files:
                problem = check_file(path, role)
                add(name, problem is None, problem or (f"{path}" if path.exists() else f"{path} (created on first "
                                                                                        "use)"),
                    f"move it away (`mv {path} {path}.broken`): a new, empty {role} file is created on the next run")
        except Exception as e:  # noqa: BLE001
            add(f"env {env}", False, str(e).splitlines()[0], f"fix conf/{env}.yaml (etl validate conf/{env}.yaml)")
        for name, ok, detail, fix in jdbc_checks(project, env):
            add(name, ok, detail, fix)
        for name, ok, detail, fix in cluster_checks(project, env):
            add(name, ok, detail, fix)
    return out


def cluster_checks(project: Any, env: str) -> list[tuple[str, bool, str, str]]:
    """A configured cluster master (the env's `spark:` map or spark-defaults.conf; local masters need nothing): is
    it reachable (TCP), and do its executors run this driver's Python minor version? PySpark refuses to run any
    Python code across minor versions, so a mismatch fails the first `python:` step or UDF of a run. The second
    check runs a two-task Spark app in a child process (the only JVM `etl doctor` starts, and only for a
    cluster)."""
    from etl_framework.runtime import cluster
    from etl_framework.runtime.spark import resolve_conf

    try:
        conf = resolve_conf(project.root, project.env_config(env).spark)
    except Exception:  # noqa: BLE001 - the env and JAR checks above already say what is wrong
        return []
    master = cluster.master_of(conf)
    if cluster.is_local_master(master):
        return []
    address = cluster.master_address(master)
    fix = (f"start the master (or fix spark.master in conf/{env}.yaml's spark: map); from this machine, "
           f"`nc -z HOST PORT` must connect")
    if address is not None:
        why = cluster.reachable(*address)
        if why is not None:
            return [("spark master", False, f"{master} not reachable: {why}", fix)]
        detail = f"{master} reachable (TCP)"
    else:
        detail = f"{master} (yarn/k8s: not checked over TCP; the executor probe below asks it)"
    out = [("spark master", True, detail, "")]
    driver = f"{sys.version_info.major}.{sys.version_info.minor}"
    python = conf.get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON") or sys.executable
    probe = cluster.probe_executors(conf, python)
    py_fix = (f"give the executors Python {driver}: set spark.pyspark.python in conf/{env}.yaml's spark: map to "
              f"a Python {driver} that exists on every worker (or install one there)")
    if probe.get("ok"):
        seen = sorted({(h, v, e) for h, v, e in probe.get("executors", [])})
        other = [f"{h}: {v} ({e})" for h, v, e in seen if ".".join(v.split(".")[:2]) != driver]
        if other:
            why = f"executors run Python {', '.join(other)}; the driver {driver}"
            return [*out, ("executor python", False, why, py_fix)]
        return [*out, ("executor python", True, f"{driver} on " + ", ".join(f"{h} ({e})" for h, _, e in seen), "")]
    error = str(probe.get("error", ""))
    mismatch = cluster.version_mismatch(error)
    if mismatch is not None:
        why = f"executors run Python {mismatch[0]} ({python}); the driver {driver}"
        return [*out, ("executor python", False, why, py_fix)]
    return [*out, ("executor python", False, f"no executor answered: {error.strip().splitlines()[-1][:400]}"
                   if error.strip() else "no executor answered",
                   "check the master's UI: workers alive, free cores and memory for an app")]


def jdbc_checks(project: Any, env: str) -> list[tuple[str, bool, str, str]]:
    """Each jdbc source of the project's jobs: is its database reachable from here (a TCP connect to host:port,
    or the SQLite file)? The user and password are not tried (no JVM, no secret resolved): the first run does."""
    import re
    import socket

    from etl_framework.config.load import load_job
    from etl_framework.stages.jdbc import where_of

    out: list[tuple[str, bool, str, str]] = []
    files = sorted(p for p in project.jobs_dir.rglob("*.y*ml") if not any(x.startswith(".") for x in p.parts))
    for path in files:
        try:
            if "jdbc" not in path.read_text(encoding="utf-8"):
                continue
            loaded = load_job(path, project, env=env, check=False)
        except Exception:  # noqa: BLE001, S112 - not a job file, or a broken one (`etl validate` says why)
            continue
        for sname, src in loaded.config.sources.items():
            if src.format != "jdbc" or not src.url:
                continue
            label = f"jdbc {loaded.config.job}.{sname}"
            if src.url.startswith("jdbc:sqlite:"):
                db = src.url[len("jdbc:sqlite:"):]
                # a file, like any input: reported, never a machine problem
                out.append((label, True, f"SQLite file {db}" + ("" if Path(db).is_file() else " (not there yet)"), ""))
                continue
            m = re.match(r"jdbc:[a-z0-9]+://\[?([^/:?;\]]+)\]?(?::(\d+))?", src.url)
            if not m:
                out.append((label, True, f"{where_of(src.url)} (not checked: no host:port in the url)", ""))
                continue
            default = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "redshift": 5439, "sqlserver": 1433,
                       "oracle": 1521}.get(src.url.split(":")[1], 0)
            host, port = m.group(1), int(m.group(2) or default)
            try:
                with socket.create_connection((host, port), timeout=3):
                    ok, why = True, "reachable (TCP); user and password are checked by the first run"
            except OSError as e:
                ok, why = False, f"not reachable: {e}"
            fix = "start the database, or check the url, the network path (on Glue: deploy.connections), the env's vars"
            out.append((label, ok, f"{host}:{port} {why}", fix))
    return out


def register(group: click.Group) -> None:
    group.add_command(doctor)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="the checks as JSON on stdout")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check Python, the venv, Java 17, Spark's JARs, the project and a configured cluster master; say which
    command fixes what."""
    results = checks(ctx.obj.get("project_dir") if ctx.obj else None, ctx.obj.get("env", "local") if ctx.obj
                     else "local")
    bad = [r for r in results if not r["ok"]]
    if as_json:
        print_json(results)
    else:
        for r in results:
            mark = click.style("ok  ", fg="green") if r["ok"] else click.style("FAIL", fg="red")
            click.echo(f"{mark} {r['check']:<12} {r['detail']}")
            if r["fix"]:
                click.echo(f"     {'':<12} fix: {r['fix']}")
        if not bad:
            click.echo("ready to run jobs")
    if bad:
        from etl_framework.errors import EtlError

        raise EtlError(f"{len(bad)} problem(s): fix them and run `etl doctor` again")
