"""scheduling's Flask app. `create_app(config=None)` is the only door (tests, gunicorn, make run)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from shared.background import Loop
from shared.service_app import ServiceApp, create_service_app

from .calendars.resources import blp as calendars_blp
from .container import SchedulingContainer, bootstrap
from .cron_jobs.resources import blp as cron_jobs_blp
from .periodic_tasks.resources import blp as periodic_tasks_blp
from .scheduler import scheduler_loop


def hosted_scheduler(container: SchedulingContainer) -> list[Loop]:
    """`make run` hosts the scheduler on the app's own composition root, so that a schedule
    changed through the app wakes it in the process (SQLite has no NOTIFY)."""
    return [scheduler_loop(container)]


SERVICE = ServiceApp(
    name="scheduling",
    bootstrap=bootstrap,
    blueprints=(periodic_tasks_blp, cron_jobs_blp, calendars_blp),
    title="taskhub scheduling",
    description="Periodic tasks, cron jobs and calendars; the scheduler fires each slot once.",
    embedded_loops=hosted_scheduler,
)


def create_app(config: dict[str, Any] | None = None, container: SchedulingContainer | None = None) -> Flask:
    """`config` overrides Settings fields; `container` injects a prepared composition root."""
    return create_service_app(SERVICE, config, container)
