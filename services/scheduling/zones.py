"""IANA time zones: validation, and what timezone-info shows (offset, next daylight-saving change)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from shared.domain_errors import InvalidField
from shared.events.envelope import iso


@lru_cache(maxsize=1)
def accepted_zones() -> tuple[str, ...]:
    return tuple(sorted(z for z in available_timezones() if not z.startswith(("posix/", "right/"))))


def check_zone(name: Any, field: str = "timezone") -> str:
    """The zone name if it is an IANA zone this server knows, else 400 TIMEZONE_INVALID."""
    if isinstance(name, str) and name in accepted_zones():
        return name
    raise InvalidField(field, f"{name!r} is not an IANA time zone (e.g. Europe/Paris).", "TIMEZONE_INVALID")


def server_zone() -> str:
    return os.environ.get("TZ") or "UTC"


def _offset_text(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def offset_change(tz: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The first instant, to the second, with the new UTC offset of `tz` when it changes once
    between `low` (the old offset) and `high` (the new one): a bisection."""
    old = low.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == old:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def next_change(tz: ZoneInfo, now: datetime, horizon_days: int = 400) -> datetime | None:
    """The next instant the zone's UTC offset changes: hour steps, then a bisection to the second."""
    current = now.astimezone(tz).utcoffset()
    step = timedelta(hours=1)
    low = now
    for _ in range(horizon_days * 24):
        high = low + step
        if high.astimezone(tz).utcoffset() != current:
            return offset_change(tz, low, high)
        low = high
    return None


def zone_info(name: str, now: datetime) -> dict[str, Any]:
    tz = ZoneInfo(name)
    local = now.astimezone(tz)
    change = next_change(tz, now)
    info: dict[str, Any] = {
        "timezone": name,
        "current_time": local.isoformat(timespec="seconds"),
        "utc_offset": _offset_text(local.utcoffset()),
        "abbreviation": local.tzname(),
        "is_dst": bool(local.dst()),
        "next_dst_change": None,
    }
    if change is not None:
        after = change.astimezone(tz)
        info["next_dst_change"] = {
            "at": iso(change),
            "local_time_before": (change - timedelta(seconds=1)).astimezone(tz).isoformat(timespec="seconds"),
            "local_time_after": after.isoformat(timespec="seconds"),
            "offset_before": info["utc_offset"],
            "offset_after": _offset_text(after.utcoffset()),
        }
    return info
