"""`etl preview JOB_FILE [--limit N] [--sample N] [--stage extract|transform]`: a job's rows on a sample and its
quality verdict, with nothing written (engine/preview.py)."""

from __future__ import annotations

from pathlib import Path

import click

from etl_framework.cli.common import err, print_json


def register(group: click.Group) -> None:
    @group.command("preview")
    @click.argument("job_file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="rows shown")
    @click.option("--sample", type=click.IntRange(min=1), default=1000, show_default=True,
                  help="rows read from each source before the transform")
    @click.option("--stage", type=click.Choice(["extract", "transform"]), default="transform", show_default=True,
                  help="show the first source as extracted, or the transform's output")
    @click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="override a job param (repeatable)")
    @click.option("--json", "as_json", is_flag=True, help="columns, rows and the quality verdict as JSON on stdout")
    @click.pass_context
    def preview(ctx: click.Context, job_file: Path, limit: int, sample: int, stage: str, params: tuple[str, ...],
                as_json: bool) -> None:
        """Run extract and transform on a sample; print rows and the quality verdict. Writes nothing."""
        from etl_framework.cli.query import _jsonable, print_table
        from etl_framework.cli.run import parse_params
        from etl_framework.config.project import project_for
        from etl_framework.engine.preview import preview_job
        from etl_framework.errors import UsageError

        if not job_file.exists():
            raise UsageError(f"job file {job_file} does not exist\n  what to do: give the path of a job YAML file")
        project = project_for(job_file, ctx.obj.get("project_dir"))
        res = preview_job(job_file, project, ctx.obj.get("env", "local"), limit=limit, sample=sample, stage=stage,
                          params=parse_params(params) or None)
        if as_json:
            print_json({"job": res.job, "stage": res.stage, "sample": res.sample, "columns": res.columns,
                        "rows": [{k: _jsonable(v) for k, v in zip(res.columns, r, strict=True)} for r in res.rows],
                        "quality": res.quality, "bad_records": res.bad_records})
            return
        print_table(res.columns, res.rows)
        err(f"({len(res.rows)} row(s) of the {res.stage} output, from up to {res.sample:,} rows per source; "
            "nothing was written)")
        for name, n in res.bad_records.items():
            if n:
                err(f"source {name}: {n} malformed row(s) in the sample (bad_records: quarantine sets them aside)")
        if res.quality is not None:
            verdict = "PASS" if res.quality["ok"] else "FAIL (a run would write nothing): " + ", ".join(
                res.quality["failed"])
            err(f"{res.quality['summary']}\nquality verdict on the sample: {verdict}")
