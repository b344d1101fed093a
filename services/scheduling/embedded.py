"""scheduling inside `make run`: its app and its background loops, sharing the process's bus.
The scheduler loop itself comes from `scheduler.embedded_loops()` (shared/embedded.py)."""

from __future__ import annotations

from flask import Flask

from shared.background import Loop
from shared.config import Settings

from .app import create_app
from .container import bootstrap


def build(settings: Settings) -> tuple[Flask, list[Loop]]:
    container = bootstrap(settings)
    return create_app(container=container), container.background_loops()
