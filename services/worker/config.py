"""A worker's configuration: command-line flags over `TASKHUB_*` environment variables over
defaults (docs/worker.md lists them)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from typing import Any

from shared.config import ConfigError, Settings, env_float, env_int
from shared.events.bus import PRIORITIES


@dataclass(frozen=True)
class WorkerConfig:
    name: str
    queues: tuple[str, ...] = PRIORITIES
    concurrency: int = 4
    heartbeat_seconds: float = 5.0
    idle_heartbeat_seconds: float = 10.0  # with nothing running: presence only
    hold_seconds: float = 1.0  # an attempt shorter than this costs one report (runtime.py)
    prefetch: int = 16  # deliveries held per queue while its attempts are short (runtime.py)
    cancel_grace_seconds: float = 3.0
    shutdown_grace_seconds: float = 25.0
    timeout_scale: float = 1.0  # a test hook: seconds of a timeout minute / 60
    handler_modules: tuple[str, ...] = ()
    persistence_url: str = "http://127.0.0.1:8080"
    persistence_retry_seconds: float = 30.0

    @staticmethod
    def token(message: dict[str, Any]) -> str | None:
        """The bearer token for the persistence calls of this attempt: the `attempt` grant core
        put in the work message (docs/security.md). A worker holds no key and no token of its
        own, so a handler can never act beyond its own attempt."""
        credentials = message.get("credentials")
        return credentials if isinstance(credentials, str) and credentials else None


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def parse_queues(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return PRIORITIES
    queues = tuple(q.strip() for q in raw.split(",") if q.strip())
    unknown = [q for q in queues if q not in PRIORITIES]
    if unknown or not queues:
        raise ConfigError(f"queues must be among {', '.join(PRIORITIES)}; got {raw!r}")
    return queues


def worker_config(
    settings: Settings,
    *,
    name: str | None = None,
    queues: str | None = None,
    concurrency: int | None = None,
) -> WorkerConfig:
    extra = settings.extra
    modules = tuple(m.strip() for m in (extra.get("TASKHUB_HANDLER_MODULES") or "").split(",") if m.strip())
    port = os.environ.get("PORT") or "8080"
    config = WorkerConfig(
        name=name or extra.get("TASKHUB_WORKER_NAME") or default_name(),
        queues=parse_queues(queues or extra.get("TASKHUB_WORKER_QUEUES")),
        concurrency=concurrency or env_int(settings, "TASKHUB_WORKER_CONCURRENCY", 4),
        heartbeat_seconds=env_float(settings, "TASKHUB_HEARTBEAT_SECONDS", 5.0),
        idle_heartbeat_seconds=env_float(settings, "TASKHUB_IDLE_HEARTBEAT_SECONDS", 10.0),
        hold_seconds=env_float(settings, "TASKHUB_HOLD_SECONDS", 1.0),
        prefetch=env_int(settings, "TASKHUB_WORKER_PREFETCH", 0),
        cancel_grace_seconds=env_float(settings, "TASKHUB_CANCEL_GRACE_SECONDS", 3.0),
        shutdown_grace_seconds=env_float(settings, "TASKHUB_SHUTDOWN_GRACE_SECONDS", 25.0),
        timeout_scale=env_float(settings, "TASKHUB_TIMEOUT_SCALE", 1.0),
        handler_modules=modules,
        persistence_url=extra.get("TASKHUB_PERSISTENCE_URL") or f"http://127.0.0.1:{port}",
        persistence_retry_seconds=env_float(settings, "TASKHUB_PERSISTENCE_RETRY_SECONDS", 30.0),
    )
    if config.concurrency < 1:
        raise ConfigError("concurrency must be at least 1")
    if config.prefetch < 1:
        # four per slot: a freed slot finds its next delivery already here while the last one's
        # report waits for the broker's confirm (docs/worker.md has the measurements)
        config = replace(config, prefetch=4 * config.concurrency)
    if config.cancel_grace_seconds > 4.5:
        raise ConfigError("TASKHUB_CANCEL_GRACE_SECONDS must leave a cancel done within 5 s (max 4.5)")
    return config
