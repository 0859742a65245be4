#!/usr/bin/env python
"""The single job entry (SPEC §8): `spark-submit` locally, the job script on AWS Glue.

    spark-submit --properties-file spark-conf/spark-defaults.conf scripts/etl_job.py \\
        --JOB_NAME trips_clean --job_config jobs/trips_clean.yaml --env local [--min_distance 0.1]

Arguments are read the Glue way (`--JOB_NAME`, `--job_config`, `--env`, `--WORKFLOW_NAME`, `--WORKFLOW_RUN_ID`,
job params as `--k v`). Inside Glue (`awsglue` importable and a `--JOB_RUN_ID` given) it runs with GlueContext and
Job.init/commit; anywhere else with plain Spark. `awsglue` is never imported unless it is there.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running from a source checkout without the package installed: make `etl_framework` importable.
_ROOT = Path(__file__).resolve().parents[1]
if (_ROOT / "etl_framework").is_dir() and str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))


def main(argv: list[str] | None = None) -> int:
    # everything this process prints (and logs) passes through redaction: a secret the job resolves is `***`
    from etl_framework.redaction import redacted_output

    with redacted_output():
        return _main(argv)


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    try:
        from etl_framework.runtime.glue import in_glue
    except ImportError:
        def in_glue(_argv: list[str]) -> bool:
            return False
    if in_glue(argv):
        from etl_framework.runtime.glue import run_in_glue

        return run_in_glue(argv)
    from etl_framework.runtime.local import run_local

    return run_local(argv)


if __name__ == "__main__":
    sys.exit(main())
