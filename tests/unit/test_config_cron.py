"""Glue cron syntax: the AWS documentation's examples validate and fire when the docs say; invalid expressions
are refused with a message naming the field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from etl_framework.config.cron import CronError, next_fire, parse, validate

T0 = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)  # a Thursday


def d(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# (expression, what the AWS docs say it means, the first fire after T0)
AWS_EXAMPLES = [
    ("cron(15 12 * * ? *)", "12:15 UTC every day", d(2026, 1, 1, 12, 15)),
    ("cron(0 18 ? * MON-FRI *)", "18:00 Monday through Friday", d(2026, 1, 1, 18, 0)),
    ("cron(0 8 1 * ? *)", "08:00 on the first day of the month", d(2026, 1, 1, 8, 0)),
    ("cron(0/15 * * * ? *)", "every 15 minutes", d(2026, 1, 1, 0, 15)),
    ("cron(0/10 * ? * MON-FRI *)", "every 10 minutes Monday through Friday", d(2026, 1, 1, 0, 10)),
    ("cron(0/5 8-17 ? * MON-FRI *)", "every 5 minutes Mon-Fri 08:00-17:55", d(2026, 1, 1, 8, 0)),
    ("cron(0 10 * * ? *)", "10:00 every day", d(2026, 1, 1, 10, 0)),
    ("cron(15 10 ? * 6L 2027-2029)", "10:15 on the last Friday of each month, 2027-2029", d(2027, 1, 29, 10, 15)),
    ("cron(0 9 ? * 2#1 *)", "09:00 on the first Monday of the month", d(2026, 1, 5, 9, 0)),
    ("cron(0 2 L * ? *)", "02:00 on the last day of the month", d(2026, 1, 31, 2, 0)),
    ("cron(0 2 LW * ? *)", "02:00 on the last weekday of the month", d(2026, 1, 30, 2, 0)),
    ("cron(0 2 3W * ? *)", "02:00 on the weekday nearest the 3rd (Sat 3 Jan -> Fri 2 Jan)", d(2026, 1, 2, 2, 0)),
    ("cron(0 2 1W * ? *)", "nearest weekday to the 1st, not leaving the month", d(2026, 1, 1, 2, 0)),
    ("cron(30 6 ? JAN,JUL SUN *)", "06:30 on Sundays in January and July", d(2026, 1, 4, 6, 30)),
    ("cron(0 0 29 FEB ? *)", "midnight on 29 February (leap years)", d(2028, 2, 29, 0, 0)),
    ("cron(0 12 ? * 1 *)", "noon on Sundays (1 = SUN)", d(2026, 1, 4, 12, 0)),
    ("cron(0 12 ? * 7 *)", "noon on Saturdays (7 = SAT)", d(2026, 1, 3, 12, 0)),
    ("cron(0 0 1 1 ? 2025)", "a year in the past: never again", None),
    ("cron(0/30 20-2 ? * MON-FRI *)", "every 30 minutes Mon-Fri, 20:00 to 02:30 (a range wrapping midnight)",
     d(2026, 1, 1, 0, 30)),
    ("cron(0 0 ? * FRI-MON *)", "midnight Friday through Monday (wrapping the week)", d(2026, 1, 2, 0, 0)),
    ("cron(0 0 1 NOV-FEB ? *)", "the first of November through February", d(2026, 2, 1, 0, 0)),
]


@pytest.mark.parametrize("expr,meaning,first", AWS_EXAMPLES, ids=[e[0] for e in AWS_EXAMPLES])
def test_aws_examples(expr: str, meaning: str, first: datetime | None) -> None:
    assert validate(expr) is None, meaning
    assert next_fire(expr, T0) == first, meaning


def test_next_fire_is_strictly_after_and_utc() -> None:
    assert next_fire("cron(0 2 * * ? *)", d(2026, 3, 1, 2, 0)) == d(2026, 3, 2, 2, 0)
    naive = datetime(2026, 3, 1, 1, 59)
    assert next_fire("cron(0 2 * * ? *)", naive) == d(2026, 3, 1, 2, 0)
    seq = [T0]
    for _ in range(3):
        seq.append(next_fire("cron(0/20 * * * ? *)", seq[-1]))
    assert [t.minute for t in seq[1:]] == [20, 40, 0]


INVALID = [
    ("cron(0 2 * * * *)", "exactly one of day-of-month and day-of-week"),
    ("cron(0 2 ? * ? *)", "exactly one of day-of-month and day-of-week"),
    ("cron(0 2 * * ?)", "six fields"),
    ("cron(0 2 * * ? * *)", "six fields"),
    ("0 2 * * ? *", "cron(Minutes"),
    ("rate(5 minutes)", "not rate"),
    ("cron(60 2 * * ? *)", "minutes: 60 is out of range 0-59"),
    ("cron(0 24 * * ? *)", "hours: 24 is out of range 0-23"),
    ("cron(0 2 0 * ? *)", "day-of-month: 0 is out of range 1-31"),
    ("cron(0 2 * 13 ? *)", "month: 13 is out of range 1-12"),
    ("cron(0 2 ? * 0 *)", "day-of-week: 0 is out of range 1-7"),
    ("cron(0 2 ? * FUN *)", "'FUN' is not a number"),
    ("cron(0 2 * JANUARY ? *)", "month"),
    ("cron(0 2 ? * 2#6 *)", "#1 to #5"),
    ("cron(0 2 * * ? 1969)", "year: 1969 is out of range"),
    ("cron(0/0 * * * ? *)", "step '/0'"),
    ("cron(0 ? * * ? *)", "'?' is only allowed"),
    ("cron(0 2 5,L * ? *)", "stand alone"),
    ("cron(0 2 30 2 ? *)", "can never fire"),
    ("cron(0 0 * * ? 2030-2027)", "goes backwards"),
]


@pytest.mark.parametrize("expr,why", INVALID, ids=[e[0] for e in INVALID])
def test_invalid(expr: str, why: str) -> None:
    msg = validate(expr)
    assert msg is not None and why in msg, msg
    with pytest.raises(CronError):
        parse(expr)


def test_error_offset_points_at_the_bad_field() -> None:
    expr = "cron(0 25 * * ? *)"
    with pytest.raises(CronError) as e:
        parse(expr)
    assert expr[e.value.offset:].startswith("25")
