"""The row rules Spark checks alone, with Great Expectations' own semantics, so a gate made only of them never
imports GX.

Why: importing great_expectations costs ~4 s of CPU in every process. On the small data people iterate with, that
was the framework's largest cost (issue 19): on 2 cores it competes with the JVM's start-up and holds the GIL
while every py4j call of the run waits for it. The common rules are one comparison each, so for them the gate
builds the same predicate GX builds (`column_condition_partial`: `col IS NOT NULL AND NOT expected`, or without
the null filter for the null rules) and decides success and the result dict the way GX's `_validate` and
`_format_map_output` do (BASIC result format). A test compares every rule here, with its options, to GX validating
the same data itself.

Anything else — another expectation, `row_condition`, a keyword or a value of a type this module does not model —
goes to GX, which then also reports a bad argument in its own words. `ETL_QUALITY_ENGINE=gx` sends every rule there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import Column

    from etl_framework.config.model import Expectation

ENGINE_ENV = "ETL_QUALITY_ENGINE"  # "gx": every rule through Great Expectations (tests compare the two)
PARTIAL_UNEXPECTED_COUNT = 20  # GX's BASIC result format keeps this many unexpected values

Condition = Callable[["Column", dict[str, Any]], "Column"]


@dataclass(frozen=True)
class Rule:
    """One GX row expectation: its keywords, the condition a valid value meets, and whether nulls are its
    subject (the null rules) or left out of its domain (every other rule)."""

    keywords: frozenset[str]
    expected: Condition | None  # None: a table-level rule (its metric is the row count)
    nulls_are_subject: bool = False
    window: bool = False  # the condition needs a window over the whole data


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _between(col: Column, kw: dict[str, Any]) -> Column:
    """GX's `ColumnValuesBetween._spark`, bound by bound."""
    from pyspark.sql import functions as F

    lo, hi = kw.get("min_value"), kw.get("max_value")
    parts = []
    if lo is not None:
        parts.append(col > F.lit(lo) if kw.get("strict_min") else col >= F.lit(lo))
    if hi is not None:
        parts.append(col < F.lit(hi) if kw.get("strict_max") else col <= F.lit(hi))
    return parts[0] if len(parts) == 1 else parts[0] & parts[1]


def _unique(col: Column, kw: dict[str, Any]) -> Column:
    """GX's `ColumnValuesUnique._spark` (a window condition over the column's non-null rows: the null rows form
    their own partition, so counting over all rows gives the same answer)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return F.count(F.lit(1)).over(Window.partitionBy(col)) <= 1


BOUNDS = frozenset({"min_value", "max_value", "strict_min", "strict_max"})
RULES: dict[str, Rule] = {
    "expect_column_values_to_not_be_null": Rule(frozenset(), lambda c, kw: c.isNotNull(), nulls_are_subject=True),
    "expect_column_values_to_be_between": Rule(BOUNDS, _between),
    "expect_column_values_to_be_in_set": Rule(frozenset({"value_set"}), lambda c, kw: c.isin(kw["value_set"])),
    "expect_column_values_to_not_be_in_set": Rule(frozenset({"value_set"}), lambda c, kw: ~c.isin(kw["value_set"])),
    "expect_column_values_to_match_regex": Rule(frozenset({"regex"}), lambda c, kw: c.rlike(kw["regex"])),
    "expect_column_values_to_not_match_regex": Rule(frozenset({"regex"}), lambda c, kw: ~c.rlike(kw["regex"])),
    "expect_column_values_to_be_unique": Rule(frozenset(), _unique, window=True),
    "expect_table_row_count_to_be_between": Rule(BOUNDS, None),
}


def is_table(e: Expectation) -> bool:
    return RULES[e.expect].expected is None


def _bounds(kw: dict[str, Any]) -> bool:
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if not all(v is None or _number(v) for v in (lo, hi)) or (lo is None and hi is None):
        return False
    if lo is not None and hi is not None and lo > hi:
        return False
    return all(isinstance(kw.get(k, False), bool) for k in ("strict_min", "strict_max"))


def _valid(expect: str, kw: dict[str, Any]) -> bool:
    """Whether the keywords are exactly of the shapes this module models (else GX validates and reports them)."""
    if RULES[expect].expected is None:
        return "column" not in kw and "mostly" not in kw and _bounds(kw)
    col = kw.get("column")
    if not isinstance(col, str) or not col or "." in col or "`" in col:
        return False
    mostly = kw.get("mostly", 1.0)
    if not _number(mostly) or not 0 <= mostly <= 1:
        return False
    if expect == "expect_column_values_to_be_between":
        return _bounds(kw)
    if "value_set" in RULES[expect].keywords:
        vs = kw.get("value_set")
        return (isinstance(vs, list) and bool(vs) and
                (all(isinstance(v, str) for v in vs) or all(_number(v) for v in vs)))
    if "regex" in RULES[expect].keywords:
        return isinstance(kw.get("regex"), str) and bool(kw["regex"])
    return True


def covers(expectations: list[Expectation]) -> bool:
    """Whether every rule can be checked without GX (then GX is never imported for this gate)."""
    if os.environ.get(ENGINE_ENV, "").lower() == "gx":
        return False
    for e in expectations:
        rule = RULES.get(e.expect)
        kw = e.kwargs
        if rule is None or not set(kw) <= {"column", "mostly", *rule.keywords} or not _valid(e.expect, kw):
            return False
    return True


def unexpected(e: Expectation) -> Column:
    """The rows that break the rule, as GX's condition metric states them (nulls out of the domain except for the
    null rules)."""
    from pyspark.sql import functions as F

    rule = RULES[e.expect]
    assert rule.expected is not None, "a table-level rule has no row predicate"
    col = F.col(e.kwargs["column"])
    expected = rule.expected(col, e.kwargs)
    return ~expected if rule.nulls_are_subject else col.isNotNull() & ~expected


def nulls(e: Expectation) -> Column | None:
    """The column's nulls, which GX counts as `missing` for every rule but the null rules (None for those)."""
    from pyspark.sql import functions as F

    return None if RULES[e.expect].nulls_are_subject else F.col(e.kwargs["column"]).isNull()


@dataclass
class Result:
    """What the gate reads of a GX ExpectationValidationResult: `success` and the `result` dict."""

    success: bool
    result: dict[str, Any]
    exception_info: dict[str, Any] | None = None


def validate(e: Expectation, rows: int, unexpected_count: int, null_count: int | None,
             sample: list[Any] | None) -> Result:
    """GX's verdict and BASIC result for a row rule from its counts (`_validate` and `_format_map_output`).
    `null_count` is None for the null rules, whose domain is every row."""
    mostly = float(e.kwargs.get("mostly", 1.0))
    if null_count is None:  # ExpectColumnValuesToNotBeNull._validate
        success = rows == 0 or (rows - unexpected_count) / rows >= mostly
        nonnull = None
    else:  # ColumnMapExpectation._validate
        nonnull = rows - null_count
        success = rows == 0 or nonnull == 0 or (float(nonnull) - float(unexpected_count)) / float(nonnull) >= mostly
    missing = None if nonnull is None else rows - nonnull
    pct_total = pct_nonmissing = missing_pct = None
    if rows > 0:
        pct_total = unexpected_count / rows * 100
        if missing is not None:
            missing_pct = missing / rows * 100
            pct_nonmissing = unexpected_count / nonnull * 100 if nonnull else None
        else:
            pct_nonmissing = pct_total
    result: dict[str, Any] = {"element_count": rows, "unexpected_count": unexpected_count,
                              "unexpected_percent": pct_nonmissing}
    if sample is not None:
        result["partial_unexpected_list"] = sample[:PARTIAL_UNEXPECTED_COUNT]
    if missing is not None:
        result.update({"missing_count": missing, "missing_percent": missing_pct,
                       "unexpected_percent_total": pct_total, "unexpected_percent_nonmissing": pct_nonmissing})
    return Result(bool(success), result)


def validate_table(e: Expectation, rows: int) -> Result:
    """GX's `_validate_metric_value_between` for the row count."""
    kw = e.kwargs
    lo, hi = kw.get("min_value"), kw.get("max_value")
    above = lo is None or (rows > lo if kw.get("strict_min") else rows >= lo)
    below = hi is None or (rows < hi if kw.get("strict_max") else rows <= hi)
    return Result(bool(above and below), {"observed_value": rows})
