"""AWS Glue cron syntax (`cron(Minutes Hours Day-of-month Month Day-of-week Year)`, UTC) — validation with
precise messages, and `next_fire` by translation to `cronsim` (standard 5-field cron).

Glue's rules, as in the AWS docs "Time-based schedules for jobs and crawlers": six fields; `?` in exactly one of
day-of-month and day-of-week; day-of-week 1-7 = SUN-SAT; `L` (last) in day-of-month and day-of-week (`6L` = last
Friday); `W` (nearest weekday) in day-of-month; `#` (nth weekday, `2#1` = first Monday) in day-of-week; `a/b`
steps start at `a`; month and weekday names (JAN-DEC, SUN-SAT); years 1970-2199.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}
FIELDS = ("minutes", "hours", "day-of-month", "month", "day-of-week", "year")
RANGES = {"minutes": (0, 59), "hours": (0, 23), "day-of-month": (1, 31), "month": (1, 12),
          "day-of-week": (1, 7), "year": (1970, 2199)}
EXAMPLE = "cron(0 2 * * ? *)"


class CronError(ValueError):
    """An invalid Glue cron expression; `offset` is the character position of the bad part in the text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class GlueCron:
    text: str
    fields: tuple[str, ...]  # the six fields as written (upper-case)
    years: frozenset[int] | None  # None: every year

    def to_cronsim(self, dom_override: str | None = None) -> str:
        """The 5-field expression cronsim understands (without the year)."""
        minute, hour, dom, month, dow, _year = self.fields
        return " ".join([
            _steps(minute, "minutes"), _steps(hour, "hours"),
            dom_override or ("*" if dom == "?" else _steps(dom, "day-of-month")),
            _steps(_names(month, MONTHS), "month"),
            "*" if dow == "?" else _dow(dow),
        ])


def _names(value: str, names: dict[str, int]) -> str:
    return re.sub(r"[A-Z]{3}", lambda m: str(names.get(m.group(0), m.group(0))), value)


def _wrap(part: str, field: str) -> str:
    """A range that wraps around (`20-2` hours, `FRI-MON`) as the explicit list cron needs, steps included."""
    lo, hi = RANGES[field]
    base, slash, step = part.partition("/")
    m = re.fullmatch(r"(\d+)-(\d+)", base)
    if not m or int(m.group(1)) <= int(m.group(2)):
        return part
    a, b = int(m.group(1)), int(m.group(2))
    seq = list(range(a, hi + 1)) + list(range(lo, b + 1))
    return ",".join(str(n) for n in seq[:: int(step) if slash else 1])


def _steps(value: str, field: str) -> str:
    """Glue's `a/b` (start at a) is cron's `a-MAX/b`; wrapping ranges become lists."""
    hi = RANGES[field][1]
    out = []
    for part in value.split(","):
        part = _wrap(part, field)
        if "," in part:
            out.append(part)
            continue
        base, slash, step = part.partition("/")
        if slash and base != "*" and "-" not in base:
            base = f"{base}-{hi}"
        out.append(base + (slash + step if slash else ""))
    return ",".join(out)


def _dow(value: str) -> str:
    """Glue day-of-week (1-7 = SUN-SAT) to cron (0-6 = SUN-SAT)."""
    value = _names(value, DAYS)
    if value == "L":
        return "6"  # the last day of the week: Saturday
    out = []
    for part in ",".join(_wrap(p, "day-of-week") for p in value.split(",")).split(","):
        base, slash, step = part.partition("/")
        if slash and base != "*" and "-" not in base:
            base = f"{base}-7"

        def shift(m: re.Match[str]) -> str:
            return str(int(m.group(0)) - 1)

        if base == "*":
            out.append(base + (slash + step if slash else ""))
            continue
        if "#" in base:
            day, _, nth = base.partition("#")
            out.append(f"{int(day) - 1}#{nth}")
            continue
        out.append(re.sub(r"\d+", shift, base) + (slash + step if slash else ""))
    return ",".join(out)


_NUM = r"(\d+|[A-Z]{3})"


def _check_field(value: str, field: str, offset: int) -> None:
    lo, hi = RANGES[field]
    names = MONTHS if field == "month" else DAYS if field == "day-of-week" else {}

    def num(tok: str, at: int) -> int:
        if tok in names:
            return names[tok]
        if not tok.isdigit():
            allowed = f" or {next(iter(names))}-{list(names)[-1]}" if names else ""
            raise CronError(f"{field}: '{tok}' is not a number {lo}-{hi}{allowed}", at)
        n = int(tok)
        if not lo <= n <= hi:
            raise CronError(f"{field}: {n} is out of range {lo}-{hi}", at)
        return n

    if value == "?":
        if field not in ("day-of-month", "day-of-week"):
            raise CronError(f"{field}: '?' is only allowed in day-of-month or day-of-week", offset)
        return
    if field == "day-of-month" and value in ("L", "LW"):
        return
    if field == "day-of-month" and (m := re.fullmatch(r"(\d+)W", value)):
        num(m.group(1), offset)
        return
    if field == "day-of-week" and value == "L":
        return
    if field == "day-of-week" and (m := re.fullmatch(_NUM + "L", value)):
        num(m.group(1), offset)
        return
    if field == "day-of-week" and (m := re.fullmatch(_NUM + r"#(\d+)", value)):
        num(m.group(1), offset)
        if not 1 <= int(m.group(2)) <= 5:
            raise CronError(f"day-of-week: '#{m.group(2)}' must be #1 to #5 (the nth weekday of the month)",
                            offset + value.index("#"))
        return
    pos = offset
    for part in value.split(","):
        if not part:
            raise CronError(f"{field}: empty list item in '{value}'", pos)
        if any(c in re.sub(r"[A-Z]{3}", "", part) for c in "LW#?"):  # JUL, WED are names, not L/W
            raise CronError(f"{field}: '{part}' is not allowed here ('L', 'W', '#' and '?' stand alone: "
                            f"e.g. L, 15W, 6L, 2#1)", pos)
        base, slash, step = part.partition("/")
        if slash:
            if not step.isdigit() or int(step) == 0:
                raise CronError(f"{field}: step '/{step}' must be a positive number", pos + len(base))
            if int(step) > hi:
                raise CronError(f"{field}: step /{step} is larger than the range {lo}-{hi}", pos + len(base))
        if base == "*":
            pass
        elif "-" in base:
            a, _, b = base.partition("-")
            na, nb = num(a, pos), num(b, pos + len(a) + 1)
            if field == "year" and na > nb:  # other ranges wrap around (20-2 hours, FRI-MON), as in AWS's docs
                raise CronError(f"{field}: range {a}-{b} goes backwards", pos)
        elif not re.fullmatch(_NUM, base):
            raise CronError(f"{field}: '{part}' is not valid (use a number, a range a-b, a list a,b, */n or a/n)",
                            pos)
        else:
            num(base, pos)
        pos += len(part) + 1


def parse(expr: str) -> GlueCron:
    """Parse and validate a Glue schedule; raise CronError with a message and an offset into `expr`."""
    if not isinstance(expr, str):
        raise CronError(f"a schedule is text like {EXAMPLE}")
    m = re.fullmatch(r"\s*cron\((.*)\)\s*", expr, flags=re.IGNORECASE | re.DOTALL)
    if not m:
        if expr.strip().lower().startswith("rate("):
            raise CronError(f"Glue triggers take cron(...) schedules, not rate(...): e.g. {EXAMPLE}")
        raise CronError(f"a Glue schedule is written cron(Minutes Hours Day-of-month Month Day-of-week Year), "
                        f"e.g. {EXAMPLE}")
    inner_offset = m.start(1)
    inner = m.group(1)
    parts = [(p.group(0), p.start() + inner_offset) for p in re.finditer(r"\S+", inner)]
    if len(parts) != 6:
        raise CronError(f"a Glue cron expression has six fields (Minutes Hours Day-of-month Month Day-of-week "
                        f"Year), found {len(parts)}: e.g. {EXAMPLE}")
    fields = tuple(p.upper() for p, _ in parts)
    for (value, off), field in zip(((f, o) for f, (_, o) in zip(fields, parts)), FIELDS, strict=True):
        _check_field(value, field, off)
    dom, dow = fields[2], fields[4]
    if (dom == "?") == (dow == "?"):
        raise CronError("exactly one of day-of-month and day-of-week must be '?' (Glue cannot combine them): "
                        f"e.g. {EXAMPLE} or cron(0 2 ? * MON *)", parts[2][1])
    years = None
    if fields[5] != "*":
        years = frozenset(_expand(fields[5], 1970, 2199))
    cron = GlueCron(expr, fields, years)
    from cronsim import CronSim, CronSimError

    try:
        CronSim(cron.to_cronsim(dom_override="1" if "W" in dom and dom != "LW" else None), datetime(2000, 1, 1))
    except CronSimError as e:
        raise CronError(f"the schedule can never fire ({str(e).lower()}): check day-of-month against month",
                        parts[2][1]) from None
    return cron


def _expand(value: str, lo: int, hi: int) -> list[int]:
    out: set[int] = set()
    for part in value.split(","):
        base, slash, step = part.partition("/")
        if base == "*":
            a, b = lo, hi
        elif "-" in base:
            a, b = (int(x) for x in base.split("-", 1))
        else:
            a = int(base)
            b = hi if slash else a
        out.update(range(a, b + 1, int(step) if slash else 1))
    return sorted(out)


def validate(expr: str) -> str | None:
    """None if `expr` is a valid Glue schedule, else the message."""
    try:
        parse(expr)
    except CronError as e:
        return str(e)
    return None


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """Glue's `nW`: the weekday nearest to day n of the month, never leaving the month."""
    last = calendar.monthrange(year, month)[1]
    day = min(day, last)
    wd = calendar.weekday(year, month, day)  # 0 = Monday
    if wd == 5:
        return day - 1 if day > 1 else day + 2
    if wd == 6:
        return day + 1 if day < last else day - 2
    return day


def next_fire(expr: str | GlueCron, after: datetime) -> datetime | None:
    """The first time strictly after `after` at which the schedule fires (UTC); None if it never fires again."""
    from cronsim import CronSim

    cron = parse(expr) if isinstance(expr, str) else expr
    after = (after.replace(tzinfo=UTC) if after.tzinfo is None else after.astimezone(UTC)).replace(
        second=0, microsecond=0)
    years = cron.years
    last_year = max(years) if years else 2199
    dom = cron.fields[2]
    w = re.fullmatch(r"(\d+)W", dom)
    if w:  # cronsim has no `nW`: resolve it month by month
        month = datetime(after.year, after.month, 1, tzinfo=UTC)
        while month.year <= last_year:
            if years is None or month.year in years:
                day = _nearest_weekday(month.year, month.month, int(w.group(1)))
                start = max(after, month - timedelta(minutes=1))
                it = CronSim(cron.to_cronsim(dom_override=str(day)), start)
                for dt in it:
                    if (dt.year, dt.month) != (month.year, month.month):
                        break
                    if dt.day == day and dt > after:
                        return dt
                    if dt.day > day:
                        break
            month = (month + timedelta(days=32)).replace(day=1)
        return None
    it = CronSim(cron.to_cronsim(), after)
    for _ in range(100_000):
        dt = next(it, None)
        if dt is None or dt.year > last_year:
            return None
        if years is None or dt.year in years:
            return dt
        nxt = [y for y in years if y > dt.year]
        if not nxt:
            return None
        it = CronSim(cron.to_cronsim(), datetime(nxt[0], 1, 1, tzinfo=UTC) - timedelta(minutes=1))
    return None
