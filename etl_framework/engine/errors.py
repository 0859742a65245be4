"""Turning Spark's and Delta's exceptions into `JobFailed` messages a data engineer can act on (SPEC §10).

Spark is lazy: a malformed input row is found while the write stage runs the plan. The message still names the
stage that owns the cause (`extract` for input problems), the source and the file, and says what to do. Unknown
errors keep the first line of Spark's message (the error class), never a Java stack trace.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from etl_framework.errors import JobFailed

if TYPE_CHECKING:
    from etl_framework.engine.job import JobRunState

FILE_RE = re.compile(r"((?:file|s3a?|hdfs):/[^\s,'\"\]\)]+)")


def error_text(e: BaseException) -> str:
    """The whole message, JVM cause chain included (py4j errors keep it in `java_exception`)."""
    parts = [str(e)]
    java = getattr(e, "java_exception", None)
    if java is not None:
        try:
            cause = java
            for _ in range(10):
                parts.append(str(cause.toString()))
                cause = cause.getCause()
                if cause is None:
                    break
        except Exception:  # noqa: BLE001, S110 - the Python-side message is enough
            pass
    return "\n".join(parts)


DETERMINISTIC = (
    # the same input and code fail the same way on every attempt: retrying only delays the error
    "AnalysisException", "ParseException", "UNRESOLVED_COLUMN", "UNRESOLVED_ROUTINE", "PARSE_SYNTAX_ERROR",
    "TABLE_OR_VIEW_NOT_FOUND", "FIELD_NOT_FOUND", "DATATYPE_MISMATCH", "CAST_INVALID_INPUT", "CAST_WITHOUT_SUGGESTION",
    "MALFORMED_RECORD_IN_PARSING", "Malformed records are detected", "Malformed CSV record", "Malformed JSON",
    "INCONSISTENT_BEHAVIOR_CROSS_VERSION", "CANNOT_PARSE_TIMESTAMP", "DateTimeParseException",
    "NumberFormatException", "CSV header does not conform", "Number of column in CSV header",
    "PARQUET_COLUMN_DATA_TYPE_MISMATCH", "SchemaColumnConvertNotSupportedException", "DELTA_FAILED_TO_MERGE_FIELDS",
    "DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_MERGE", "DELTA_METADATA_MISMATCH", "DIVIDE_BY_ZERO",
    "ARITHMETIC_OVERFLOW", "PythonException",
)


def deterministic(e: BaseException, text: str) -> bool:
    """Would a retry fail the same way? (analysis, parse and cast errors, missing columns or tables)"""
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {"AnalysisException", "ParseException", "IllegalArgumentException"}) or any(
        d in text for d in DETERMINISTIC)


def first_line(text: str, limit: int | None = None) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("An error occurred while calling", "at ", "JVM stacktrace")):
            line = re.sub(r"^(py4j\.protocol\.)?Py4JJavaError:\s*", "", line)
            line = re.sub(r"^(org\.apache\.spark\.|java\.[a-z.]+)\S*(Exception|Error):\s*", "", line)
            return line if limit is None or len(line) <= limit else line[:limit] + "..."
    return text if limit is None else text[:limit]


def _source_of(state: JobRunState | None, path: str | None) -> str | None:
    if state is None or not path:
        return None
    clean = path.replace("file://", "").replace("file:", "")
    for name, src in state.config.sources.items():
        sp = (src.path or "").replace("file://", "").rstrip("/")
        if sp and clean.startswith(sp):
            return name
    for name, files in state.input_files.items():
        if any(clean.endswith(f.replace("file://", "").replace("file:", "")) for f in files):
            return name
    return None


def explain(e: BaseException, state: JobRunState | None, stage: str, source: str | None = None) -> JobFailed:
    """A `JobFailed` for any exception raised while running a stage: an actionable message (whole, never cut:
    the terminal shortens), the stage that owns the cause, the full original text with its Java causes as
    `detail`, and whether a retry could help."""
    if isinstance(e, JobFailed):
        return e
    text = error_text(e)
    failure = _explain(e, text, state, stage, source)
    failure.detail = text
    failure.retryable = not deterministic(e, text)
    return failure


def _explain(e: BaseException, text: str, state: JobRunState | None, stage: str, source: str | None) -> JobFailed:
    job = state.job if state is not None else "?"
    file = None
    target = state.config.target.path.rstrip("/").replace("file://", "") if state is not None else None
    for m in FILE_RE.finditer(text):
        cand = m.group(1).rstrip(".")
        if _source_of(state, cand):
            file = cand
            break
        if file is None and not (target and target in cand):
            file = cand
    src = source or _source_of(state, file)
    what = f"source '{src}'" if src else "an input"
    at = f" (file {file})" if file else ""

    def has(*needles: str) -> bool:
        return any(n in text for n in needles)

    if has("PATH_NOT_FOUND", "Path does not exist"):
        return JobFailed(job, "extract", f"{what}: input path does not exist: {first_line(text)}",
                         "check the source's 'path' and the env config vars it uses, or create the data")
    if has("MALFORMED_RECORD_IN_PARSING", "Malformed records are detected", "Malformed CSV record",
           "Malformed JSON"):
        cause = re.search(r'(For input string: "[^"]{0,100}"|Cannot parse [^\n]{0,120})', text)
        row = f" ({cause.group(1)})" if cause else ""
        if state is not None and not source:
            from etl_framework.stages.extract import find_malformed

            found = find_malformed(state)
            if found:
                src, file, raw = found
                what, at = f"source '{src}'", f" in file {file}"
                row = f": {raw[:2000]!r}" + row
        return JobFailed(job, "extract", f"{what} has a malformed row{at}{row}; it does not parse with the "
                         "declared schema (a value that does not convert to its column type, or a wrong number of "
                         "fields)", f"fix the row, or set `bad_records: quarantine` (or drop) on {what} to set "
                         "such rows aside; the target was not changed")
    if has("INCONSISTENT_BEHAVIOR_CROSS_VERSION", "PARSE_DATETIME_BY_NEW_PARSER"):
        return JobFailed(job, "extract", f"{what}: a date or timestamp does not parse{at}: {first_line(text)}",
                         "give the source's `timestampFormat` / `dateFormat` options the pattern the files use; the "
                         "framework runs with spark.sql.legacy.timeParserPolicy=CORRECTED, under which such a value "
                         "is a malformed row (`bad_records`) — an env `spark:` block that sets the policy to "
                         "EXCEPTION brings this error back")
    if has("CSV header does not conform to the schema", "Number of column in CSV header is not equal"):
        detail = re.search(r"(Header(?: length)?: .*?)(?:\n|$)", text)
        return JobFailed(job, "extract", f"{what}: the CSV header does not match the declared schema{at}"
                         + (f": {detail.group(1).strip()}" if detail else ""),
                         f"make the 'schema:' of {what} list the file's columns in the file's order, or fix the "
                         "file; the target was not changed")
    if has("is not a Parquet file", "CANNOT_READ_FILE_FOOTER", "Could not read footer",
           "expected magic number", "FAILED_READ_FILE", "Not in GZIP format", "Unexpected end of input stream",
           "Invalid Avro", "CORRUPTED"):
        return JobFailed(job, "extract", f"{what}: a file cannot be read{at}: {first_line(text)}",
                         "remove or replace the damaged file (or move it out of the source folder) and re-run; "
                         "the target was not changed")
    if has("Parquet column cannot be converted", "PARQUET_COLUMN_DATA_TYPE_MISMATCH",
           "SchemaColumnConvertNotSupportedException"):
        return JobFailed(job, "extract", f"{what}: a file's column type differs from the declared schema{at}",
                         f"declare the type the files have in the 'schema:' of {what} and add a `cast` step")
    if has("FileNotFoundException") and not has("No such file or directory: '/"):
        return JobFailed(job, "extract", f"{what}: a file disappeared while the run read it{at}",
                         "re-run the job once the input folder is stable")
    if has("CAST_INVALID_INPUT"):
        return JobFailed(job, stage, f"a value cannot be cast: {first_line(text)}",
                         "fix the data, or cast with try_cast(...) in a `with_columns`/`select` step to get NULL")
    if has("CAST_WITHOUT_SUGGESTION", "CAST_WITH_", "cannot cast"):
        return JobFailed(job, stage, f"a type cannot be cast: {first_line(text)}",
                         "cast to a type Spark can convert this column to (see the column's current type)")
    if has("PythonException"):
        py = re.search(r"(\w+(?:Error|Exception): .{0,300})", text.split("PythonException", 1)[1])
        return JobFailed(job, stage, "a Python function (UDF) raised "
                         + (py.group(1) if py else first_line(text)),
                         "fix the Python function; the target was not changed")
    if has("DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_MERGE", "multiple source rows matched"):
        return JobFailed(job, "write", "merge: several rows of the data have the same merge_keys",
                         "add a `dedupe: {keys: [<merge_keys>]}` step before the write; the target was not changed")
    if has("DELTA_FAILED_TO_MERGE_FIELDS", "A schema mismatch detected when writing to the Delta table",
           "DELTA_METADATA_MISMATCH", "_LEGACY_ERROR_TEMP_DELTA_0007"):
        return JobFailed(job, "write", "the data's schema differs from the target Delta table's schema",
                         "make the transform produce the table's columns and types, or write with "
                         "mode: overwrite and target option overwriteSchema: true to replace the table; "
                         "the target was not changed")
    if has("No space left on device", "ENOSPC"):
        return JobFailed(job, stage, "the disk is full", "free space (or point the target elsewhere) and re-run; "
                         "committed data is unchanged")
    if has("ParentNotDirectoryException", "Not a directory", "NotADirectoryException"):
        return JobFailed(job, "write", f"a path that must be a folder is a file: {first_line(text)}",
                         "remove or rename that file, or point target.path elsewhere")
    if has("Permission denied", "AccessDenied", "AccessDeniedException"):
        return JobFailed(job, stage, f"permission denied: {first_line(text)}",
                         "give the run's user access to that path")
    if has("UNRESOLVED_COLUMN", "UNRESOLVED_ROUTINE", "PARSE_SYNTAX_ERROR", "TABLE_OR_VIEW_NOT_FOUND"):
        return JobFailed(job, stage, first_line(text), "fix the expression in the job file")
    msg = first_line(text)
    return JobFailed(job, stage, f"{type(e).__name__}: {msg}" if msg else type(e).__name__,
                     "the whole Spark error with its Java cause: "
                     + (f"etl show {state.run_id} --log" if state is not None else "etl show RUN_ID --log"))


def describe(e: BaseException) -> str:
    """One readable line for any exception (used for run records)."""
    return first_line(error_text(e))


def exc_info(e: BaseException) -> dict[str, Any]:
    return {"type": type(e).__name__, "message": describe(e)}
