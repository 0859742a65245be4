"""Glue cron as the scheduler fires it: the examples table of AWS Glue's "Time-based schedules for jobs and
crawlers" page (plus its wildcard examples), checked tick by tick from a fixed start, through config/cron.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from etl_framework.config.cron import next_fire
from etl_framework.scheduler.schedules import due_ticks

START = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)  # a Thursday


def ticks(expr: str, n: int, start: datetime = START) -> list[str]:
    out, t = [], start
    for _ in range(n):
        nxt = next_fire(expr, t)
        assert nxt is not None
        t = nxt
        out.append(t.strftime("%a %m-%d %H:%M"))
    return out


# (expression, meaning in AWS's table, the first fire times after Thu 2026-01-01 00:00 UTC)
AWS_EXAMPLES = [
    ("cron(0 10 * * ? *)", "10:00 am every day", ["Thu 01-01 10:00", "Fri 01-02 10:00", "Sat 01-03 10:00"]),
    ("cron(15 12 * * ? *)", "12:15 pm every day", ["Thu 01-01 12:15", "Fri 01-02 12:15", "Sat 01-03 12:15"]),
    ("cron(0 18 ? * MON-FRI *)", "6:00 pm Monday through Friday",
     ["Thu 01-01 18:00", "Fri 01-02 18:00", "Mon 01-05 18:00"]),
    ("cron(0 8 1 * ? *)", "8:00 am every first day of the month",
     ["Thu 01-01 08:00", "Sun 02-01 08:00", "Sun 03-01 08:00"]),
    ("cron(0/15 * * * ? *)", "every 15 minutes", ["Thu 01-01 00:15", "Thu 01-01 00:30", "Thu 01-01 00:45"]),
    ("cron(0/10 * ? * MON-FRI *)", "every 10 minutes Monday through Friday",
     ["Thu 01-01 00:10", "Thu 01-01 00:20", "Thu 01-01 00:30"]),
    ("cron(0/5 8-17 ? * MON-FRI *)", "every 5 minutes Mon-Fri between 8:00 am and 5:55 pm",
     ["Thu 01-01 08:00", "Thu 01-01 08:05", "Thu 01-01 08:10"]),
    # wildcards explained on the same page
    ("cron(1/10 * * * ? *)", "every 10th minute from the first minute of the hour",
     ["Thu 01-01 00:01", "Thu 01-01 00:11", "Thu 01-01 00:21"]),
    ("cron(0 0 L * ? *)", "last day of the month", ["Sat 01-31 00:00", "Sat 02-28 00:00", "Tue 03-31 00:00"]),
    ("cron(0 12 3W * ? *)", "weekday nearest the 3rd (Sat Jan 3 -> Fri Jan 2)",
     ["Fri 01-02 12:00", "Tue 02-03 12:00", "Tue 03-03 12:00"]),
    ("cron(0 9 ? * 3#2 *)", "second Tuesday of the month (1 = SUN)",
     ["Tue 01-13 09:00", "Tue 02-10 09:00", "Tue 03-10 09:00"]),
    ("cron(0 0 ? * 6L *)", "last Friday of the month", ["Fri 01-30 00:00", "Fri 02-27 00:00", "Fri 03-27 00:00"]),
    ("cron(0 0 ? * 1 *)", "Sundays (day-of-week 1 is SUN)", ["Sun 01-04 00:00", "Sun 01-11 00:00", "Sun 01-18 00:00"]),
    ("cron(0 6 1 JAN,MAR ? 2027)", "months by name, one year",
     ["Fri 01-01 06:00", "Mon 03-01 06:00"]),
]


@pytest.mark.parametrize(("expr", "meaning", "expected"), AWS_EXAMPLES, ids=[e[0] for e in AWS_EXAMPLES])
def test_aws_glue_cron_examples_fire_when_aws_says(expr: str, meaning: str, expected: list[str]) -> None:
    assert ticks(expr, len(expected)) == expected, meaning


def test_aws_wrap_around_example_runs_late_evening_to_early_morning_on_weekdays() -> None:
    """AWS: 'cron(0/30 20-2 ? * MON-FRI *)' runs every 30 minutes Monday to Friday from 10 pm (here 20:00) to
    2 am the following day, and from 12 am to 2 am on Monday morning; not on Saturday morning."""
    expr = "cron(0/30 20-2 ? * MON-FRI *)"
    assert ticks(expr, 6) == ["Thu 01-01 00:30", "Thu 01-01 01:00", "Thu 01-01 01:30", "Thu 01-01 02:00",
                              "Thu 01-01 02:30", "Thu 01-01 20:00"]
    assert ticks(expr, 2, datetime(2026, 1, 2, 23, 31, tzinfo=UTC)) == ["Mon 01-05 00:00", "Mon 01-05 00:30"]


def test_month_names_containing_l_are_names_not_the_l_wildcard() -> None:
    assert ticks("cron(0 0 1 JUL ? *)", 2) == ["Wed 07-01 00:00", "Thu 07-01 00:00"]


def test_a_year_long_outage_of_a_minutely_schedule_is_counted_quickly_and_fires_once() -> None:
    import time

    last = datetime(2026, 1, 1, tzinfo=UTC)
    now = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)
    t0 = time.monotonic()
    latest, count = due_ticks("cron(* * * * ? *)", last, now, next_fire)
    assert time.monotonic() - t0 < 2
    assert latest == datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert count == 1_000  # counting stops there; the latest tick is still exact


def test_a_schedule_whose_years_are_over_never_fires_and_does_not_break_the_pass() -> None:
    latest, count = due_ticks("cron(0 0 1 1 ? 2025)", START, datetime(2027, 1, 1, tzinfo=UTC), next_fire)
    assert latest is None and count == 0
