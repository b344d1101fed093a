"""monitoring's Flask app. `create_app(config=None)` is the only door (tests, gunicorn, make run)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from shared.config import load_settings
from shared.migrations import upgrade
from shared.service_app import build_app

from .alerts.resources import blp as alerts_blp
from .container import MonitoringContainer, bootstrap
from .metrics.resources import blp as metrics_blp
from .workers.resources import blp as workers_blp

BLUEPRINTS = (metrics_blp, alerts_blp, workers_blp)


def create_app(config: dict[str, Any] | None = None, container: MonitoringContainer | None = None) -> Flask:
    """`config` overrides Settings fields; `container` injects a prepared composition root."""
    if container is None:
        container = bootstrap(load_settings("monitoring", **(config or {})))
    if container.ctx.settings.get("TASKHUB_AUTO_MIGRATE", "true") != "false":
        upgrade("monitoring", container.ctx.engine)
    app = build_app(
        container.ctx,
        BLUEPRINTS,
        title="taskhub monitoring",
        description="Metrics of task executions and their analytics, alert rules, workers.",
    )
    app.extensions["monitoring"] = container
    return app
