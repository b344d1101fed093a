"""Cron in a schedule's own time zone: the daylight-saving matrix (no double, no missing run),
expression checks, and the plain-English describer. Pure functions: no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.scheduling.cron import InvalidCron, next_fire, normalize, zone
from services.scheduling.cron_description import describe
from services.scheduling.zones import next_change, zone_info


def fires(expression, tz, start, end):
    """Every slot in [start, end), as local wall-clock strings with their UTC offset."""
    out: list[str] = []
    moment = start - timedelta(microseconds=1)
    while True:
        moment = next_fire(expression, tz, moment)
        if moment >= end:
            return out
        out.append(moment.astimezone(zone(tz)).strftime("%H:%M%z"))


def day(text, tz):
    """The local calendar day: 23 or 25 hours long on a change day."""
    start = datetime.fromisoformat(text).replace(tzinfo=zone(tz))
    end = (start + timedelta(days=1)).replace(tzinfo=zone(tz))
    return start.astimezone(UTC), end.astimezone(UTC)


# (zone, change day, hourly slots expected that day, the wall hour a daily 02:30 fires at)
MATRIX = [
    ("Europe/Paris", "2026-03-29", 23, "03:00+0200"),  # spring: 02:00-02:59 does not exist
    ("Europe/Paris", "2026-10-25", 24, "02:30+0200"),  # autumn: 02:00-02:59 happens twice
    ("America/New_York", "2026-03-08", 23, "03:00-0400"),
    ("America/New_York", "2026-11-01", 24, "02:30-0500"),  # NY repeats 01:xx, not 02:xx
]


@pytest.mark.parametrize(("tz", "date", "hourly_count", "daily_at"), MATRIX)
class TestDaylightSavingMatrix:
    def test_hourly_fires_once_per_wall_clock_hour(self, tz, date, hourly_count, daily_at):
        start, end = day(date, tz)
        slots = fires("0 * * * *", tz, start, end)
        assert len(slots) == hourly_count
        hours = [s[:2] for s in slots]
        assert len(hours) == len(set(hours)), "a repeated hour fired twice"
        expected_hours = {f"{h:02d}" for h in range(24)} - ({"02"} if hourly_count == 23 else set())
        assert set(hours) == expected_hours, "an hour is missing"

    def test_daily_fires_exactly_once(self, tz, date, hourly_count, daily_at):
        start, end = day(date, tz)
        assert fires("30 2 * * *", tz, start, end) == [daily_at]
        before, after = start - timedelta(days=1), end + timedelta(days=1)
        assert len(fires("30 2 * * *", tz, before, after)) == 3

    def test_half_hourly_in_the_changed_hour(self, tz, date, hourly_count, daily_at):
        start, end = day(date, tz)
        slots = fires("*/30 * * * *", tz, start, end)
        # 48 wall times a day; 02:00 and 02:30 of a spring day fire once, at 03:00, with 03:00's slot
        assert len(slots) == (46 if hourly_count == 23 else 48)
        assert len(slots) == len(set(slots))


def test_slots_strictly_increase_across_a_change():
    moment = datetime(2026, 10, 24, 22, tzinfo=UTC)
    seen = []
    for _ in range(10):
        moment = next_fire("*/15 * * * *", "Europe/Paris", moment)
        seen.append(moment)
    assert seen == sorted(set(seen))


def test_a_weekday_morning_stays_at_nine_local_on_both_sides():
    before = next_fire("0 9 * * 1-5", "Europe/Paris", datetime(2026, 3, 27, 0, tzinfo=UTC))
    after = next_fire("0 9 * * 1-5", "Europe/Paris", datetime(2026, 3, 28, 0, tzinfo=UTC))
    assert (before.hour, after.hour) == (8, 7)  # 09:00 CET then 09:00 CEST (Monday 30 March)
    assert after.date().isoformat() == "2026-03-30"


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "* * * * * *",
        "61 * * * *",
        "* 25 * * *",
        "@reboot",
        "@often",
        "0 0 30 2 *",
        "a b c d e",
    ],
)
def test_invalid_expressions(expression):
    with pytest.raises(InvalidCron):
        normalize(expression)


def test_shorthands_and_spacing():
    assert normalize("@hourly") == "0 * * * *"
    assert normalize(" 0   9 * *  1-5 ") == "0 9 * * 1-5"


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("* * * * *", "Every minute"),
        ("*/5 * * * *", "Every 5 minutes"),
        ("0 9 * * 1-5", "At 09:00, on Monday through Friday"),
        ("30 * * * *", "At minute 30 past every hour"),
        ("0 0 1 * *", "At 00:00, on day 1 of the month"),
        ("@daily", "At 00:00, every day"),
        ("0 8 * 1,7 *", "At 08:00, in January and July"),
    ],
)
def test_descriptions(expression, text):
    assert describe(expression) == text


def test_next_daylight_saving_change():
    change = next_change(zone("Europe/Paris"), datetime(2026, 6, 1, tzinfo=UTC))
    assert change == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    info = zone_info("America/New_York", datetime(2026, 1, 10, tzinfo=UTC))
    assert (info["utc_offset"], info["is_dst"]) == ("-05:00", False)
    assert info["next_dst_change"]["at"] == "2026-03-08T07:00:00.000Z"
    assert info["next_dst_change"]["offset_after"] == "-04:00"
    assert zone_info("UTC", datetime(2026, 1, 10, tzinfo=UTC))["next_dst_change"] is None
