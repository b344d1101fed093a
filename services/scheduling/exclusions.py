"""Calendars' excluded dates: `YYYY-MM-DD` or `{"start", "end"}` (inclusive), in the calendar's
time zone. A slot whose local date (in that zone) is excluded does not exist for the schedule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .cron import zone

MAX_RANGE_DAYS = 3660


@dataclass(frozen=True)
class Exclusion:
    start: date
    end: date
    timezone: str

    def resume_after(self, moment: datetime) -> datetime | None:
        """If `moment` falls in this exclusion, the instant the exclusion ends; else None."""
        tz = zone(self.timezone)
        local_day = moment.astimezone(tz).date()
        if not self.start <= local_day <= self.end:
            return None
        return datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)


def parse_excluded_dates(raw: Any) -> list[dict[str, str] | str]:
    """Validate and normalise; ValueError names the bad entry."""
    if not isinstance(raw, list):
        raise ValueError("excluded_dates must be a list of dates or {start, end} ranges.")
    out: list[dict[str, str] | str] = []
    for index, item in enumerate(raw):
        if isinstance(item, str):
            out.append(_day(item, index).isoformat())
        elif isinstance(item, dict) and set(item) == {"start", "end"}:
            start, end = _day(item["start"], index), _day(item["end"], index)
            if end < start:
                raise ValueError(f"entry {index}: end is before start.")
            if (end - start).days > MAX_RANGE_DAYS:
                raise ValueError(f"entry {index}: a range is at most {MAX_RANGE_DAYS} days.")
            out.append({"start": start.isoformat(), "end": end.isoformat()})
        else:
            raise ValueError(f"entry {index}: give 'YYYY-MM-DD' or {{'start': ..., 'end': ...}}.")
    return out


def _day(value: Any, index: int) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"entry {index}: {value!r} is not a YYYY-MM-DD date.") from None


def exclusions_of(excluded_dates: Iterable[Any], timezone: str) -> list[Exclusion]:
    out = []
    for item in excluded_dates or ():
        if isinstance(item, str):
            day = date.fromisoformat(item)
            out.append(Exclusion(day, day, timezone))
        else:
            out.append(
                Exclusion(date.fromisoformat(item["start"]), date.fromisoformat(item["end"]), timezone)
            )
    return out


def excluded_until(moment: datetime, exclusions: Sequence[Exclusion]) -> datetime | None:
    """When `moment` is excluded, the latest end among the exclusions covering it."""
    ends = [end for end in (e.resume_after(moment) for e in exclusions) if end is not None]
    return max(ends) if ends else None
