"""The report of a workflow run, opened in headless Chromium (Debian's package) as a user would open it: the
page
loads with no console error and no network request, every node is shown with its state, and a screenshot is
kept (its path is printed in the test output).

Chromium is driven over the Chrome DevTools Protocol on a pipe (`--remote-debugging-pipe`: JSON messages
ended by
NUL on fds 3 and 4), which needs no extra package and no TCP port.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.unit.test_report_load import make_workflow_run

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS = REPO / "reports" / "e2e"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing (the test setup is root in CI)."""
    if not Path(CHROMIUM).exists():
        if not shutil.which("apt-get"):
            pytest.skip("chromium is missing and apt-get is not available to install it")
        if os.geteuid() != 0:
            pytest.skip("chromium is missing and installing it with apt-get needs root")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"],
            check=True,
            env=env,
            capture_output=True,
            timeout=900,
        )
    assert Path(CHROMIUM).exists()
    return CHROMIUM


class Cdp:
    """A minimal DevTools client over Chromium's debugging pipe; events are kept in `events`."""

    def __init__(self, chromium: str, profile: Path) -> None:
        cmd_r, self.cmd_w = os.pipe()
        self.res_r, res_w = os.pipe()
        # move the child's ends above 9 so that the shell's 3</4> redirections cannot clobber each other
        hi_r, hi_w = _high(cmd_r), _high(res_w)
        os.close(cmd_r)
        os.close(res_w)
        args = " ".join(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        )
        self.proc = subprocess.Popen(
            ["bash", "-c", f"exec {args} 3<&{hi_r} 4>&{hi_w}"],
            pass_fds=(hi_r, hi_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(hi_r)
        os.close(hi_w)
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.res_r], [], [], left)
            if ready:
                chunk = os.read(self.res_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the debugging pipe")
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self._read(deadline - time.monotonic())
            if m is None:
                break
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)
        raise TimeoutError(f"no answer to {method} in {timeout} s")

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        for e in self.events:
            if e["method"] == method:
                return e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self._read(deadline - time.monotonic())
            if m is not None and "method" in m:
                self.events.append(m)
                if m["method"] == method:
                    return m
        raise TimeoutError(f"no {method} event in {timeout} s")

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            m = self._read(left)
            if m is not None and "method" in m:
                self.events.append(m)

    def close(self) -> None:
        try:
            os.write(self.cmd_w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.cmd_w)
        os.close(self.res_r)


def _high(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD, 10)


def open_page(chromium: str, page: Path, profile: Path) -> dict[str, Any]:
    """Load `page` in a fresh headless Chromium; return console errors, exceptions, network requests (other
    than
    the page itself) and what the graph shows (each node's name, state and drawn text, and its size)."""
    url = page.resolve().as_uri()
    cdp = Cdp(chromium, profile)
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Page.navigate", {"url": url}, session=session)
        cdp.wait_event("Page.loadEventFired")
        cdp.drain(1.0)  # late requests or errors
        found = cdp.send(
            "Runtime.evaluate",
            {
                "returnByValue": True,
                "expression": """
            JSON.stringify([...document.querySelectorAll('svg.graph g.node')].map(g => {
              const r = g.getBoundingClientRect();
              return {name: g.dataset.node, kind: g.dataset.kind, state: g.dataset.state,
                      text: [...g.querySelectorAll('text')].map(t => t.textContent),
                      width: r.width, height: r.height};
            }))""",
            },
            session=session,
        )
        nodes = json.loads(found["result"]["value"])
    finally:
        cdp.close()
    console = [
        e["params"]
        for e in cdp.events
        if e["method"] == "Runtime.consoleAPICalled"
        and e["params"].get("type") in ("error", "assert", "warning")
    ]
    exceptions = [e["params"] for e in cdp.events if e["method"] == "Runtime.exceptionThrown"]
    logs = [
        e["params"]["entry"]
        for e in cdp.events
        if e["method"] == "Log.entryAdded" and e["params"]["entry"].get("level") in ("error", "warning")
    ]
    requests = [
        e["params"]["request"]["url"]
        for e in cdp.events
        if e["method"] == "Network.requestWillBeSent" and e["params"]["request"]["url"] != url
    ]
    return {"console": console, "exceptions": exceptions, "logs": logs, "requests": requests, "nodes": nodes}


def screenshot(chromium: str, page: Path, out: Path, profile: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            "--window-size=1300,1700",
            "--hide-scrollbars",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert out.stat().st_size > 10_000  # a real picture, not an empty page
    return out


def test_workflow_report_in_headless_chromium(
    chromium: str, project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = make_workflow_run(project)
    out = tmp_path / "report.html"
    etl = Path(sys.executable).parent / "etl"
    res = subprocess.run(
        [
            str(etl),
            "--project-dir",
            str(project),
            "report",
            "--workflow-run",
            made["workflow_run_id"],
            "-o",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out.resolve())

    seen = open_page(chromium, out, tmp_path / "profile")
    assert seen["console"] == [] and seen["exceptions"] == [] and seen["logs"] == []
    assert seen["requests"] == []
    shown = {n["name"]: n for n in seen["nodes"]}
    expected = {
        "raw_trips": "SUCCEEDED",
        "zones_load": "SUCCEEDED",
        "trips_clean": "SUCCEEDED",
        "trip_stats": "SUCCEEDED",
        "start": "FIRED",
        "after_crawl": "FIRED",
        "after_curated": "FIRED",
        "nightly": "NOT_FIRED",
        "on_new_files": "NOT_FIRED",
    }
    assert {k: v["state"] for k, v in shown.items()} == expected
    for name, n in shown.items():
        assert n["width"] > 40 and n["height"] > 20, f"node {name} is not drawn"
        assert name in n["text"], f"node {name} has no label"
        drawn = " ".join(n["text"])
        assert expected[name].replace("_", " ") in drawn.replace("_", " "), f"node {name} shows no state"
    assert "SUCCEEDED ×2" in shown["trips_clean"]["text"]  # the retry is visible on the graph

    shot = screenshot(chromium, out, ARTIFACTS / "workflow_report.png", tmp_path / "profile2")
    with capsys.disabled():
        print(f"\nreport screenshot (CI artifact): {shot}\nreport page: {out}")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real run of the example workflow (crawler, three jobs on local Spark) on a little generated data."""
    import shutil as sh

    root = tmp_path_factory.mktemp("real") / "proj"
    root.mkdir()
    for name in ("conf", "jobs", "spark-conf"):
        if (REPO / name).exists():
            sh.copytree(REPO / name, root / name)
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "generate_data.py"),
            "--rows",
            "200",
            "--files",
            "2",
            "--days",
            "2",
            "--out",
            str(root / "data" / "raw"),
            "--quiet",
        ],
        check=True,
        timeout=120,
    )
    etl = Path(sys.executable).parent / "etl"
    res = subprocess.run(
        [str(etl), "--project-dir", str(root), "workflow", "run", "jobs/nightly_trips.yaml", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads(res.stdout)
    return {"root": root, "record": record, "stderr": res.stderr}


def test_report_of_a_real_workflow_run_in_headless_chromium(
    chromium: str, real_run: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = real_run["record"]
    # `etl workflow run` wrote the run's report itself and says where
    written = Path(record["report"])
    assert written == real_run["root"].resolve() / "reports" / f"{record['run_id']}.html" and written.is_file()
    assert f"report: {written}" in real_run["stderr"]
    out = tmp_path / "real.html"
    etl = Path(sys.executable).parent / "etl"
    res = subprocess.run(
        [
            str(etl),
            "--project-dir",
            str(real_run["root"]),
            "report",
            "--workflow-run",
            record["run_id"],
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    seen = open_page(chromium, out, tmp_path / "profile")
    assert seen["console"] == [] and seen["exceptions"] == [] and seen["logs"] == []
    assert seen["requests"] == []
    shown = {n["name"]: n["state"] for n in seen["nodes"]}
    # every node of the run with the state the workflow store recorded, every trigger fired or not
    for node in record["nodes"]:
        assert shown[node["node"]] == node["state"], node
    fired = {t["trigger"] for t in record["triggers"]}
    assert {k for k, v in shown.items() if v == "FIRED"} == fired
    assert set(shown) == {n["node"] for n in record["nodes"]} | {
        "start",
        "nightly",
        "after_crawl",
        "after_curated",
        "on_new_files",
    }
    page = out.read_text()
    for node in record["nodes"]:
        for rid in node.get("job_run_ids") or []:
            assert f'id="run-{rid}"' in page  # each job run has its section
    shot = screenshot(chromium, out, ARTIFACTS / "workflow_report_real_run.png", tmp_path / "profile2")
    with capsys.disabled():
        print(f"\nreal workflow run report screenshot (CI artifact): {shot}")


def test_detector_sees_requests_and_console_errors(chromium: str, tmp_path: Path) -> None:
    """The checks above can fail: a page with an external image and a console error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><script>console.error("boom")</script>'
        '<img src="http://127.0.0.1:9/x.png"><svg class="graph"><g class="node" data-node="a" '
        'data-state="FAILED"><text>a</text></g></svg></body></html>'
    )
    seen = open_page(chromium, bad, tmp_path / "profile")
    assert [c["args"][0]["value"] for c in seen["console"]] == ["boom"]
    assert "http://127.0.0.1:9/x.png" in seen["requests"]
    assert [n["state"] for n in seen["nodes"]] == ["FAILED"]
