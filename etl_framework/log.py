"""Progress on stderr: which job and stage, rows, elapsed time — never on stdout, which `--json` keeps for itself.

A `JobLog` prints one line per event with the time since the run started. While a stage runs Spark work, a
heartbeat thread prints the Spark job's task progress every few seconds, so a long write never looks hung.
`ETL_QUIET=1` silences progress (errors still reach the CLI). Every line passes through
`etl_framework.redaction` first, so a secret a `python:` step logs is printed as `***`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from etl_framework.redaction import redact_text

HEARTBEAT_SECONDS = float(os.environ.get("ETL_HEARTBEAT_SECONDS", "5"))


def _console(stream: TextIO | None = None) -> Any:
    from rich.console import Console

    return Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def fmt_count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def fmt_bytes(n: Any) -> str:
    if not isinstance(n, int | float):
        return str(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class JobLog:
    """Progress of one job run on stderr."""

    def __init__(self, job: str, run_id: str, stream: TextIO | None = None, quiet: bool | None = None) -> None:
        self.job, self.run_id = job, run_id
        self.t0 = time.monotonic()
        self.quiet = bool(os.environ.get("ETL_QUIET")) if quiet is None else quiet
        self._console = None if self.quiet else _console(stream)
        self._lock = threading.Lock()
        self.file: Any = None  # the run's own log file (`etl show RUN_ID --log`): every line, never shortened

    def open_file(self, path: Any) -> None:
        """Also write the progress, quiet or not, and the full error to `path` (appended: a resume adds to it)."""
        from pathlib import Path

        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        except OSError:
            self.file = None

    def write_file(self, text: str) -> None:
        """Text for the log file only (a Spark error with its whole Java cause chain), redacted."""
        if self.file is not None:
            with self._lock:
                self.file.write(redact_text(text).rstrip("\n") + "\n")
                self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            with self._lock:
                self.file.close()
                self.file = None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _print(self, text: str, style: str | None = None) -> None:
        if self.file is not None:
            from rich.errors import MarkupError
            from rich.text import Text

            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            try:
                plain = Text.from_markup(text).plain
            except MarkupError:
                plain = text
            self.write_file(f"{stamp} {plain}")
        if self._console is None:
            return
        with self._lock:
            self._console.print(f"[dim]{fmt_duration(self.elapsed()):>7}[/dim] {redact_text(text)}",
                                style=style, markup=True)

    @staticmethod
    def _esc(text: str) -> str:
        from rich.markup import escape

        return escape(text)

    def info(self, message: str, stage: str | None = None) -> None:
        where = f"[bold]{self.job}[/bold]" + (f" {stage}" if stage else "")
        self._print(f"{where}: {self._esc(message)}")

    def warning(self, message: str, stage: str | None = None) -> None:
        where = f"[bold]{self.job}[/bold]" + (f" {stage}" if stage else "")
        self._print(f"{where}: [yellow]warning:[/yellow] {self._esc(message)}")

    def stage_start(self, stage: str) -> None:
        self._print(f"[bold]{self.job}[/bold] {stage} ...")

    def stage_end(self, stage: str, status: str, duration: float, summary: str = "") -> None:
        colour = {"SUCCEEDED": "green", "FAILED": "red", "SKIPPED": "dim", "STOPPED": "yellow"}.get(status, "default")
        text = f"[bold]{self.job}[/bold] {stage} [{colour}]{status.lower()}[/{colour}] in {fmt_duration(duration)}"
        if summary:
            text += f" ({self._esc(summary)})"
        self._print(text)

    @contextmanager
    def heartbeat(self, stage: str, spark: Any) -> Iterator[None]:
        """Print Spark task progress every HEARTBEAT_SECONDS while the block runs (only when it runs long)."""
        if self._console is None or spark is None or HEARTBEAT_SECONDS <= 0:
            yield
            return
        stop = threading.Event()
        started = time.monotonic()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_SECONDS):
                try:
                    tracker = spark.sparkContext.statusTracker()
                    done = total = 0
                    for sid in tracker.getActiveStageIds():
                        info = tracker.getStageInfo(sid)
                        if info:
                            done += info.numCompletedTasks
                            total += info.numTasks
                    tasks = f", Spark tasks {done}/{total}" if total else ""
                except Exception:  # noqa: BLE001 - progress must never break a run
                    tasks = ""
                self._print(f"[bold]{self.job}[/bold] {stage}: running for "
                            f"{fmt_duration(time.monotonic() - started)}{tasks}")

        thread = threading.Thread(target=beat, name=f"etl-heartbeat-{stage}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=1)


class _JobLogHandler(logging.Handler):
    def __init__(self, log: JobLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        msg = redact_text(record.getMessage())
        if record.exc_info:
            msg += "\n" + redact_text(logging.Formatter().formatException(record.exc_info))
        if record.levelno >= logging.WARNING:
            self.log.warning(msg, stage="python")
        else:
            self.log.info(msg, stage="python")


def python_logger(log: JobLog) -> logging.Logger:
    """A standard `logging.Logger` for python steps (`ctx.logger`) that prints through the job's progress."""
    logger = logging.getLogger(f"etl.job.{log.job}.{log.run_id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not any(isinstance(h, _JobLogHandler) for h in logger.handlers):
        logger.addHandler(_JobLogHandler(log))
    return logger
