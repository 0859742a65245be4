"""A run owner that exited but was not reaped yet (a zombie) no longer holds a max_concurrent_runs slot."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from etl_framework.state.workflows import pid_alive


def test_zombie_owner_counts_as_dead() -> None:
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid_alive(child.pid):
            time.sleep(0.05)
        assert not pid_alive(child.pid)  # exited, not reaped yet: a zombie
    finally:
        child.wait()
    assert pid_alive(os.getpid())


def test_second_interrupt_during_stop_leaves_no_node_running(tmp_path: Path) -> None:
    """Ctrl-C twice: the second interrupt lands inside the stop of running nodes. The run still ends STOPPED
    with every node final, so `etl workflow resume` can re-run them."""
    from etl_framework.state.workflows import WorkflowStore
    from tests.unit.test_workflow_fakes import FakeExecutor, run_engine, workflow

    store = WorkflowStore(tmp_path / "state.db")
    cfg = workflow([{"name": "start", "type": "on_demand", "actions": [{"job": "a"}]}], ["a"])
    engine = run_engine(cfg, store, FakeExecutor({"a": [("ok", 5.0)]}))
    real_final = engine._final

    def interrupted_final(name: str, node: Any, state: str, *a: Any, **kw: Any) -> None:
        if state == "STOPPED":
            raise KeyboardInterrupt  # the second signal, after `a` left `running`, before it was made final
        real_final(name, node, state, *a, **kw)

    engine._final = interrupted_final  # type: ignore[method-assign]
    outcome: list[BaseException] = []

    def go() -> None:
        try:
            engine.start()
        except BaseException as e:  # noqa: BLE001 - the interrupt is the point of the test
            outcome.append(e)

    th = threading.Thread(target=go)
    th.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not engine.running:
        time.sleep(0.02)
    engine.stop("Ctrl-C")
    th.join(20)
    assert outcome and isinstance(outcome[0], KeyboardInterrupt)
    rec = store.get_run(engine.run_id)
    assert rec["state"] == "STOPPED"
    assert {n["node"]: n["state"] for n in rec["nodes"]} == {"a": "STOPPED"}
    store.close()
