"""The platform's main journeys end to end, through the gateway of the `make up` topology: a task
created and followed to its end, its metrics, a persistent job paused and resumed, a cron
expression validated, a periodic task fired (docs/api.md)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.testing.fixtures import wait_until

from .conftest import Topology

pytestmark = pytest.mark.integration

POLL = 0.2  # below the test gateway's rate limit


def task_status(topology: Topology, pk: int, *statuses: str) -> dict[str, Any] | None:
    task = topology.get(f"/tasks/{pk}/").json()
    return task if task["status"] in statuses else None


@pytest.fixture(scope="session")
def every_minute(topology: Topology) -> dict[str, Any]:
    """A schedule firing every minute, created by the first test so that the scheduler's first
    minute boundary passes while the other tests run."""
    created = topology.post(
        "/tasks/scheduled/periodic-tasks/",
        {
            "task_type": "example.noop",
            "cron_expression": "* * * * *",
            "timezone": "UTC",
            "description": "tick",
        },
    )
    assert created.status_code == 201, created.text
    return created.json()


def test_a_task_is_created_and_followed(topology: Topology, every_minute: Any) -> None:
    created = topology.post("/tasks/", {"task_type": "example.noop", "description": "overview"})
    assert created.status_code == 201
    task = created.json()
    assert task["status"] == "pending" and task["task_id"].startswith("task_")
    listed = topology.get("/tasks/?search=overview").json()
    assert task["id"] in [t["id"] for t in listed["results"]]
    done = wait_until(lambda: task_status(topology, task["id"], "completed", "failed"), 30, POLL)
    assert done["status"] == "completed", done
    assert done["result_data"] == {} and done["progress_percentage"] == 100


def test_a_sleeping_task_reports_progress_and_its_metrics_are_visible(topology: Topology) -> None:
    task = topology.post(
        "/tasks/", {"task_type": "example.sleep", "context_data": {"seconds": 0.6, "steps": 3}}
    ).json()
    done = wait_until(lambda: task_status(topology, task["id"], "completed", "failed"), 30, POLL)
    assert done["status"] == "completed" and done["result_data"] == {"slept": 0.6}

    def metrics() -> dict[str, Any] | None:
        page = topology.get(f"/tasks/monitoring/metrics/?base_task={task['id']}").json()
        return page["results"][0] if page["count"] == 1 else None

    record = wait_until(metrics, 10, POLL)
    assert record["execution_time_ms"] >= 500
    assert wait_until(
        lambda: (task_status(topology, task["id"], "completed") or {}).get("has_metrics"), 10, POLL
    )


def test_each_service_exports_the_figures_of_all_its_processes(topology: Topology) -> None:
    """gunicorn's workers and the service's background process write one multiprocess folder, so
    one scrape of /metrics (on the service's own port: the gateway does not expose it) sees them all."""
    topology.post("/tasks/", {"task_type": "example.noop"})
    port = topology.state["ports"]["core"]

    def scraped() -> str | None:
        text = topology.session.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        published = 'taskhub_events_published_total{routing_key="task.created",service="core"}' in text
        return text if published else None

    text = wait_until(scraped, 15, POLL)
    assert 'taskhub_http_requests_total{method="POST",route="/tasks/",service="core",status="201"}' in text


def test_a_persistent_job_is_paused_and_resumed_from_its_checkpoint(topology: Topology) -> None:
    task = topology.post(
        "/tasks/",
        {"task_type": "example.batch", "context_data": {"items": 40, "batch_size": 4, "delay": 0.2}},
    ).json()
    jobs = "/tasks/persistent-jobs/persistent-jobs/"

    def job(*statuses: str) -> dict[str, Any] | None:
        page = topology.get(f"{jobs}?base_task={task['id']}").json()
        found = page["results"][0] if page["count"] else None
        return found if found and found["status"] in statuses else None

    running = wait_until(lambda: job("running"), 30, POLL)
    paused = topology.post(f"{jobs}{running['id']}/pause/")
    assert paused.status_code == 200, paused.text
    held = wait_until(lambda: job("paused"), 20, POLL)
    assert held["can_resume"] and held["checkpoints_count"] >= 1
    wait_until(lambda: task_status(topology, task["id"], "paused"), 10, POLL)  # core hears it by event

    resumed = topology.post(f"{jobs}{held['id']}/resume/", {})
    assert resumed.status_code == 200, resumed.text
    done = wait_until(lambda: task_status(topology, task["id"], "completed", "failed"), 40, POLL)
    assert done["status"] == "completed", done
    assert done["result_data"] == {"processed": 40, "processed_twice": 0}


def test_a_cron_expression_is_validated(topology: Topology) -> None:
    validate = "/tasks/scheduled/periodic-tasks/validate-cron/"
    good = topology.post(validate, {"cron_expression": "0 9 * * 1-5", "timezone": "Europe/Paris", "count": 3})
    assert good.status_code == 200, good.text
    assert good.json()["is_valid"] is True and len(good.json()["next_executions"]) == 3
    bad = topology.post(validate, {"cron_expression": "61 * * * *", "timezone": "UTC"})
    assert bad.status_code in (200, 400) and bad.json().get("is_valid") is not True


@pytest.mark.run_last(1)
def test_a_periodic_task_is_fired_by_the_scheduler(topology: Topology, every_minute: Any) -> None:
    """The schedule fires at a minute boundary: created by the first test, checked last."""
    schedule = every_minute

    def fired() -> list[dict[str, Any]]:
        return topology.get("/tasks/?is_periodic=true").json()["results"]

    tasks = wait_until(fired, 75, 1.0)
    assert tasks[0]["task_type"] == "example.noop"
    after = topology.get(f"/tasks/scheduled/periodic-tasks/{schedule['id']}/").json()
    assert after["executions_count"] >= 1 and after["last_run_at"]
    # and on demand: scheduling asks core (service to service) for the task at once
    now = topology.post(f"/tasks/scheduled/periodic-tasks/{schedule['id']}/execute-now/")
    assert now.status_code == 200, now.text
    assert now.json()["task"]["is_periodic"] is True
