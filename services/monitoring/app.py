"""monitoring's Flask app. `create_app(config=None)` is the only door (tests, gunicorn, make run)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from shared.service_app import ServiceApp, create_service_app

from .alerts.resources import blp as alerts_blp
from .container import MonitoringContainer, bootstrap
from .metrics.resources import blp as metrics_blp
from .workers.resources import blp as workers_blp

SERVICE = ServiceApp(
    name="monitoring",
    bootstrap=bootstrap,
    blueprints=(metrics_blp, alerts_blp, workers_blp),
    title="taskhub monitoring",
    description="Metrics of task executions and their analytics, alert rules, workers.",
)


def create_app(config: dict[str, Any] | None = None, container: MonitoringContainer | None = None) -> Flask:
    """`config` overrides Settings fields; `container` injects a prepared composition root."""
    return create_service_app(SERVICE, config, container)
