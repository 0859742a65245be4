#!/usr/bin/env python
"""`make bench` part: workflow engine overhead per node (synthetic 100-node workflow, inline executor).

    python scripts/bench_workflow.py [--nodes 100] [--layers 10]

Prints the result on stderr and one JSON line on stdout; see etl_framework/engine/bench.py."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from typing import Any

from etl_framework.engine.bench import main, run_bench


def register(registry: Any) -> None:
    """`scripts/bench workflow`: engine overhead per node (target < 50 ms)."""
    registry.add("workflow", lambda ctx: run_bench(), "workflow engine overhead per node (100 nodes, inline)")


if __name__ == "__main__":
    sys.exit(main())
