"""The SparkSession every local run uses: `spark-conf/spark-defaults.conf` of the project (else the packaged
default) plus the env config's `spark:` block, with the Glue 5 JARs from the project-local `.jars/` folder.

Reading the same file that `spark-submit --properties-file` reads keeps `etl run` and `spark-submit` identical.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl_framework.errors import EtlError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PATH_KEYS = ("spark.jars",)
QUICK_START_ENV = "ETL_SPARK_QUICK_START"  # "1": C1-only JIT on the driver (quick start, slow on big data)
HELPER_JAR = "etl-framework-spark.jar"  # the framework's own Spark helper, compiled by `make` from java/


def helper_available(spark: Any, name: str) -> bool:
    """Whether a class of the framework's helper JAR (`java/`) is on Spark's classpath."""
    try:
        spark._jvm.java.lang.Class.forName(name, False, spark._jvm.Thread.currentThread().getContextClassLoader())
        return True
    except Exception:  # noqa: BLE001 - py4j raises its own error for a missing class
        return False


def packaged_conf_dir() -> Path:
    return Path(str(resources.files("etl_framework") / "resources" / "spark-conf"))


def conf_dir(project_root: Path | None) -> Path:
    if project_root is not None and (project_root / "spark-conf" / "spark-defaults.conf").is_file():
        return project_root / "spark-conf"
    return packaged_conf_dir()


def read_defaults(path: Path) -> dict[str, str]:
    """Parse a spark-defaults.conf (key, whitespace, value; `#` comments) the way spark-submit does."""
    conf: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        conf[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return conf


def jars_dir(project_root: Path | None) -> Path:
    env = os.environ.get("ETL_JARS_DIR")
    if env:
        return Path(env)
    for base in [project_root, Path(__file__).resolve().parents[2]]:
        if base is not None and (base / ".jars").is_dir():
            return base / ".jars"
    return (project_root or Path.cwd()) / ".jars"


def resolve_conf(project_root: Path | None, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """The effective Spark conf, with relative JAR and log4j paths made absolute."""
    cdir = conf_dir(project_root)
    conf = read_defaults(cdir / "spark-defaults.conf")
    jdir = jars_dir(project_root)
    if "spark.jars" in conf:
        jars = []
        for item in conf["spark.jars"].split(","):
            item = item.strip()
            p = Path(item)
            if not p.is_absolute():
                p = jdir / p.name if item.startswith(".jars/") else (project_root or Path.cwd()) / p
            jars.append(str(p))
        missing = [j for j in jars if not Path(j).is_file()]
        if missing:
            raise EtlError(
                "Spark's JARs are missing: " + ", ".join(Path(m).name for m in missing)
                + f" (looked in {jdir}).\n  what to do: run `make install` in the project (it resolves them"
                " from Maven Central into .jars/ once)"
            )
        conf["spark.jars"] = ",".join(jars)
    opts = conf.get("spark.driver.extraJavaOptions", "")
    if "spark-conf/log4j2.properties" in opts:
        conf["spark.driver.extraJavaOptions"] = opts.replace(
            "spark-conf/log4j2.properties", str(cdir / "log4j2.properties")
        )
    if os.environ.get(QUICK_START_ENV) == "1":
        # small data (the test suite, demos): a C1-only JIT starts a Spark process ~3 s sooner, but runs a big job
        # 2.5x slower, so it is never the default
        conf["spark.driver.extraJavaOptions"] = (conf.get("spark.driver.extraJavaOptions", "")
                                                 + " -XX:TieredStopAtLevel=1").strip()
    for k, v in (overrides or {}).items():
        conf[k] = str(v).lower() if isinstance(v, bool) else str(v)
    return conf


@functools.cache
def _java_major(java: str) -> int | None:
    """The major version of a `java` binary (a process start: asked once per binary and process)."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=20, check=False).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    for token in out.replace('"', " ").split():
        if token[:1].isdigit():
            head = token.split(".")[0]
            return int(token.split(".")[1]) if head == "1" else int(head)
    return None


def java_home() -> str | None:
    """A Java 17 home (Spark 3.5 does not run on 21+); None when the default `java` is fine."""
    current = os.environ.get("JAVA_HOME")
    java = str(Path(current) / "bin" / "java") if current else shutil.which("java")
    if java and _java_major(java) in (8, 11, 17):
        return current
    for cand in sorted(Path("/usr/lib/jvm").glob("*17*")):
        if (cand / "bin" / "java").exists() and _java_major(str(cand / "bin" / "java")) == 17:
            return str(cand)
    raise EtlError(
        "no Java 17 found (Spark 3.5 runs on Java 8, 11 or 17, not 21+).\n"
        "  what to do: install OpenJDK 17 (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME to one"
    )


_SESSION: SparkSession | None = None


def session_conf(conf: dict[str, str], master: str) -> dict[str, str]:
    """Where the JARs go for `master`. Local: one JVM, so on its class path; through spark.jars, Spark would copy
    all of them (~380 MB) into a new temp folder at every start — seconds per run, and a full disk after many killed
    runs. Any other master: they stay in spark.jars, which the driver serves to every executor (a worker host has
    no .jars/ folder, and driver-side class path entries never reach an executor)."""
    from etl_framework.runtime.cluster import is_local_master

    out = dict(conf)
    if is_local_master(master) and out.get("spark.jars"):
        jars = out.pop("spark.jars").replace(",", os.pathsep)
        out["spark.driver.extraClassPath"] = os.pathsep.join(
            p for p in (out.get("spark.driver.extraClassPath"), jars) if p)
    return out


def builder_options(
    project_root: Path | None, overrides: dict[str, Any] | None = None, app_name: str = "etl",
    extra_jars: list[Path] | None = None,
) -> dict[str, str]:
    """What the session builder gets — which is also the JVM's spark-submit command line — with the environment
    the JVM inherits (JAVA_HOME, PYSPARK_PYTHON) set in this process."""
    home = java_home()
    if home:
        os.environ["JAVA_HOME"] = home
    conf = resolve_conf(project_root, overrides)
    # Python workers (UDFs, pandas/arrow functions) run this interpreter, not whatever python3 is on PATH; on a
    # cluster whose hosts keep Python elsewhere, `spark.pyspark.python` in the env's `spark:` map names theirs
    # (the driver's PYSPARK_PYTHON is what executors start: a session built in-process never reads that key).
    if conf.get("spark.pyspark.python"):
        os.environ["PYSPARK_PYTHON"] = conf["spark.pyspark.python"]
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if extra_jars:
        missing = [str(j) for j in extra_jars if not Path(j).is_file()]
        if missing:
            raise EtlError(f"driver JAR(s) named under a source's 'jars:' do not exist: {', '.join(missing)}\n"
                           "  what to do: fix the path (relative to the project directory)")
        conf["spark.jars"] = ",".join([*filter(None, conf.get("spark.jars", "").split(",")),
                                       *(str(j) for j in extra_jars)])
    from etl_framework.runtime.cluster import master_of

    options = {"spark.app.name": app_name}
    if not (conf.get("spark.master") or os.environ.get("SPARK_MASTER")):
        options["spark.master"] = master_of(conf)
    options.update(session_conf(conf, master_of(conf)))
    return options


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants: spark-submit's shell, Spark's launcher and the JVM it execs."""
    import signal

    children: dict[int, list[int]] = {}
    for d in Path("/proc").glob("[0-9]*"):  # Linux; elsewhere only `pid` itself is killed
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    tree = [pid]
    for p in tree:
        tree.extend(children.get(p, []))
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


class _EarlyJvm:
    """A JVM launched for the session `get_spark` is expected to ask for (see `prestart`). Not taken by the time
    the process exits (a config error, nothing new to read), it is killed at once: a JVM still starting would hold
    the command's stdout and stderr open for seconds after it ended."""

    def __init__(self, options: dict[str, str]) -> None:
        import atexit
        import subprocess
        import threading

        from pyspark import java_gateway
        from pyspark.conf import SparkConf

        self.options = options
        self.environ = dict(os.environ)
        self.gateway: Any = None
        self.proc: Any = None
        self.taken = False
        conf = SparkConf()  # exactly the SparkConf SparkSession.Builder.getOrCreate hands to launch_gateway
        for k, v in options.items():
            conf.set(k, v)

        def popen(*args: Any, **kwargs: Any) -> Any:  # launch_gateway keeps its Popen to itself until it returns
            self.proc = subprocess.Popen(*args, **kwargs)
            return self.proc

        def launch() -> None:
            try:
                self.gateway = java_gateway.launch_gateway(conf)
            except BaseException:  # noqa: BLE001 - get_spark launches again and reports what fails
                self.gateway = None
            finally:
                java_gateway.Popen = subprocess.Popen

        # imports done above, in the caller's thread: two threads importing at once can deadlock the import lock;
        # nothing else launches a gateway meanwhile (get_spark waits for this one first)
        java_gateway.Popen = popen
        self.thread = threading.Thread(target=launch, name="etl-spark-prestart", daemon=True)
        self.thread.start()
        atexit.register(self._at_exit)

    def take(self, options: dict[str, str]) -> Any:
        """The gateway when the session asked for is the one guessed, in the same environment; else None (the
        guessed JVM is killed first, so two JVMs never compete for the cores)."""
        if options != self.options or dict(os.environ) != self.environ:
            self.discard()
            return None
        self.thread.join()
        self.taken = self.gateway is not None
        return self.gateway

    def discard(self, wait: bool = True) -> None:
        """Kill the guessed JVM; `wait`: until it is gone and the launch thread has given up (not at exit)."""
        import contextlib

        if not self.thread.is_alive() and self.gateway is not None:
            with contextlib.suppress(Exception):
                self.gateway.shutdown()
        if self.proc is not None:
            _kill_tree(self.proc.pid)
            if wait:
                with contextlib.suppress(Exception):
                    self.proc.wait(timeout=10)
        if wait:
            self.thread.join(timeout=10)
        self.gateway = None

    def _at_exit(self) -> None:
        if not self.taken:
            self.discard(wait=False)


_EARLY: _EarlyJvm | None = None


def prestart(project_root: Path | None, overrides: dict[str, Any] | None = None) -> None:
    """Launch the JVM of the session a run is about to ask for, while it still reads its configs: the JVM's start
    then overlaps the Python work before the first `get_spark`. Only a guess: `get_spark` uses it when it asks
    for exactly these options in exactly this process environment, else stops it and launches its own — a guess
    never changes a session. Nothing happens when this process has a session, or Spark Connect is asked for."""
    global _EARLY
    if _SESSION is not None or _EARLY is not None or any(
            k in os.environ for k in ("PYSPARK_GATEWAY_PORT", "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")):
        return
    try:
        options = builder_options(project_root, overrides)
    except Exception:  # noqa: BLE001 - get_spark meets the same problem and reports it
        return
    if "spark.remote" in options:
        return
    from pyspark import SparkContext

    if SparkContext._gateway is not None:
        return
    _EARLY = _EarlyJvm(options)


def get_spark(
    project_root: Path | None = None, overrides: dict[str, Any] | None = None, app_name: str = "etl",
    extra_jars: list[Path] | None = None,
) -> SparkSession:
    """Create (once per process) or return the shared local SparkSession. `extra_jars` (a jdbc source's own
    driver JARs) join spark.jars when this call creates the session."""
    global _SESSION, _EARLY
    if _SESSION is not None:
        return _SESSION
    options = builder_options(project_root, overrides, app_name, extra_jars)
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    early, _EARLY = _EARLY, None
    active = SparkSession.getActiveSession()
    if active is not None:  # spark-submit or Glue already made one
        if early is not None:
            early.discard()
        _SESSION = active
        return active
    gateway = early.take(options) if early is not None else None
    if gateway is not None:
        with SparkContext._lock:
            if SparkContext._gateway is None:
                SparkContext._gateway = gateway
                SparkContext._jvm = gateway.jvm
            else:
                early.discard()  # type: ignore[union-attr]
    builder = SparkSession.builder
    for k, v in options.items():
        builder = builder.config(k, v)
    _SESSION = builder.getOrCreate()
    _SESSION.sparkContext.setLogLevel("ERROR")
    return _SESSION


# Set on every run's own session, locally and on Glue alike (no `--conf` needed: these are runtime SQL confs).
# CORRECTED: dates and timestamps parse with Spark 3's strict java.time patterns only. A value that does not match
# (2024-02-30, 25:00, a typo) is then a malformed row that follows the source's `bad_records`, instead of the
# default EXCEPTION policy failing the whole job with INCONSISTENT_BEHAVIOR_CROSS_VERSION when Spark 2's lenient
# parser would have read it differently, or LEGACY silently rolling 2024-02-30 over to March 1st.
RUN_CONFS = {"spark.sql.legacy.timeParserPolicy": "CORRECTED"}


def apply_run_confs(session: Any, env_spark: dict[str, Any] | None) -> None:
    """The framework's run confs, then the env's `spark:` block's runtime-modifiable SQL confs, on a run's session:
    the env wins, and on Glue (where spark-defaults.conf is not used) the same values hold."""
    wanted = {**RUN_CONFS, **{k: v for k, v in (env_spark or {}).items() if str(k).startswith("spark.sql.")}}
    for key, value in wanted.items():
        try:
            if session.conf.isModifiable(key):
                session.conf.set(key, str(value).lower() if isinstance(value, bool) else str(value))
        except Exception:  # noqa: BLE001, S112 - a static conf stays as the cluster set it
            continue


def drain_tasks(spark: Any, timeout: float = 10.0) -> None:
    """Wait (bounded) until no Spark task runs. A cancelled job's tasks are still being killed for a moment; if
    the process exits meanwhile, the JVM's shutdown makes them print stack traces ("Shutdown in progress")."""
    import time

    deadline = time.monotonic() + timeout
    try:
        tracker = spark.sparkContext._jsc.sc().statusTracker()
        while time.monotonic() < deadline:
            if sum(int(i.numRunningTasks()) for i in tracker.getExecutorInfos()) == 0:
                return
            time.sleep(0.1)
    except Exception:  # noqa: BLE001, S110 - the JVM may be gone already
        pass
