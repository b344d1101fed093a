"""The worker inside `make run`: one worker on the process's in-process bus, its concurrency from
TASKHUB_WORKER_CONCURRENCY (default 2). shared/embedded.py picks this up."""

from __future__ import annotations

from shared.background import Loop
from shared.config import load_settings
from shared.service_context import make_bus

from .config import worker_config
from .runtime import Worker


def embedded_loops() -> list[Loop]:
    settings = load_settings("worker")
    concurrency = int(settings.get("TASKHUB_WORKER_CONCURRENCY") or 2)
    config = worker_config(
        settings, name=settings.get("TASKHUB_WORKER_NAME") or "embedded", concurrency=concurrency
    )
    worker = Worker(config, make_bus(settings))
    return [Loop("worker", worker.run)]
