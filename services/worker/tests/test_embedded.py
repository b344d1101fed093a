"""`make run` hosts the worker in-process: core and the worker share the in-process bus, and a
task goes pending -> running -> completed with its progress visible (no broker, no server)."""

from __future__ import annotations

from shared.testing.embedded_platform import embedded_core_and_worker
from shared.testing.fixtures import wait_until


def test_the_embedded_worker_runs_tasks_on_the_in_process_bus(monkeypatch, tmp_path, auth):
    with embedded_core_and_worker(monkeypatch, tmp_path) as client:
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
