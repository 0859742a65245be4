"""What changes when the driver and the executors are different JVMs on different hosts (a `spark://`, `yarn` or
`k8s://` master; SPEC §1, §8): what reaches the executors, and whether a configured master can run our jobs.

Shipping (the one mechanism on every runtime): the JARs stay in `spark.jars`, which Spark's driver serves to each
executor (runtime/spark.py puts them on the driver's class path only in local mode, where there is one JVM). The
project's `python:` step modules go through `SparkContext.addPyFile` of a zip of the module's top-level package,
made when the step is loaded (`ship_module`; on Glue, deploy can pass the same zips, `step_zips`, as
`--extra-py-files`): the session is built in-process by `etl run`, not by spark-submit,
and `spark.submit.pyFiles` is honoured only by spark-submit's launcher; `addPyFile` works for a session we made,
for spark-submit's (EMR) and for Glue's (the project is downloaded to the driver). A module that is not in the
project (installed in site-packages) is the cluster's to install (Glue: --additional-python-modules).

`probe` is `etl doctor`'s: is the master reachable (TCP, no JVM), and do its executors run the driver's Python
minor version (a two-task job in a child process, JVM and all, bounded by a timeout).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

DEFAULT_MASTER = "local[2]"


def master_of(conf: dict[str, str]) -> str:
    """The master a session made from `conf` runs on (env `spark:` map / spark-defaults, else the env vars)."""
    return (conf.get("spark.master") or os.environ.get("SPARK_MASTER") or os.environ.get("ETL_SPARK_MASTER")
            or DEFAULT_MASTER)


def is_local_master(master: str) -> bool:
    return master.startswith("local")


# ------------------------------------------------------------------------------------------- python: modules


def module_zip(module: ModuleType, roots: list[Path], out_dir: Path | None = None) -> Path | None:
    """A zip of `module`'s top-level package (or single-file module) when it lives under one of `roots` (the
    project, the job's folder); None for anything else (installed packages, built-ins, a module imported from a
    zip Glue already put on every host's path)."""
    top = sys.modules.get(module.__name__.split(".")[0], module)
    file = getattr(top, "__file__", None)
    paths = list(getattr(top, "__path__", []) or [])
    if file:
        src = Path(file).resolve()
        base = src.parent if src.name == "__init__.py" else src
    elif paths:  # a namespace package: its (first) folder
        base = Path(paths[0]).resolve()
    else:
        return None
    resolved = [r.resolve() for r in roots]
    if not any(base.is_relative_to(r) for r in resolved) or any(p in base.parts for p in ("site-packages", ".venv")):
        return None
    if not base.exists():
        return None
    return zip_source(base, out_dir)


def zip_source(base: Path, out_dir: Path | None = None) -> Path:
    """Zip a package folder (every .py under it) or one module file, importable by its name from the zip's root.
    The name carries a hash of the content: a changed module is a new file for Spark (addPyFile refuses a known name
    with new content), and the same content gives the same bytes."""
    files = sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts) if base.is_dir() else [base]
    digest = hashlib.sha256()
    entries = []
    for f in files:
        arc = f.relative_to(base.parent).as_posix()
        data = f.read_bytes()
        digest.update(arc.encode() + b"\0" + data + b"\0")
        entries.append((arc, data))
    folder = out_dir or Path(tempfile.gettempdir()) / "etl-pyfiles"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{base.stem}-{digest.hexdigest()[:12]}.zip"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for arc, data in entries:
                z.writestr(zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
        os.replace(tmp, path)
    return path


def step_zips(config: Any, bases: list[Path], out_dir: Path | None = None) -> list[Path]:
    """For Glue (`--extra-py-files`): zips of the top-level packages of a job's `python:` steps, found by path under
    `bases` (the job's folder, the project; nothing of the user's is imported). Glue puts them on the driver's and
    the executors' Python path before the job starts; modules found nowhere are left to `load_callable`'s error."""
    out: list[Path] = []
    for step in getattr(config, "transform", []) or []:
        ref = getattr(step, "python", None)
        if not ref:
            continue
        top = (ref.partition(":")[0] if ":" in ref else ref.rpartition(".")[0]).split(".")[0]
        for base in bases:
            for cand in (base / top, base / f"{top}.py"):
                if cand.exists() and (cand.is_file() or any(cand.glob("*.py"))):
                    z = zip_source(cand.resolve(), out_dir)
                    if z not in out:
                        out.append(z)
                    break
            else:
                continue
            break
    return out


_SHIPPED: dict[int, set[str]] = {}


def ship_module(spark: Any, module: ModuleType, roots: list[Path]) -> Path | None:
    """Make `module` (a `python:` step's) importable on the executors of a cluster session: its functions, UDFs
    included, are pickled by reference and imported there. Nothing to do in local mode (one machine, one path)."""
    sc = spark.sparkContext
    if is_local_master(sc.master):
        return None
    path = module_zip(module, roots)
    if path is None:
        return None
    shipped = _SHIPPED.setdefault(id(sc), set())
    if path.name not in shipped:
        sc.addPyFile(str(path))
        shipped.add(path.name)
    return path


# ------------------------------------------------------------------------------------------------ the probe

# Run as `python -c` in a child process: the probe function lives in __main__, so it is pickled by value and the
# executors need nothing of ours to run it (a probe that needed etl_framework there would test the wrong thing).
_PROBE = r"""
import json, platform, sys
from pyspark.sql import SparkSession
conf = json.loads(sys.argv[1])
b = SparkSession.builder.appName("etl-doctor-probe")
for k, v in conf.items():
    b = b.config(k, v)
spark = b.getOrCreate()
def where(_):
    import platform, sys
    return (platform.node(), "%d.%d.%d" % sys.version_info[:3], sys.executable)
try:
    n = 2
    rows = spark.sparkContext.parallelize(range(n), n).map(where).distinct().collect()
    print(json.dumps({"ok": True, "executors": rows}))
except Exception as e:
    print(json.dumps({"ok": False, "error": str(e)[-4000:]}))
finally:
    spark.stop()
"""


def master_address(master: str) -> tuple[str, int] | None:
    """host and port of a `spark://host:port` master (the first of a comma-separated HA list); None for others."""
    if not master.startswith("spark://"):
        return None
    first = master.removeprefix("spark://").split(",")[0]
    parsed = urlparse(f"spark://{first}")
    return (parsed.hostname or "", parsed.port or 7077)


def reachable(host: str, port: int, timeout: float = 3.0) -> str | None:
    """None when a TCP connection opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return str(e) or type(e).__name__


def probe_executors(conf: dict[str, str], python: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run a two-task job on the configured master from a child process (its own JVM, no JARs: nothing is needed
    to ask an executor its Python) and return {"ok", "executors": [(host, version, executable)]} or {"ok": False,
    "error"}. A master that accepts the app but never gives it an executor ends in the timeout."""
    keep = {k: v for k, v in conf.items() if not k.startswith(("spark.jars", "spark.driver.extraClassPath",
                                                               "spark.sql.extensions", "spark.sql.catalog"))}
    keep.update({"spark.ui.enabled": "false", "spark.cores.max": keep.get("spark.cores.max", "2"),
                 "spark.executor.memory": keep.get("spark.executor.memory", "512m")})
    env = {**os.environ, "PYSPARK_PYTHON": python}
    try:
        p = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(keep)], capture_output=True, text=True,
                           timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"no executor ran a task within {timeout:.0f} s (does the master have free "
                                      "workers with enough memory and cores for this app?)"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return {"ok": False, "error": f"the probe exited {p.returncode}: {tail[:500]}"}


def version_mismatch(error: str) -> tuple[str, str] | None:
    """(worker, driver) versions from PySpark's PYTHON_VERSION_MISMATCH error text, if that is what it is."""
    import re

    m = re.search(r"Python in worker has different version:? \(?([0-9][0-9., ]*)\)? than that in driver:? "
                  r"\(?([0-9][0-9., ]*)\)?", error)
    if not m:
        return None
    return m.group(1).replace(", ", ".").strip(" ."), m.group(2).replace(", ", ".").strip(" .")
