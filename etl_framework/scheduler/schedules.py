"""Scheduled triggers: which tick is due now, and the 'missed while down: started once' rule.

Per trigger the store keeps `last_tick`, the latest tick already handled. A trigger seen for the first time (or whose
cron expression changed) starts from now: nothing in the past fires. Each pass, every tick in (last_tick, now] is
due; however many there are, ONE firing is recorded for the latest of them, in the same transaction that moves
`last_tick` — so a scheduler that was down for a day starts one catch-up run, says so, and never fires a tick twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from etl_framework.scheduler.store import SchedulerStore

NextFire = Callable[[str, datetime], datetime | None]  # None: the schedule never fires again
MAX_COUNTED_TICKS = 1_000  # past this many missed ticks the count says "at least" (counting costs a cron step each)
SCHEDULED_TIME = "scheduled_time"  # run property: the tick this run was started for (ISO, UTC)
LATE_AFTER = timedelta(seconds=60)  # a tick handled later than this counts as missed (the scheduler was down)


def default_next_fire(expr: str, after: datetime) -> datetime | None:
    from etl_framework.config.cron import next_fire

    return next_fire(expr, after)


@dataclass(frozen=True)
class ScheduleFire:
    """A tick that fired: `missed` counts the ticks that passed while nobody was there to fire them."""

    workflow: str
    trigger: str
    tick: datetime
    missed: int
    firing_id: int
    late_by: timedelta

    @property
    def catch_up(self) -> bool:
        return self.missed > 0 or self.late_by > LATE_AFTER


@dataclass(frozen=True)
class ScheduleInit:
    """A schedule seen for the first time (or changed): its baseline is now, the next tick is `next_tick`."""

    workflow: str
    trigger: str
    expr: str
    next_tick: datetime | None
    changed: bool


def due_ticks(expr: str, last_tick: datetime, now: datetime, next_fire: NextFire) -> tuple[datetime | None, int]:
    """The latest tick in (last_tick, now] and how many ticks that interval holds (counting stops at
    MAX_COUNTED_TICKS; past it the latest tick is found from a short window before now)."""
    latest, count = None, 0
    t = next_fire(expr, last_tick)
    while t is not None and t <= now:
        latest, count = t, count + 1
        if count >= MAX_COUNTED_TICKS:
            for window in (timedelta(hours=1), timedelta(days=1), timedelta(days=31), timedelta(days=366)):
                start = max(last_tick, now - window)
                t = next_fire(expr, start)
                if t is not None and t <= now:
                    break
            else:
                return latest, count
            while t is not None and t <= now:
                latest = t
                t = next_fire(expr, t)
            return latest, count
        t = next_fire(expr, t)
    return latest, count


def check_schedule(
    store: SchedulerStore, workflow: str, trigger: str, expr: str, now: datetime, next_fire: NextFire,
    properties: dict | None = None,
) -> ScheduleFire | ScheduleInit | None:
    """Fire the schedule if a tick is due (one firing for all due ticks); None when nothing is due."""
    row = store.get_schedule(workflow, trigger)
    if row is None or row[0] != expr:
        store.set_schedule_baseline(workflow, trigger, expr, now, now)
        try:
            nxt: datetime | None = next_fire(expr, now)
        except Exception:  # noqa: BLE001 - a schedule that never fires again (past year) is not an error here
            nxt = None
        return ScheduleInit(workflow, trigger, expr, nxt, changed=row is not None)
    last_tick = row[1]
    try:
        tick, count = due_ticks(expr, last_tick, now, next_fire)
    except Exception:  # noqa: BLE001 - no more ticks (e.g. a Year field in the past)
        return None
    if tick is None:
        return None
    missed = count - 1
    late_by = now - tick
    note = f"scheduled tick {tick.isoformat()}"
    if missed:
        note += f"; {missed} earlier tick(s) missed while the scheduler was down, started once"
    props = {**(properties or {}), SCHEDULED_TIME: tick.isoformat()}
    firing_id = store.fire_schedule(workflow, trigger, expr, last_tick, tick, now, props, note)
    if firing_id is None:
        return None
    return ScheduleFire(workflow, trigger, tick, missed, firing_id, late_by)
