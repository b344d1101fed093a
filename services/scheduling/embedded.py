"""scheduling inside `make run`: its app, its background loops and the scheduler, sharing the
process's bus and one composition root (so a schedule changed through the app wakes the scheduler
in the process: SQLite has no NOTIFY)."""

from __future__ import annotations

from flask import Flask

from shared.background import Loop
from shared.config import Settings

from .app import create_app
from .container import bootstrap
from .scheduler import Scheduler


def build(settings: Settings) -> tuple[Flask, list[Loop]]:
    container = bootstrap(settings)
    scheduler = Loop("scheduling.scheduler", Scheduler(container).run)
    return create_app(container=container), [*container.background_loops(), scheduler]
