"""cron-templates: common expressions, each with a name and a plain-English description."""

from __future__ import annotations

from typing import Any

from ..cron_description import describe

TEMPLATES = (
    ("every_minute", "Every minute", "* * * * *"),
    ("every_5_minutes", "Every 5 minutes", "*/5 * * * *"),
    ("every_15_minutes", "Every 15 minutes", "*/15 * * * *"),
    ("every_30_minutes", "Every 30 minutes", "*/30 * * * *"),
    ("hourly", "Hourly", "0 * * * *"),
    ("every_6_hours", "Every 6 hours", "0 */6 * * *"),
    ("daily_midnight", "Daily at midnight", "0 0 * * *"),
    ("daily_morning", "Daily at 09:00", "0 9 * * *"),
    ("weekdays_morning", "Weekdays at 09:00", "0 9 * * 1-5"),
    ("business_hours", "Every hour during business hours", "0 9-17 * * 1-5"),
    ("weekly_monday", "Weekly on Monday at 08:00", "0 8 * * 1"),
    ("weekly_sunday_night", "Weekly on Sunday at 02:00", "0 2 * * 0"),
    ("monthly_first_day", "Monthly on the 1st at 00:00", "0 0 1 * *"),
    ("quarterly", "Quarterly on the 1st at 00:00", "0 0 1 1,4,7,10 *"),
    ("yearly", "Yearly on 1 January at 00:00", "0 0 1 1 *"),
)


def cron_templates() -> dict[str, Any]:
    items = [
        {"key": key, "name": name, "cron_expression": expression, "description": describe(expression)}
        for key, name, expression in TEMPLATES
    ]
    return {"count": len(items), "templates": items}
