"""persistence's Flask app. `create_app(config=None)` is the only door (tests, gunicorn, make run)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from shared.config import load_settings
from shared.migrations import upgrade
from shared.service_app import build_app

from .checkpoints.resources import blp as checkpoints_blp
from .container import PersistenceContainer, bootstrap
from .job_states.resources import blp as job_states_blp
from .jobs.resources import blp as jobs_blp

BLUEPRINTS = (jobs_blp, checkpoints_blp, job_states_blp)


def create_app(config: dict[str, Any] | None = None, container: PersistenceContainer | None = None) -> Flask:
    """`config` overrides Settings fields; `container` injects a prepared composition root."""
    if container is None:
        container = bootstrap(load_settings("persistence", **(config or {})))
    if container.ctx.settings.get("TASKHUB_AUTO_MIGRATE", "true") != "false":
        upgrade("persistence", container.ctx.engine)
    app = build_app(
        container.ctx,
        BLUEPRINTS,
        title="taskhub persistence",
        description="Persistent jobs: checkpoints, pause, resume, restart, job states.",
    )
    app.extensions["persistence"] = container
    return app
