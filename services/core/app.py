"""core's Flask app. `create_app(config=None)` is the only door (tests, gunicorn, make run)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from shared.config import load_settings
from shared.migrations import upgrade
from shared.service_app import build_app

from .container import CoreContainer, bootstrap
from .streams import resources as streams
from .tasks.resources import blp as tasks_blp

BLUEPRINTS = (tasks_blp, streams.blp)


def create_app(config: dict[str, Any] | None = None, container: CoreContainer | None = None) -> Flask:
    """`config` overrides Settings fields; `container` injects a prepared composition root."""
    if container is None:
        container = bootstrap(load_settings("core", **(config or {})))
    if container.ctx.settings.get("TASKHUB_AUTO_MIGRATE", "true") != "false":
        upgrade("core", container.ctx.engine)
    app = build_app(
        container.ctx,
        BLUEPRINTS,
        title="taskhub core",
        description="Tasks: creation, status, retries, cancellation, queue and type statistics.",
    )
    app.extensions["core"] = container
    streams.init_app(app)
    return app
