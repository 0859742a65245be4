"""Secrets are never written down (SPEC §4.2, §13): the one place that knows every secret value this process has
resolved, and `redact_text` that every writer and printer passes text through.

A value is registered when `${secret:NAME}` is resolved (config.interpolate.resolve_secrets, `ctx.secret`). From
then on it is replaced by `***` in: run and workflow records (the SQLite connection of state/db.py redacts every
string it binds; the engines redact what they hand to any store), the HTML report, progress and log lines
(etl_framework.log), every Python `logging` record of the process (a log record factory, so user `python:` steps
are covered whatever handler prints them), stdout/stderr of the CLI and of the job entry script (`redacted_output`),
and the subprocess executor's child output (piped through `copy_redacted`). The escaped spellings a value takes in
JSON, Python reprs and HTML are registered with it. Values shorter than `MIN_LENGTH` are not registered: replacing
`1` or `ab` everywhere would garble every number and word printed while hiding next to nothing.
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

MASK = "***"
MIN_LENGTH = 4
SECRET_REF = re.compile(r"\$\{secret:([A-Za-z0-9_./+=@-]+)\}")

_LOCK = threading.Lock()
_VALUES: set[str] = set()
_PATTERN: re.Pattern[str] | None = None


def register(value: Any) -> None:
    """Remember a resolved secret value (and its escaped spellings) so that `redact_text` hides it from now on."""
    global _PATTERN
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        return
    forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1], html.escape(value), html.escape(value, quote=False)}
    forms |= {f.strip() for f in value.splitlines()}  # a multi-line value's lines
    forms = {f for f in forms if len(f) >= MIN_LENGTH}
    with _LOCK:
        if forms <= _VALUES:
            return
        _VALUES.update(forms)
        _PATTERN = re.compile("|".join(re.escape(v) for v in sorted(_VALUES, key=len, reverse=True)))


def known() -> bool:
    """Has this process resolved any secret? (Writers skip the work when not.)"""
    return _PATTERN is not None


def redact_text(text: str) -> str:
    """`text` with every registered secret value replaced by `***`."""
    pattern = _PATTERN
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def protect_spark(spark: Any) -> None:
    """Spark's own redaction of plans, the SQL UI and job descriptions (`spark.sql.redaction.string.regex`, a
    session conf) learns the secret values resolved so far: call it after resolving options for a Spark read or
    write."""
    if _PATTERN is None or spark is None:
        return
    with _LOCK:
        values = sorted(_VALUES, key=len, reverse=True)
    regex = "|".join("\\Q" + v.replace("\\E", "\\E\\\\E\\Q") + "\\E" for v in values)  # Java literal quoting
    try:
        spark.conf.set("spark.sql.redaction.string.regex", regex)
    except Exception:  # noqa: BLE001, S110 - a session without SQL conf (a test fake) has no plans to redact
        pass


# ------------------------------------------------------------------------------------------ sensitive keys

# A key names a credential when its last word is one of these (`db_password`, `apiToken`), or its last two words
# are one of the pairs (`api_key`, `aws_secret_access_key`). Whole words only: `token_count`, `passenger_min`,
# `password_file` and a merge `key` are ordinary params and keep their values.
_SENSITIVE_LAST = {"password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "credential",
                   "credentials", "apikey", "secretkey", "privatekey"}
_SENSITIVE_PAIRS = {("api", "key"), ("access", "key"), ("secret", "key"), ("private", "key"), ("account", "key"),
                    ("signing", "key"), ("encryption", "key"), ("master", "key"), ("client", "key"), ("sas", "key")}
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def key_words(key: str) -> list[str]:
    """`awsSecretAccessKey` / `aws-secret_access.key` -> ['aws', 'secret', 'access', 'key']."""
    return [w.lower() for w in _WORD.findall(key)]


def is_sensitive_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    words = key_words(key)
    if not words:
        return False
    return words[-1] in _SENSITIVE_LAST or tuple(words[-2:]) in _SENSITIVE_PAIRS


def redact(value: Any) -> Any:
    """A copy safe to log or store: `${secret:...}` placeholders, every secret value resolved in this process,
    and values under keys that name a credential (`is_sensitive_key`) become `***`."""
    if isinstance(value, str):
        return redact_text(SECRET_REF.sub(MASK, value))
    if isinstance(value, dict):
        return {k: (MASK if is_sensitive_key(k) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    return value


# ---------------------------------------------------------------------------------------------- logging

_FACTORY_LOCK = threading.Lock()
_factory_installed = False


def install_logging() -> None:
    """Every `logging` record of this process is redacted when it is made: its message (args merged in), the
    exception's traceback text and the stack. Handlers added later (by Spark, by a user's step) are covered too.
    An uncaught exception prints its traceback redacted."""
    global _factory_installed
    with _FACTORY_LOCK:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _PATTERN is None:
                return record
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string is logging's problem, not ours
                return record
            record.msg, record.args = redact_text(message), None
            if record.exc_info and not record.exc_text:
                record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            if record.stack_info:
                record.stack_info = redact_text(record.stack_info)
            return record

        logging.setLogRecordFactory(factory)

        # an uncaught exception (ETL_DEBUG=1) is printed after the command's streams are restored: redact it too
        def excepthook(tp: type[BaseException], value: BaseException, tb: Any) -> None:
            import traceback

            (sys.stderr or sys.__stderr__).write(redact_text("".join(traceback.format_exception(tp, value, tb))))

        sys.excepthook = excepthook
        _factory_installed = True


# ---------------------------------------------------------------------------------------------- streams


class RedactingStream(io.TextIOBase):
    """A text stream that writes through to `target` with secrets replaced. Text is held until a line ends (or
    `flush`), so a value split over two `write` calls is still caught."""

    def __init__(self, target: IO[str]) -> None:
        super().__init__()
        self.target = target
        self._pending = ""
        self._lock = threading.RLock()

    # what click, rich and print look at
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.target, "errors", None)

    def isatty(self) -> bool:
        try:
            return bool(self.target.isatty())
        except (AttributeError, ValueError, OSError):
            return False

    def fileno(self) -> int:
        return self.target.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:  # type: ignore[override]
        if not isinstance(text, str):  # as a text stream does (click probes `write(b"")` to find binary streams)
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            if _PATTERN is None and not self._pending:
                self.target.write(text)
                return len(text)
            data = self._pending + text
            cut = data.rfind("\n") + 1
            self._pending = data[cut:]
            if cut:
                self.target.write(redact_text(data[:cut]))
            if len(self._pending) > 65536:  # no newline for a long time (a progress bar): let it out
                self.target.write(redact_text(self._pending))
                self._pending = ""
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self.target.write(redact_text(self._pending))
                self._pending = ""
            try:
                self.target.flush()
            except (AttributeError, ValueError, OSError):
                pass


@contextmanager
def redacted_output() -> Iterator[None]:
    """For the duration of a command: stdout, stderr and logging pass through redaction (nested uses are no-ops)."""
    install_logging()
    saved = sys.stdout, sys.stderr
    wrapped = []
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
            wrapped.append(name)
    try:
        yield
    finally:
        for name in wrapped:
            stream = getattr(sys, name)
            if isinstance(stream, RedactingStream):
                try:
                    stream.flush()
                except (ValueError, OSError):
                    pass
        if "stdout" in wrapped:
            sys.stdout = saved[0]
        if "stderr" in wrapped:
            sys.stderr = saved[1]


def copy_redacted(src: IO[bytes], dst: IO[bytes]) -> None:
    """Copy a child process's output line by line with this process's secrets hidden (runs until EOF)."""
    for line in iter(src.readline, b""):
        if _PATTERN is not None:
            line = redact_text(line.decode("utf-8", "replace")).encode("utf-8")
        dst.write(line)
        dst.flush()
