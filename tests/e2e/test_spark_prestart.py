"""The JVM `etl run` launches while it still reads its configs (runtime.spark.prestart): used only when the
session asked for is exactly the one guessed, otherwise stopped and replaced — a guess never changes a session.
Each case is its own process (a process has one JVM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO

PROBE = """
import json, os, sys
from pathlib import Path
import etl_framework.runtime.spark as rs

root = Path(sys.argv[1])
guess, asked = json.loads(sys.argv[2]), json.loads(sys.argv[3])
rs.prestart(root, guess or None)
early = rs._EARLY
rs._EARLY.thread.join()
early_pid = early.proc.pid
spark = rs.get_spark(root, asked or None)
jvm = spark.sparkContext._jvm
print(json.dumps({
    "early_pid": early_pid,
    "session_pid": jvm.java.lang.ProcessHandle.current().pid(),
    "early_alive": early.proc.poll() is None,
    "memory": spark.sparkContext.getConf().get("spark.driver.memory"),
    "max_heap_mb": jvm.java.lang.Runtime.getRuntime().maxMemory() // 2**20,
    "rows": spark.range(5).count(),
}))
"""


def probe(root: Path, guess: dict[str, str], asked: dict[str, str]) -> dict:
    p = subprocess.run([sys.executable, "-c", PROBE, str(root), json.dumps(guess), json.dumps(asked)],
                       capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_the_guessed_jvm_becomes_the_session_when_the_guess_is_right(tmp_path: Path) -> None:
    out = probe(tmp_path, {"spark.driver.memory": "1g"}, {"spark.driver.memory": "1g"})
    assert out["session_pid"] == out["early_pid"]
    assert out["memory"] == "1g" and out["max_heap_mb"] <= 1024
    assert out["rows"] == 5


def test_a_wrong_guess_is_stopped_and_the_session_gets_what_it_asked_for(tmp_path: Path) -> None:
    # driver memory is fixed when the JVM starts: the guessed JVM cannot serve it
    out = probe(tmp_path, {"spark.driver.memory": "1g"}, {"spark.driver.memory": "1536m"})
    assert out["session_pid"] != out["early_pid"]
    assert not out["early_alive"]
    assert out["memory"] == "1536m" and 1024 < out["max_heap_mb"] <= 1536
    assert out["rows"] == 5


GUESS = """
import json, sys
from pathlib import Path
import etl_framework.runtime.spark as rs
from etl_framework.cli import run, workflow
from etl_framework.cli.common import prestart_spark

veto = (workflow if sys.argv[1].endswith("wf.yaml") else run).PRESTART_VETO
prestart_spark(Path(sys.argv[1]), None, sys.argv[2], veto)
early = rs._EARLY
print(json.dumps(None if early is None else early.options))
if early is not None:
    early.thread.join()
    early.discard()
"""


def test_a_guess_the_command_never_took_ends_with_it(tmp_path: Path) -> None:
    """A config error ends `etl run` before Spark is asked for: the JVM started for it dies with the command, so
    the command's pipes close when it exits (a JVM still starting held them for seconds)."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "bad.yaml").write_text(
        "job: bad\nsources: {t: {format: csv, path: x}}\ntarget: {format: delta, path: out, mode: nope}\n")
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([{str(Path(sys.executable).parent / 'etl')!r}, 'run', 'jobs/bad.yaml'], "
        "stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)\n"
        "p.wait()\nt = time.monotonic()\nerr = p.stderr.read()\n"
        "print(round(time.monotonic() - t, 2), p.returncode, repr(err))\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                       cwd=tmp_path, env={**os.environ, "ETL_PROJECT_DIR": str(tmp_path)})
    waited, code, err = p.stdout.split(" ", 2)
    assert code == "2" and "target.mode" in err and "Traceback" not in err
    assert float(waited) < 1.0  # the pipe closed with the process, not when a JVM noticed it was alone
    assert not [d.name for d in Path("/proc").glob("[0-9]*") if _cwd(d) == str(tmp_path)]  # no JVM left


def _cwd(proc: Path) -> str:
    try:
        return os.readlink(proc / "cwd")
    except OSError:
        return ""


def guess(project: Path, job: str, env: str = "local") -> dict | None:
    p = subprocess.run([sys.executable, "-c", GUESS, job, env], capture_output=True, text=True, timeout=300,
                       check=False, cwd=project, env={**os.environ, "ETL_PROJECT_DIR": str(project)})
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_etl_run_guesses_from_the_env_file_and_leaves_jdbc_jobs_to_their_config(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "jobs").mkdir()
    (tmp_path / "conf" / "dev.yaml").write_text(textwrap.dedent("""\
        vars: {root: ./data}
        spark:
          spark.sql.shuffle.partitions: 3
          spark.sql.ansi.enabled: true
        """))
    (tmp_path / "jobs" / "csv.yaml").write_text("job: csv\n")
    (tmp_path / "jobs" / "db.yaml").write_text(
        "job: db\nsources:\n  orders:\n    format: jdbc\n    jars: [drivers/x.jar]\n")
    options = guess(tmp_path, "jobs/csv.yaml", "dev")
    assert options is not None
    assert options["spark.sql.shuffle.partitions"] == "3" and options["spark.sql.ansi.enabled"] == "true"
    assert guess(tmp_path, "jobs/db.yaml", "dev") is None  # its driver JARs join the JVM's class path
    plain = guess(tmp_path, "jobs/csv.yaml", "local")  # no conf/local.yaml: the defaults
    assert plain is not None and plain["spark.sql.shuffle.partitions"] != "3"


def test_etl_workflow_run_guesses_only_for_the_inline_executor(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "jobs").mkdir()
    (tmp_path / "conf" / "local.yaml").write_text("spark: {spark.sql.shuffle.partitions: 3}\n")
    (tmp_path / "conf" / "sub.yaml").write_text("executor: subprocess\n")
    (tmp_path / "jobs" / "wf.yaml").write_text("workflow: wf\n")
    options = guess(tmp_path, "jobs/wf.yaml", "local")
    assert options is not None and options["spark.sql.shuffle.partitions"] == "3"
    assert guess(tmp_path, "jobs/wf.yaml", "sub") is None  # the env runs each job in its own spark-submit
    (tmp_path / "jobs" / "wf.yaml").write_text("workflow: wf\nexecutor: 'subprocess'\n")
    assert guess(tmp_path, "jobs/wf.yaml", "local") is None
