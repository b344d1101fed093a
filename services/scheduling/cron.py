"""Cron evaluated in a schedule's own time zone, with an explicit daylight-saving policy.

croniter 7.0.0 given an aware datetime fires a repeated autumn hour twice (`30 2 * * *` in
Europe/Paris runs at 02:30+02:00 and again at 02:30+01:00; hourly patterns too), which is the
classic bug of incumbent schedulers. So croniter only walks naive wall-clock time here, and this
module maps each matching wall-clock time to one instant:
- a wall time that exists once is that instant;
- a wall time repeated by the autumn change is its first occurrence (it fires once);
- a wall time skipped by the spring change is the first instant after the gap (it fires once,
  at 03:00 for 02:30 in Paris), and merges with any slot already at that instant.
Each matching wall-clock time therefore fires exactly once, and instants are strictly increasing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter
from croniter.croniter import CroniterBadDateError

from .zones import offset_change

SHORTHANDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class InvalidCron(ValueError):
    """The message says what is wrong, in words a user can act on."""


@lru_cache(maxsize=4096)
def normalize(expression: str) -> str:
    """The 5-field form of an expression (shorthands expanded); InvalidCron if it is not one."""
    text = " ".join(str(expression).split())
    if text.lower() in SHORTHANDS:
        return SHORTHANDS[text.lower()]
    if text.startswith("@"):
        raise InvalidCron(f"Unknown shorthand {text!r}; use one of {', '.join(SHORTHANDS)}.")
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidCron(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week); got {len(fields)}."
        )
    if not croniter.is_valid(text):
        raise InvalidCron(f"{text!r} is not a valid cron expression.")
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidCron(f"{text!r} never fires (no such date).") from None
    return text


@lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def resolve(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of a naive wall-clock time in `tz`, by the policy in the module doc."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists (the first occurrence if it is repeated)
    # skipped by a spring change: bisect for the transition, the first instant after the gap
    before = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)  # earlier offset, before the gap
    return offset_change(tz, min(first, before), max(first, before))


@lru_cache(maxsize=65536)
def next_fire(expression: str, tz_name: str, after: datetime) -> datetime:
    """The first slot strictly after `after` (aware), in UTC. Cached: at scale many schedules
    share an expression and a slot, and croniter costs ~0.5 ms per call."""
    tz = zone(tz_name)
    after_utc = after.astimezone(UTC)
    # walk wall-clock time from the local time of `after`: the mapping wall -> instant never
    # decreases, so no earlier wall time can give an instant after `after`
    wall = after_utc.astimezone(tz).replace(tzinfo=None)
    walker = croniter(expression, wall)
    for _ in range(10_000):
        candidate = resolve(walker.get_next(datetime), tz)
        if candidate > after_utc:
            return candidate
    raise InvalidCron(f"{expression!r} has no slot after {after_utc.isoformat()}.")


def slots(expression: str, tz_name: str, after: datetime) -> Iterator[datetime]:
    """Every slot after `after`, in order (an endless generator)."""
    moment = after
    while True:
        moment = next_fire(expression, tz_name, moment)
        yield moment


def check_cron(expression: object, field: str = "cron_expression") -> str:
    """The 5-field form, or 400 INVALID_CRON_EXPRESSION naming the field."""
    from shared.domain_errors import InvalidField

    try:
        return normalize(str(expression))
    except InvalidCron as error:
        raise InvalidField(field, str(error), "INVALID_CRON_EXPRESSION") from None
