"""A cron expression in plain English ("At 09:00, Monday through Friday"). Small on purpose: the
common shapes read naturally, anything else is described field by field."""

from __future__ import annotations

from collections.abc import Callable

from .cron import normalize

DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "", "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
NAMES = {
    **{d[:3].lower(): str(i) for i, d in enumerate(DAYS[:7])},
    **{m[:3].lower(): str(i) for i, m in enumerate(MONTHS) if m},
}


def _number(token: str) -> str:
    return NAMES.get(token.lower(), token)


def _is_int(token: str) -> bool:
    return _number(token).isdigit()


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _field(token: str, unit: str, name: Callable[[str], str] = lambda v: v) -> str:
    """One field, e.g. '*/15' -> 'every 15 minutes', '1-5' -> 'Monday through Friday'."""
    parts = []
    for part in token.split(","):
        base, _, step = part.partition("/")
        if base in ("*", "?"):
            parts.append(f"every {step} {unit}s" if step else f"every {unit}")
            continue
        if "-" in base:
            low, high = (_number(x) for x in base.split("-", 1))
            text = f"{name(low)} through {name(high)}"
        else:
            text = name(_number(base))
        parts.append(f"every {step} {unit}s from {text}" if step else text)
    return _list(parts)


def describe(expression: str) -> str:
    minute, hour, dom, month, dow = normalize(expression).split(" ")
    if (minute, hour, dom, month, dow) == ("*", "*", "*", "*", "*"):
        return "Every minute"
    if _is_int(minute) and _is_int(hour):
        when = f"At {int(hour):02d}:{int(minute):02d}"
    elif _is_int(minute) and hour == "*":
        when = "At minute 0 of every hour" if minute == "0" else f"At minute {minute} past every hour"
    elif minute.startswith("*/"):
        when = f"Every {minute[2:]} minutes" + (
            "" if hour == "*" else f", during hour {_field(hour, 'hour')}"
        )
    elif hour == "*":
        when = f"At minute {_field(minute, 'minute')} of every hour"
    else:
        when = f"At minute {_field(minute, 'minute')} past hour {_field(hour, 'hour')}"
    parts = [when]
    if dom != "*":
        parts.append(f"on day {_field(dom, 'day')} of the month")
    if month != "*":
        parts.append(f"in {_field(month, 'month', lambda v: MONTHS[int(v)] if v.isdigit() else v)}")
    if dow != "*":
        days = _field(dow, "day", lambda v: DAYS[int(v)] if v.isdigit() and int(v) < 8 else v)
        parts.append(("or " if dom != "*" else "") + f"on {days}")
    elif dom == "*" and month == "*" and _is_int(hour):
        parts.append("every day")
    return ", ".join(parts)
