"""Runtime errors a user sees: each names the job, the stage and what to do (SPEC §10)."""

from __future__ import annotations


class EtlError(Exception):
    """Base of every error the CLI turns into a message and an exit code (never a traceback)."""

    exit_code = 1


class UsageError(EtlError):
    """Bad command-line usage or a reference to something that does not exist (exit 2)."""

    exit_code = 2


class Stopped(EtlError):
    """A run stopped by a signal or `etl stop`, recorded STOPPED (exit 130, as a shell reports Ctrl-C)."""

    exit_code = 130


class JobFailed(EtlError):
    """A job run failed in a stage."""

    exit_code = 1

    def __init__(self, job: str, stage: str, message: str, hint: str = "", run_id: str | None = None, *,
                 detail: str = "", retryable: bool = True) -> None:
        self.job, self.stage, self.message, self.hint, self.run_id = job, stage, message, hint, run_id
        self.detail = detail  # the whole original error (Spark's message and its Java causes), for the record and log
        self.retryable = retryable  # False: the same input fails the same way (analysis, parse, cast errors)
        super().__init__(self.render())

    def render(self) -> str:
        text = f"job {self.job}, stage {self.stage}: {self.message}"
        if self.hint:
            text += f"\n  what to do: {self.hint}"
        return text


class QualityGateFailed(JobFailed):
    """A `fail` expectation failed; nothing was written (exit 3)."""

    exit_code = 3


def shorten(text: str, limit: int = 600) -> str:
    """A long error for the terminal only (records, `--json` and the run log keep it whole)."""
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + " …"
