"""The task types the live workers can run, from their heartbeats (`worker.heartbeat` carries each
worker's registered types with their defaults). Read by POST /tasks/ (default priority, retries,
timeout, persistence) and GET /tasks/types/."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.events.envelope import utcnow

from .models import WorkerPresence


class TaskTypeRegistry:
    def __init__(self, session_factory: sessionmaker[Session], online_seconds: float = 30.0) -> None:
        self.session_factory = session_factory
        self.online_window = timedelta(seconds=online_seconds)
        self._cache: tuple[float, dict[str, dict[str, Any]]] = (0.0, {})
        self._lock = threading.Lock()

    def live_types(self, max_age: float = 2.0) -> dict[str, dict[str, Any]]:
        """{type: {defaults..., "workers": n}} over workers heard from within the online window."""
        with self._lock:
            cached_at, types = self._cache
            if time.monotonic() - cached_at < max_age:
                return types
        types = self._load()
        with self._lock:
            self._cache = (time.monotonic(), types)
        return types

    def _load(self) -> dict[str, dict[str, Any]]:
        cutoff = utcnow() - self.online_window
        with self.session_factory() as session:
            workers = session.scalars(select(WorkerPresence).where(WorkerPresence.last_seen >= cutoff)).all()
        types: dict[str, dict[str, Any]] = {}
        for worker in workers:
            for declared in worker.task_types or []:
                entry = types.setdefault(declared["name"], {**declared, "workers": 0})
                entry["workers"] += 1
        return types

    def defaults(self, task_type: str) -> dict[str, Any] | None:
        return self.live_types().get(task_type)

    def invalidate(self) -> None:
        with self._lock:
            self._cache = (0.0, {})
