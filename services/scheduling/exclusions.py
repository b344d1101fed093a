"""Calendars' excluded dates: `YYYY-MM-DD` or `{"start", "end"}` (inclusive), in the calendar's
time zone. A slot whose local date (in that zone) is excluded does not exist for the schedule."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .cron import zone

MAX_RANGE_DAYS = 3660
# entries of one calendar (a date or a range each): a year of holidays fits many times over
MAX_ENTRIES = 1000


@dataclass
class Exclusions:
    """Excluded local dates per time zone, merged into sorted, disjoint ranges once, so that
    asking whether a slot is excluded costs a binary search, however many dates a calendar
    lists (issue 13: a list scanned for every slot made one calendar cost minutes of CPU)."""

    ranges: dict[str, list[tuple[date, date]]] = field(default_factory=dict)

    def add(self, excluded_dates: Iterable[Any], timezone: str) -> None:
        merged = self.ranges.setdefault(timezone, [])
        merged.extend(_ranges(excluded_dates))
        merged.sort()
        out: list[tuple[date, date]] = []
        for start, end in merged:
            if out and start <= out[-1][1] + timedelta(days=1):  # overlapping or adjacent
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        self.ranges[timezone] = out

    def __bool__(self) -> bool:
        return any(self.ranges.values())

    def resume_after(self, moment: datetime) -> datetime | None:
        """When `moment` falls on an excluded date of any zone, the instant that exclusion ends
        (the latest, when several zones exclude it); else None."""
        ends = []
        for timezone, ranges in self.ranges.items():
            tz = zone(timezone)
            local_day = moment.astimezone(tz).date()
            index = bisect_right(ranges, (local_day, date.max)) - 1
            if index >= 0 and ranges[index][0] <= local_day <= ranges[index][1]:
                resume = datetime.combine(ranges[index][1] + timedelta(days=1), time(0), tzinfo=tz)
                ends.append(resume.astimezone(UTC))
        return max(ends) if ends else None


def parse_excluded_dates(raw: Any) -> list[dict[str, str] | str]:
    """Validate and normalise; ValueError names the bad entry."""
    if not isinstance(raw, list):
        raise ValueError("excluded_dates must be a list of dates or {start, end} ranges.")
    if len(raw) > MAX_ENTRIES:
        raise ValueError(f"excluded_dates holds at most {MAX_ENTRIES} entries (use ranges for long spans).")
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


def _ranges(excluded_dates: Iterable[Any]) -> Iterator[tuple[date, date]]:
    for item in excluded_dates or ():
        if isinstance(item, str):
            day = date.fromisoformat(item)
            yield day, day
        else:
            yield date.fromisoformat(item["start"]), date.fromisoformat(item["end"])


def excluded_until(moment: datetime, exclusions: Exclusions | None) -> datetime | None:
    return exclusions.resume_after(moment) if exclusions else None
