"""The warm loop's client and protocol without Spark: which commands a daemon takes, a busy daemon never runs a
command later, frames carry output and the exit code, a wrong token is refused, an idle daemon exits."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from etl_framework.runtime import daemon as d


def test_which_commands_a_daemon_takes() -> None:
    assert d.parse_command(["run", "jobs/a.yaml", "--json"]) == (("run",), None, None)
    assert d.parse_command(["--project-dir", "/p", "--env=dev", "workflow", "run", "w.yaml"]) == (
        ("workflow", "run"), "/p", "dev")
    assert d.parse_command(["run", "jobs/a.yaml", "--env", "prod"]) == (("run",), None, "prod")
    assert d.parse_command(["validate", "jobs"])[0] not in d.DELEGATED
    assert d.parse_command(["run", "--help"])[0] == ()
    os.environ[d.OFF] = "1"
    try:
        assert d.maybe_delegate(["run", "jobs/a.yaml"]) is None
    finally:
        del os.environ[d.OFF]


def _server(behaviour: Any) -> tuple[socket.socket, int]:
    srv = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=behaviour, args=(srv,), daemon=True).start()
    return srv, srv.getsockname()[1]


def test_a_busy_daemon_is_left_alone_and_never_runs_the_command_later(capfd: pytest.CaptureFixture[str]) -> None:
    got: list[bytes] = []

    def busy(srv: socket.socket) -> None:
        conn, _ = srv.accept()  # taken, but no greeting: the daemon is in another command
        conn.settimeout(10)
        try:
            got.append(conn.recv(100))  # the client gives up without sending its request
        except OSError:
            pass

    srv, port = _server(busy)
    with srv:
        assert d._send({"pid": os.getpid(), "port": port, "token": "t"}, ["run", "a.yaml"]) is None
    assert got in ([b""], [])
    assert "is busy with another command: running this one in its own process" in capfd.readouterr().err


def test_frames_carry_stdout_stderr_and_the_exit_code(capfd: pytest.CaptureFixture[str]) -> None:
    seen: list[dict[str, Any]] = []

    def serve(srv: socket.socket) -> None:
        conn, _ = srv.accept()
        with conn:
            d.send_frame(conn, b"h", b"")
            _kind, data = d.recv_frame(conn) or (b"", b"")
            seen.append(json.loads(data))
            d.send_frame(conn, b"a", b"")
            d.send_frame(conn, b"o", b'{"status": "FAILED"}\n')
            d.send_frame(conn, b"e", b"error: job a, stage quality\n")
            d.send_frame(conn, b"x", b'{"code": 3}')

    srv, port = _server(serve)
    with srv:
        code = d._send({"pid": os.getpid(), "port": port, "token": "secret-token"}, ["run", "a.yaml", "--json"])
    assert code == 3
    out = capfd.readouterr()
    assert out.out == '{"status": "FAILED"}\n' and out.err == "error: job a, stage quality\n"
    assert seen[0]["argv"] == ["run", "a.yaml", "--json"] and seen[0]["cwd"] == os.getcwd()
    assert seen[0]["token"] == "secret-token" and seen[0]["environ"]["PATH"] == os.environ["PATH"]


def test_a_daemon_that_dies_mid_command_is_said(capfd: pytest.CaptureFixture[str]) -> None:
    def dies(srv: socket.socket) -> None:
        conn, _ = srv.accept()
        d.send_frame(conn, b"h", b"")
        d.recv_frame(conn)
        d.send_frame(conn, b"a", b"")
        conn.close()

    srv, port = _server(dies)
    with srv:
        assert d._send({"pid": 4242, "port": port, "token": "t"}, ["run", "a.yaml"]) == 1
    assert "etl daemon (pid 4242) ended during the command" in capfd.readouterr().err


def test_a_request_with_a_wrong_token_runs_nothing(tmp_path: Path) -> None:
    daemon = d.Daemon(tmp_path, "local", 1)
    ran: list[Any] = []
    daemon.run = lambda conn, request: ran.append(request) or 0  # type: ignore[method-assign]
    a, b = socket.socketpair()
    with a, b:
        t = threading.Thread(target=daemon.handle, args=(b, "right"))
        t.start()
        assert d.recv_frame(a) == (b"h", b"")
        d.send_frame(a, b"r", json.dumps({"token": "wrong", "argv": ["run"]}).encode())
        t.join(10)
    assert ran == []


def test_an_idle_daemon_exits_and_removes_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".etl").mkdir()

    class Session:
        def stop(self) -> None:
            pass

    daemon = d.Daemon(tmp_path, "local", idle_minutes=0.02)
    monkeypatch.setattr(daemon, "warm", lambda: setattr(daemon, "spark", Session()))
    monkeypatch.setattr(d, "conf_fingerprint", lambda root, env: "conf")
    seen: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: seen.append({}) or daemon.serve())
    import signal

    monkeypatch.setattr(signal, "signal", lambda *a: None)  # serve() runs in a thread here
    t.start()
    for _ in range(50):
        if d.read_info(tmp_path, "local"):
            break
        threading.Event().wait(0.05)
    info = d.read_info(tmp_path, "local")
    assert info is not None and info["pid"] == os.getpid() and oct((tmp_path / ".etl" / "daemon-local.json")
                                                                   .stat().st_mode)[-3:] == "600"
    t.join(15)
    assert not t.is_alive() and d.read_info(tmp_path, "local") is None
