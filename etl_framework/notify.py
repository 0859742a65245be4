"""Alerting for job runs (SPEC §13): which events a finished run raises, and delivering them to the local targets
(`webhook:` JSON POST with retries and backoff, `command:` argv with the JSON on stdin). On AWS the same events reach
SNS through EventBridge rules made by `etl deploy` (deploy/alerts.py); a job run there only publishes its quality
event (`publish_quality_event`).

A notification never changes a run's result: a dead, refusing or timing-out target is a warning in the log and a
`notifications` detail (`delivered: false` with the reason) in the run record, nothing more. Secrets never leave:
every payload passes `redaction.redact_text`.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from etl_framework.config.model import Notifications

MERGED = ("events", "quarantine_above", "late_after_minutes", "webhook", "command", "sns", "timeout_seconds",
          "attempts")


def effective(*blocks: Notifications | None) -> Notifications | None:
    """Env, then workflow, then job: a later block's keys (those written) win over an earlier one's."""
    merged: dict[str, Any] = {}
    for b in blocks:
        if b is not None:
            merged.update({k: getattr(b, k) for k in b.model_fields_set})
    return Notifications(**merged) if merged else None


def _quarantined(metrics: dict[str, Any]) -> tuple[int, int]:
    q = metrics.get("quality") or {}
    return int(q.get("rows_quarantined") or 0), int(q.get("rows_in") or 0)


def events_of(n: Notifications, status: str, exit_code: int, error: str | None, duration_s: float,
              metrics: dict[str, Any]) -> list[str]:
    """The events a finished run raises under `n` (at most one end state, plus the threshold events)."""
    wanted = set(n.events_or_default)
    out: list[str] = []
    timed_out = status == "TIMEOUT" or (status != "SUCCEEDED" and "timed out" in (error or "").lower())
    if status == "SUCCEEDED":
        end = "succeeded"
    elif exit_code == 3:
        end = "quality_failed"
    elif timed_out:
        end = "timeout"
    else:
        end = "failed"
    if end in wanted:
        out.append(end)
    if n.quarantine_above is not None:
        rows, total = _quarantined(metrics)
        q = n.quarantine_above
        if isinstance(q, str):
            over = total > 0 and rows * 100.0 / total > float(q.strip().rstrip("%"))
        else:
            over = rows > q
        if over:
            out.append("quarantine_above")
    if n.late_after_minutes is not None and duration_s > n.late_after_minutes * 60:
        out.append("late")
    return out


def payload(event: str, *, job: str, run_id: str, env: str, status: str, error: str | None,
            metrics: dict[str, Any], duration_s: float, report: str | None) -> dict[str, Any]:
    q = metrics.get("quality") or {}
    quality = None
    if q:
        quality = {k: q.get(k) for k in ("rows_in", "rows_quarantined", "expectations", "passed", "failed",
                                         "reason") if k in q}
    return {"event": event, "job": job, "run_id": run_id, "env": env, "state": status, "error": error,
            "duration_s": round(duration_s, 3), "quality": quality, "report": report, "source": "etl_framework"}


def post_webhook(url: str, body: dict[str, Any], timeout: float, attempts: int,
                 backoff: float = 0.5) -> tuple[bool, str]:
    """POST the JSON; retried on a connection error, a timeout or a 5xx, with exponential backoff. Returns
    (delivered, what happened)."""
    import urllib.error
    import urllib.request

    from etl_framework.redaction import redact_text

    data = redact_text(json.dumps(body, default=str)).encode()
    why = ""
    for i in range(attempts):
        if i:
            time.sleep(backoff * 2 ** (i - 1))
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "etl_framework"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return True, f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            why = f"HTTP {e.code}"
            if e.code < 500:
                return False, why
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            why = "timed out" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else str(reason)
    return False, f"{why} after {attempts} attempt(s)"


def run_command(argv: list[str], body: dict[str, Any], timeout: float) -> tuple[bool, str]:
    from etl_framework.redaction import redact_text

    try:
        done = subprocess.run(argv, input=redact_text(json.dumps(body, default=str)), text=True, timeout=timeout,
                              capture_output=True, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return done.returncode == 0, f"exit {done.returncode}"


def notify_run(n: Notifications | None, *, job: str, run_id: str, env: str, status: str, exit_code: int,
               error: str | None, duration_s: float, metrics: dict[str, Any], report: str | None = None,
               log: Any = None, store: Any = None) -> list[dict[str, Any]]:
    """Deliver a finished run's events to the local targets; record what was sent. Never raises."""
    if n is None or not (n.webhook or n.command):
        return []
    records: list[dict[str, Any]] = []
    try:
        for event in events_of(n, status, exit_code, error, duration_s, metrics):
            body = payload(event, job=job, run_id=run_id, env=env, status=status, error=error, metrics=metrics,
                           duration_s=duration_s, report=report)
            targets: list[tuple[str, Any]] = []
            if n.webhook:
                targets.append(("webhook", lambda b=body: post_webhook(n.webhook or "", b, n.timeout_seconds,
                                                                       n.attempts)))
            if n.command:
                targets.append(("command", lambda b=body: run_command(list(n.command or []), b,
                                                                      n.timeout_seconds * n.attempts)))
            for kind, send in targets:
                ok, what = send()
                records.append({"event": event, "target": kind, "delivered": ok, "result": what})
                if not ok and log is not None:
                    log.warning(f"notification {event} to the {kind} failed ({what}); the run's result stands")
        if records and store is not None:
            store.set_detail(run_id, "notifications", records)
    except Exception as e:  # noqa: BLE001 - alerting never changes a run's result
        if log is not None:
            log.warning(f"notifications failed: {e}")
    return records


def publish_quality_event(env_cfg: Any, job: str, run_id: str, env: str, metrics: dict[str, Any], ok: bool,
                          notify: bool) -> None:
    """On AWS: the job's quality verdict as an EventBridge event (source etl_framework, detail type 'Quality Gate
    Result'); the rules `etl deploy` made route it to SNS. Best effort."""
    from etl_framework.aws import client
    from etl_framework.deploy.alerts import QUALITY_DETAIL_TYPE, QUALITY_SOURCE

    q = metrics.get("quality") or {}
    detail = {"job": job, "env": env, "run_id": run_id, "state": "PASSED" if ok else "FAILED", "notify": notify,
              "summary": q.get("reason") or "", "rows_in": q.get("rows_in"),
              "rows_quarantined": q.get("rows_quarantined")}
    client("events", env_cfg.aws.region, env_cfg.aws.endpoint_url).put_events(Entries=[{
        "Source": QUALITY_SOURCE, "DetailType": QUALITY_DETAIL_TYPE, "Detail": json.dumps(detail, default=str)}])
