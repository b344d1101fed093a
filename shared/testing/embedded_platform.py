"""core and one worker as `make run` hosts them (SQLite, the in-process bus, every loop on a
thread), for the tests of what runs there: the worker, a handler package."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.background import start_loops
from shared.embedded import load_service
from shared.testing.fixtures import JWT_SECRET


@contextmanager
def embedded_core_and_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Yields core's test client; the loops stop on exit."""
    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.setenv("JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AMQP_PREFIX", f"embedded-{tmp_path.name}.")
    monkeypatch.setenv("CORE_DATABASE_URL", f"sqlite:///{tmp_path / 'core.db'}")
    monkeypatch.setenv("TASKHUB_WORKER_CONCURRENCY", "1")
    monkeypatch.setenv("TASKHUB_HEARTBEAT_SECONDS", "0.5")
    core = load_service("core")
    worker = importlib.import_module("services.worker.embedded").embedded_loops()
    stop = threading.Event()
    threads = start_loops([*core.loops, *worker], stop)
    try:
        yield core.app.test_client()
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
