"""`etl preview`: the extract and transform stages of a job on a sample, its rows and the quality verdict —
with nothing written. No crawl (it writes the catalog), no quality staging, no write, no register; no run record,
no lock, no bookmark: the target, the state and the catalog stay byte for byte as they were.

Each source is cut to `sample` rows right after it is read (before the transform), so a preview costs one small
Spark pass whatever the input's size; an incremental source is read as on an empty bookmark (every file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("extract", "transform")


@dataclass
class PreviewResult:
    job: str
    stage: str
    columns: list[str]
    rows: list[tuple[Any, ...]]
    sample: int
    quality: dict[str, Any] | None = None  # summary, failed and warned rules (transform stage with quality:)
    bad_records: dict[str, int] = field(default_factory=dict)  # malformed rows in the sample, per source


def preview_job(job_file: Path, project: Any, env: str = "local", *, limit: int = 20, sample: int = 1000,
                stage: str = "transform", params: dict[str, Any] | None = None, spark: Any = None) -> PreviewResult:
    """Run extract (and transform) on a sample of every source; the rows and the quality verdict, nothing
    written. Raises JobFailed (stage extract/transform/quality) as a run would; a failing `fail` rule is a verdict
    here, not an error."""
    from etl_framework.config.load import load_job
    from etl_framework.engine.context import JobContext
    from etl_framework.engine.job import JobRunState, new_run_id
    from etl_framework.log import JobLog, python_logger
    from etl_framework.stages.extract import run_extract
    from etl_framework.stages.transform import run_transform

    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}")
    loaded = load_job(job_file, project, env, params=params)
    cfg = loaded.config
    env_config = project.env_config(env)
    run_id = f"preview-{new_run_id()}"
    log = JobLog(cfg.job, run_id, quiet=True)
    if spark is None:
        from etl_framework.runtime.spark import get_spark
        from etl_framework.stages.jdbc import source_jars

        spark = get_spark(project.root, env_config.spark or None, extra_jars=source_jars(cfg, project.root))
    session = spark.newSession()
    ctx = JobContext(job=cfg.job, run_id=run_id, env=env, params=loaded.params, spark=session,
                     logger=python_logger(log), project_root=project.root, job_path=loaded.path)
    state = JobRunState(config=cfg, run_id=run_id, spark=session, log=log, ctx=ctx, env=env, env_config=env_config,
                        project_root=project.root, job_path=loaded.path, params=loaded.params)
    for name in ("extract", "transform", "quality"):
        state.metrics[name] = {}
    state.stage = "extract"
    run_extract(state)
    for name, df in list(state.views.items()):
        cut = df.limit(sample)
        cut.createOrReplaceTempView(name)
        state.views[name] = cut
    # collected, not counted: a count prunes the columns, and Spark's CSV reader then flags no row as malformed
    bad = {name: len(df.limit(sample).collect()) for name, df in state.bad_records.items()}
    if stage == "extract":
        df = state.views[next(iter(cfg.sources))]
    else:
        state.stage = "transform"
        run_transform(state)
        df = state.df
    out = df.limit(limit).collect()
    result = PreviewResult(cfg.job, stage, list(df.columns), [tuple(r) for r in out], sample, bad_records=bad)
    if stage == "transform" and cfg.quality:
        from etl_framework.quality.gate import evaluate_gate

        state.stage = "quality"
        gate = evaluate_gate(df, list(cfg.quality), cfg.job, run_id, persist=False)
        result.quality = {"ok": gate.ok, "summary": gate.summary(), "rows": gate.row_count,
                          "quarantined_rows": gate.quarantined_rows,
                          "failed": [r["rule"] for r in gate.failed], "warned": [r["rule"] for r in gate.warned]}
    return result
