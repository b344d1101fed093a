"""scheduling's Flask app. `create_app(config=None)` is the only door (tests, gunicorn, make run)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from shared.config import load_settings
from shared.migrations import upgrade
from shared.service_app import build_app

from .calendars.resources import blp as calendars_blp
from .container import SchedulingContainer, bootstrap
from .cron_jobs.resources import blp as cron_jobs_blp
from .periodic_tasks.resources import blp as periodic_tasks_blp

BLUEPRINTS = (periodic_tasks_blp, cron_jobs_blp, calendars_blp)


def create_app(config: dict[str, Any] | None = None, container: SchedulingContainer | None = None) -> Flask:
    """`config` overrides Settings fields; `container` injects a prepared composition root."""
    if container is None:
        container = bootstrap(load_settings("scheduling", **(config or {})))
    if container.ctx.settings.get("TASKHUB_AUTO_MIGRATE", "true") != "false":
        upgrade("scheduling", container.ctx.engine)
    app = build_app(
        container.ctx,
        BLUEPRINTS,
        title="taskhub scheduling",
        description="Periodic tasks, cron jobs and calendars; the scheduler fires each slot once.",
    )
    app.extensions["scheduling"] = container
    return app
