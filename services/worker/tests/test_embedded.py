"""`make run` hosts the worker in-process: core and the worker share the in-process bus, and a
task goes pending -> running -> completed with its progress visible (no broker, no server)."""

from __future__ import annotations

import threading

from services.core.app import SERVICE as CORE
from services.worker.embedded import embedded_loops
from shared.background import start_loops
from shared.config import load_settings
from shared.service_app import build_embedded
from shared.testing.fixtures import JWT_SECRET, wait_until


def test_the_embedded_worker_runs_tasks_on_the_in_process_bus(monkeypatch, tmp_path, auth):
    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.setenv("JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AMQP_PREFIX", f"embedded-{tmp_path.name}.")
    monkeypatch.setenv("CORE_DATABASE_URL", f"sqlite:///{tmp_path / 'core.db'}")
    monkeypatch.setenv("TASKHUB_WORKER_CONCURRENCY", "1")
    monkeypatch.setenv("TASKHUB_HEARTBEAT_SECONDS", "0.5")
    app, loops = build_embedded(CORE, load_settings("core"))
    stop = threading.Event()
    threads = start_loops([*loops, *embedded_loops()], stop)
    client = app.test_client()
    try:
        created = client.post(
            "/tasks/",
            json={"task_type": "example.sleep", "context_data": {"seconds": 1.2, "steps": 3}},
            headers=auth.headers(),
        ).json

        def task():
            return client.get(f"/tasks/{created['id']}/", headers=auth.headers()).json

        wait_until(lambda: task()["status"] == "running" and 0 < task()["progress_percentage"] < 100, 15)
        done = wait_until(lambda: (lambda t: t if t["status"] == "completed" else None)(task()), 15)
        assert done["result_data"] == {"slept": 1.2}
        types = client.get("/tasks/types/", headers=auth.headers()).json
        assert "example.sleep" in {t["task_type"] for t in types["task_types"]}
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
