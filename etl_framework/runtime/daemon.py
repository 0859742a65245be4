"""The warm development loop: `etl daemon start` keeps one SparkSession (and Great Expectations, imported) alive
for a project and env, and `etl run`, `etl preview`, `etl resume` and `etl workflow run|resume` hand their command
to it instead of paying a JVM start each time (as Gradle's daemon does for builds).

Why a daemon of our own and not Spark Connect: the framework drives the JVM through py4j (the quality gate's side
output, Iceberg commits with snapshot properties, listener metrics), which Spark Connect in 3.5 does not offer.

How a command runs in it: the client (`maybe_delegate`, called before the CLI parses anything) connects to
127.0.0.1 on the port in `.etl/daemon-<env>.json` (with the token written there, file mode 0600), sends its argv,
working directory and environment, and prints what comes back: stdout and stderr frames, then the exit code. The
daemon runs the command in its main thread exactly as the CLI would (`run_cli`), with the client's environment and
working directory, and its stdout/stderr sent to the client. Ctrl-C and SIGTERM in the client are forwarded to the
daemon's process, where the run's own signal handling stops it (recorded STOPPED, exit 130).

At start it runs two throwaway jobs in a temporary project of its own (`runtime.warmup`), so that the user's first
commands find the JVM's hot paths compiled.

Isolation between commands: temp views dropped, SQL confs reset to the session's start values, cached tables
cleared, the project's own Python modules (`python:` steps) unloaded so a changed step is imported anew. A daemon
started by other framework code or other Spark settings is replaced; one busy with a command makes the next command
run in its own process (said in one line). A daemon killed mid-run leaves what a killed `etl run` leaves: a RUNNING
record whose process is gone (resumable; its lock lease expires). It exits after `idle_minutes` without commands.
Off (no `etl daemon start`, or `ETL_NO_DAEMON=1`) nothing of this runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

IN_DAEMON = "ETL_IN_DAEMON"
OFF = "ETL_NO_DAEMON"
DELEGATED = {("run",), ("preview",), ("resume",), ("workflow", "run"), ("workflow", "resume")}
GROUP_OPTIONS_WITH_VALUE = ("--project-dir", "--env")
DEFAULT_IDLE_MINUTES = 30.0


# ------------------------------------------------------------------------------------------------ identity


def info_path(root: Path, env: str) -> Path:
    return root / ".etl" / f"daemon-{env}.json"


def code_fingerprint() -> str:
    """The framework's code as loaded from disk (every module's path, size and mtime) and the interpreter: a daemon
    whose code differs from the client's is replaced, so a command never runs on stale code."""
    import etl_framework

    pkg = Path(etl_framework.__file__).resolve().parent
    h = hashlib.sha256(sys.executable.encode())
    for p in sorted(pkg.rglob("*.py")):
        st = p.stat()
        h.update(f"{p.relative_to(pkg)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def conf_fingerprint(root: Path, env: str) -> str:
    """The Spark conf the env asks for (spark-defaults.conf + the env's `spark:` block): a session started with
    other static settings (memory, master, JARs) cannot serve it."""
    from etl_framework.config.project import Project
    from etl_framework.runtime.spark import resolve_conf

    project = Project.discover(str(root))
    conf = resolve_conf(project.root, project.env_config(env).spark or None)
    return hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:16]


def read_info(root: Path, env: str) -> dict[str, Any] | None:
    try:
        return json.loads(info_path(root, env).read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, which an init that reaps nothing may keep, does not)."""
    from etl_framework.state.db import pid_alive

    return pid_alive(pid)


# ------------------------------------------------------------------------------------------------ framing

# A frame: one byte of kind, 4 bytes of length, the payload. Kinds: h (the daemon's greeting), r (the request), a
# (accepted), o (stdout), e (stderr), x (the exit code, JSON).


def send_frame(sock: socket.socket, kind: bytes, data: bytes) -> None:
    sock.sendall(kind + struct.pack(">I", len(data)) + data)


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except InterruptedError:
            continue
        if not chunk:
            return None
        buf += chunk
    return buf


def recv_frame(sock: socket.socket) -> tuple[bytes, bytes] | None:
    head = recv_exact(sock, 5)
    if head is None:
        return None
    size = struct.unpack(">I", head[1:])[0]
    data = recv_exact(sock, size) if size else b""
    return (head[:1], data) if data is not None else None


class FrameStream:
    """A text stream whose writes go to the client as frames of one kind (the daemon's stdout or stderr during a
    command). `isatty` answers for the client's terminal."""

    def __init__(self, sock: socket.socket, kind: bytes, tty: bool) -> None:
        self.sock, self.kind, self.tty = sock, kind, tty
        self.encoding, self.errors = "utf-8", "replace"
        self.broken = False

    def write(self, text: str) -> int:
        if text and not self.broken:
            try:
                send_frame(self.sock, self.kind, text.encode("utf-8", "replace"))
            except OSError:
                self.broken = True  # the client went away: the command runs on, as with a closed terminal
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty

    def fileno(self) -> int:
        raise OSError("a daemon command's stream has no file descriptor")

    @property
    def buffer(self) -> Any:
        stream = self

        class _Bytes:
            def write(self, data: bytes) -> int:
                stream.write(data.decode("utf-8", "replace"))
                return len(data)

            def flush(self) -> None:
                pass

        return _Bytes()

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


# ------------------------------------------------------------------------------------------------ client


def parse_command(argv: list[str]) -> tuple[tuple[str, ...], str | None, str | None]:
    """(command words, --project-dir, --env) of an `etl` argv, without click: the client decides before any
    import of the CLI whether a daemon takes the command."""
    words: list[str] = []
    project_dir = env = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            return (), None, None
        name, eq, value = a.partition("=")
        if name in GROUP_OPTIONS_WITH_VALUE:
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            if name == "--env":
                env = value
            elif not words:
                project_dir = value
        elif not a.startswith("-") and len(words) < 2:
            words.append(a)
        i += 1
    if words[:1] == ["workflow"]:
        return tuple(words[:2]), project_dir, env
    return tuple(words[:1]), project_dir, env


def maybe_delegate(argv: list[str]) -> int | None:
    """Run the command in this project's daemon when one serves it; None: run it here (no daemon, another
    command, the daemon busy or unreachable)."""
    if os.environ.get(OFF) == "1" or os.environ.get(IN_DAEMON) == "1":
        return None
    command, project_dir, env = parse_command(argv)
    if command not in DELEGATED:
        return None
    env = env or os.environ.get("ETL_ENV") or "local"
    try:
        from etl_framework.config.project import Project

        root = Project.discover(project_dir or os.environ.get("ETL_PROJECT_DIR")).root
    except Exception:  # noqa: BLE001 - no project here: the command reports it itself
        return None
    info = read_info(root, env)
    if info is None:
        return None
    if not alive(int(info.get("pid", 0))):
        with contextlib.suppress(OSError):
            info_path(root, env).unlink()
        return None
    try:
        stale = info.get("code") != code_fingerprint() or info.get("conf") != conf_fingerprint(root, env)
    except Exception:  # noqa: BLE001 - a broken env config: the command reports it, in this process
        return None
    if stale:
        _say(f"etl daemon (pid {info['pid']}) runs other framework code or Spark settings: replacing it")
        stop(root, env)
        try:
            info = start(root, env, idle_minutes=float(info.get("idle_minutes") or DEFAULT_IDLE_MINUTES))
        except Exception as e:  # noqa: BLE001 - no warm session: the command runs here
            _say(f"etl daemon did not start ({e}); running in this process")
            return None
    return _send(info, argv)


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _send(info: dict[str, Any], argv: list[str]) -> int | None:
    pid = int(info["pid"])
    try:
        sock = socket.create_connection(("127.0.0.1", int(info["port"])), timeout=3)
    except OSError:
        return None
    with sock:
        request = {"token": info["token"], "argv": argv, "cwd": os.getcwd(), "environ": dict(os.environ),
                   "tty": [sys.stdout.isatty(), sys.stderr.isatty()]}
        try:  # the daemon greets a connection it takes at once; a busy one takes it only after its command, so
            # the request is sent after the greeting: a connection given up on never runs a command later
            hello = recv_frame(sock)
            if hello is not None and hello[0] == b"h":
                send_frame(sock, b"r", json.dumps(request).encode())
                first = recv_frame(sock)
            else:
                first = None
        except (OSError, TimeoutError):
            first = None
        if first is None or first[0] != b"a":
            _say(f"etl daemon (pid {pid}) is busy with another command: running this one in its own process")
            return None
        sock.settimeout(None)
        forwarded = {}

        def forward(signum: int, _frame: Any) -> None:
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            forwarded[sig] = signal.signal(sig, forward)
        try:
            while True:
                frame = recv_frame(sock)
                if frame is None:
                    _say(f"etl daemon (pid {pid}) ended during the command; a run it had started is recorded "
                         "RUNNING until `etl resume RUN_ID` (or `etl runs`) finds its process gone")
                    return 1
                kind, data = frame
                if kind == b"o":
                    sys.stdout.write(data.decode("utf-8", "replace"))
                    sys.stdout.flush()
                elif kind == b"e":
                    sys.stderr.write(data.decode("utf-8", "replace"))
                    sys.stderr.flush()
                elif kind == b"x":
                    return int(json.loads(data)["code"])
        finally:
            for sig, handler in forwarded.items():
                signal.signal(sig, handler)


# ------------------------------------------------------------------------------------------------ start / stop


def start(root: Path, env: str, idle_minutes: float = DEFAULT_IDLE_MINUTES, timeout: float = 180) -> dict[str, Any]:
    """Start a daemon for the project and env in the background and wait until it serves; returns its info."""
    info = read_info(root, env)
    if info and alive(int(info.get("pid", 0))):
        return info
    log = root / ".etl" / f"daemon-{env}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "etl_framework.runtime.daemon", "serve", str(root), env, str(idle_minutes)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, cwd=str(root),
            env={**os.environ, IN_DAEMON: "1"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_info(root, env)
        if info and info.get("pid") == proc.pid:
            return info
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-5:]
            raise RuntimeError(f"the daemon exited with {proc.returncode}: " + " | ".join(tail))
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"the daemon did not serve within {timeout:.0f} s (log: {log})")


def stop(root: Path, env: str, timeout: float = 30) -> int | None:
    """Stop the project's daemon for env (SIGTERM, then SIGKILL); returns the pid it had, None when none ran."""
    info = read_info(root, env)
    if not info:
        return None
    pid = int(info.get("pid", 0))
    if pid and alive(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        info_path(root, env).unlink()
    return pid


# ------------------------------------------------------------------------------------------------ server


class Daemon:
    """The serving process: one warm session, one command at a time, in the main thread."""

    def __init__(self, root: Path, env: str, idle_minutes: float) -> None:
        self.root, self.env, self.idle = root, env, idle_minutes * 60
        self.stopping = False
        self.busy = False

    def warm(self) -> None:
        from etl_framework.config.project import Project
        from etl_framework.quality.gate import preload_gx, wait_gx
        from etl_framework.runtime.spark import get_spark
        from etl_framework.runtime.warmup import warm_up

        preload_gx()  # GX (for rules only GX checks) is imported while the JVM starts and warms up
        project = Project.discover(str(self.root))
        self.spark = get_spark(project.root, project.env_config(self.env).spark or None)
        import etl_framework.cli
        import etl_framework.engine.job
        import etl_framework.engine.workflow  # noqa: F401

        warm_up(self.spark)  # the JIT compiles the paths every run takes before the user's first command
        wait_gx()
        self.baseline = {r[0]: r[1] for r in self.spark.sql("SET").collect()}
        self.package = Path(sys.modules["etl_framework"].__file__ or "").resolve().parent

    def serve(self) -> None:
        self.warm()
        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(1.0)
        token = secrets.token_hex(16)
        info = {"pid": os.getpid(), "port": server.getsockname()[1], "token": token, "env": self.env,
                "code": code_fingerprint(), "conf": conf_fingerprint(self.root, self.env),
                "idle_minutes": self.idle / 60, "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path = info_path(self.root, self.env)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.replace(tmp, path)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # idle: a forwarded Ctrl-C that came late is no order to exit
        signal.signal(signal.SIGTERM, self._term)
        last = time.monotonic()
        try:
            while not self.stopping and time.monotonic() - last < self.idle:
                try:
                    conn, _ = server.accept()
                except (TimeoutError, InterruptedError):
                    continue
                with conn:
                    self.handle(conn, token)
                last = time.monotonic()
        finally:
            server.close()
            mine = read_info(self.root, self.env)
            if mine and mine.get("pid") == os.getpid():
                with contextlib.suppress(OSError):
                    path.unlink()
            with contextlib.suppress(Exception):
                self.spark.stop()

    def _term(self, _signum: int, _frame: Any) -> None:
        self.stopping = True

    def handle(self, conn: socket.socket, token: str) -> None:
        conn.settimeout(10)
        try:
            send_frame(conn, b"h", b"")
            frame = recv_frame(conn)
        except OSError:  # a client that gave up waiting (the daemon was busy) and went away
            return
        if frame is None or frame[0] != b"r":
            return
        request = json.loads(frame[1])
        if not secrets.compare_digest(str(request.get("token")), token):
            return
        conn.settimeout(None)
        send_frame(conn, b"a", b"")
        code = self.run(conn, request)
        with contextlib.suppress(OSError):
            send_frame(conn, b"x", json.dumps({"code": code}).encode())
        self.reset()  # after the answer: the user does not wait for it, the next command finds it done

    def run(self, conn: socket.socket, request: dict[str, Any]) -> int:
        from etl_framework.cli import cli
        from etl_framework.cli.common import run_cli

        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        saved_streams = sys.stdout, sys.stderr
        tty_out, tty_err = (list(request.get("tty") or []) + [False, False])[:2]
        os.environ.clear()
        os.environ.update(request["environ"])
        os.environ[IN_DAEMON] = "1"
        sys.stdout, sys.stderr = FrameStream(conn, b"o", tty_out), FrameStream(conn, b"e", tty_err)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            os.chdir(request["cwd"])
            return run_cli(cli, list(request["argv"]))
        except BaseException as e:  # noqa: BLE001 - whatever the command did, the daemon serves the next one
            with contextlib.suppress(Exception):
                sys.stderr.write(f"error: {type(e).__name__}: {e}\n")
            return 130 if isinstance(e, KeyboardInterrupt) else 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, self._term)
            sys.stdout, sys.stderr = saved_streams
            os.environ.clear()
            os.environ.update(saved_env)
            with contextlib.suppress(OSError):
                os.chdir(saved_cwd)

    def reset(self) -> None:
        """What one command leaves in the session or the interpreter that the next must not see."""
        spark = self.spark
        with contextlib.suppress(Exception):
            for t in spark.catalog.listTables():
                if t.isTemporary:
                    spark.catalog.dropTempView(t.name)
        with contextlib.suppress(Exception):
            spark.catalog.clearCache()
        with contextlib.suppress(Exception):
            now = {r[0]: r[1] for r in spark.sql("SET").collect()}
            for key, value in now.items():
                if key not in self.baseline:
                    spark.conf.unset(key)
                elif value != self.baseline[key] and spark.conf.isModifiable(key):
                    spark.conf.set(key, self.baseline[key])
        with contextlib.suppress(Exception):
            sc = spark.sparkContext
            for prop in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel",
                         "spark.scheduler.pool"):
                sc.setLocalProperty(prop, None)  # type: ignore[arg-type]
        unload_project_modules(self.root, self.package)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def unload_project_modules(root: Path, package: Path) -> list[str]:
    """Forget the project's own modules (`python:` steps and what they import), never the framework's nor an
    installed package's, so the next command imports the files as they are now."""
    import importlib

    root = root.resolve()
    gone = []
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if not file:
            continue
        try:
            path = Path(file).resolve()
        except OSError:
            continue
        if (path.is_relative_to(root) and not path.is_relative_to(package) and "site-packages" not in path.parts
                and ".venv" not in path.parts):
            del sys.modules[name]
            gone.append(name)
    importlib.invalidate_caches()
    return gone


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] != "serve":
        print("usage: python -m etl_framework.runtime.daemon serve ROOT ENV IDLE_MINUTES", file=sys.stderr)
        return 2
    Daemon(Path(argv[1]).resolve(), argv[2], float(argv[3])).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
