"""A job run's headline numbers (SPEC §13): rows read, written and quarantined, duration, bytes written and bookmark
lag, taken from the run's stage metrics. One definition for both places they go: CloudWatch (namespace
`etl_framework`, dimensions job and env; `publish`, on AWS) and `etl runs --metrics` (from the run records)."""

from __future__ import annotations

import time
from typing import Any

NAMESPACE = "etl_framework"
UNITS = {"rows_read": "Count", "rows_written": "Count", "rows_quarantined": "Count", "duration_s": "Seconds",
         "bytes_written": "Bytes", "bookmark_lag_s": "Seconds"}
CLOUDWATCH_NAMES = {"rows_read": "RowsRead", "rows_written": "RowsWritten", "rows_quarantined": "RowsQuarantined",
                    "duration_s": "Duration", "bytes_written": "BytesWritten", "bookmark_lag_s": "BookmarkLag"}


def _newest_mtime(bookmark: Any) -> float | None:
    """The newest file a files-bookmark covers ([size, mtime] entries under 'files')."""
    newest: float | None = None

    def walk(value: Any, in_files: bool) -> None:
        nonlocal newest
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, in_files or k == "files")
        elif in_files and isinstance(value, list) and len(value) == 2 and all(isinstance(x, int | float)
                                                                              for x in value):
            newest = max(newest or 0.0, float(value[1]))

    walk(bookmark, False)
    return newest


def run_numbers(stages: dict[str, dict[str, Any]], duration_s: float | None, bookmark: Any = None,
                ended_at: float | None = None) -> dict[str, float]:
    """The numbers of one run from its stage metrics (those a run did not produce are left out)."""
    ext, write, quality = stages.get("extract") or {}, stages.get("write") or {}, stages.get("quality") or {}
    out: dict[str, float] = {}
    if ext.get("rows_out") is not None:
        out["rows_read"] = ext["rows_out"]
    if write.get("rows_written") is not None:
        out["rows_written"] = write["rows_written"]
    quarantined = quality.get("rows_quarantined", write.get("quarantined_rows"))
    if quarantined is not None:
        out["rows_quarantined"] = quarantined
    if duration_s is not None:
        out["duration_s"] = round(float(duration_s), 3)
    if write.get("bytes_written") is not None:
        out["bytes_written"] = write["bytes_written"]
    newest = _newest_mtime(bookmark)
    if newest:
        out["bookmark_lag_s"] = round(max(0.0, (ended_at or time.time()) - newest), 3)
    return out


def from_record(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a stored run record (`etl runs --metrics`)."""
    stages: dict[str, dict[str, Any]] = {}
    for s in record.get("stages") or []:
        if isinstance(s.get("metrics"), dict):
            stages[s["stage"]] = s["metrics"]
    details = record.get("details") or {}
    bookmark = (details.get("bookmarks") or {}).get("after") if isinstance(details, dict) else None
    return run_numbers(stages, record.get("duration_s"), bookmark)


def publish(env_cfg: Any, job: str, env: str, numbers: dict[str, float]) -> None:
    """CloudWatch PutMetricData in the `etl_framework` namespace, dimensions job and env."""
    from etl_framework.aws import client

    dims = [{"Name": "job", "Value": job}, {"Name": "env", "Value": env}]
    data = [{"MetricName": CLOUDWATCH_NAMES[k], "Dimensions": dims, "Value": float(v), "Unit": UNITS[k]}
            for k, v in numbers.items()]
    if data:
        client("cloudwatch", env_cfg.aws.region, env_cfg.aws.endpoint_url).put_metric_data(
            Namespace=NAMESPACE, MetricData=data)


def on_aws(env_cfg: Any) -> bool:
    """An env whose state lives in DynamoDB runs on AWS (Glue, or against it): its runs publish metrics."""
    return getattr(getattr(env_cfg, "state", None), "backend", None) == "dynamodb"
