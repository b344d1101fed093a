"""core's Flask app. `create_app(config=None)` is the only door (tests, gunicorn, make run)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from shared.service_app import ServiceApp, create_service_app

from .container import CoreContainer, bootstrap
from .streams import resources as streams
from .tasks.resources import blp as tasks_blp

SERVICE = ServiceApp(
    name="core",
    bootstrap=bootstrap,
    blueprints=(tasks_blp, streams.blp),
    title="taskhub core",
    description="Tasks: creation, status, retries, cancellation, queue and type statistics.",
    extensions=(streams.init_app,),
)


def create_app(config: dict[str, Any] | None = None, container: CoreContainer | None = None) -> Flask:
    """`config` overrides Settings fields; `container` injects a prepared composition root."""
    return create_service_app(SERVICE, config, container)
