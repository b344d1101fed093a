"""persistence's Flask app. `create_app(config=None)` is the only door (tests, gunicorn, make run)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from shared.service_app import ServiceApp, create_service_app

from .checkpoints.resources import blp as checkpoints_blp
from .container import PersistenceContainer, bootstrap
from .job_states.resources import blp as job_states_blp
from .jobs.resources import blp as jobs_blp

SERVICE = ServiceApp(
    name="persistence",
    bootstrap=bootstrap,
    blueprints=(jobs_blp, checkpoints_blp, job_states_blp),
    title="taskhub persistence",
    description="Persistent jobs: checkpoints, pause, resume, restart, job states.",
)


def create_app(config: dict[str, Any] | None = None, container: PersistenceContainer | None = None) -> Flask:
    """`config` overrides Settings fields; `container` injects a prepared composition root."""
    return create_service_app(SERVICE, config, container)
