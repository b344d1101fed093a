"""Workers really run tasks: results, progress, metrics, retries with backoff, timeouts, cancel,
task types, all seen through core's API (real PostgreSQL, RabbitMQ, worker processes)."""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

from shared.testing.fixtures import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

METRIC_FIELDS = {
    "execution_time_ms",
    "memory_usage_mb",
    "cpu_usage_percent",
    "queue_wait_time_ms",
    "api_calls_count",
    "tokens_used",
    "cost_usd",
    "task_type",
    "priority",
    "retry_count",
    "worker_name",
}


def test_tasks_run_with_progress_results_metrics_and_types(served):
    platform = served
    types = wait_until(
        lambda: (lambda b: b if b["count"] else None)(
            platform.client.get("/tasks/types/", headers=platform.auth.headers()).json
        ),
        message="types from heartbeats",
    )
    by_name = {t["task_type"]: t for t in types["task_types"]}
    assert {"example.noop", "example.sleep", "example.fail", "example.flaky", "example.batch"} <= set(by_name)
    assert by_name["example.batch"]["persistent"] is True
    queues = platform.client.get("/tasks/queue-stats/", headers=platform.auth.headers()).json["queues"]
    assert (queues["normal"]["workers"], queues["low"]["workers"]) == (1, 0)  # w-main serves no low

    noop = platform.create("example.noop")
    metered = platform.create("test.metered")
    sleep = platform.create("example.sleep", context_data={"seconds": 2, "steps": 4})
    assert platform.wait_status(noop, "completed")["result_data"] == {}

    running = platform.wait_status(sleep, "running")
    assert running["worker_name"] == "w-main"
    midway = wait_until(
        lambda: (lambda t: t if 0 < t["progress_percentage"] < 100 and t["status"] == "running" else None)(
            platform.get(sleep)
        ),
        message="progress visible while running",
    )
    assert midway["progress_percentage"] in (25, 50, 75)
    done = platform.wait_status(sleep, "completed")
    assert (done["result_data"], done["progress_percentage"]) == ({"slept": 2}, 100)
    assert [h["to_status"] for h in platform.history(sleep)] == ["pending", "running", "completed"]

    platform.wait_status(metered, "completed")
    (completed,) = platform.wait_events("task.completed", metered)
    metrics = completed.data["metrics"]
    assert set(metrics) >= METRIC_FIELDS
    assert (metrics["tokens_used"], metrics["cost_usd"], metrics["api_calls_count"]) == (120, 0.25, 3)
    assert metrics["memory_usage_mb"] > 0 and metrics["queue_wait_time_ms"] >= 0
    assert (metrics["worker_name"], metrics["task_type"]) == ("w-main", "test.metered")


def test_flaky_completes_after_retries_with_backoff_delays(served):
    platform = served
    flaky = platform.create("example.flaky", context_data={"fail_times": 2}, max_retries=3)
    done = platform.wait_status(flaky, "completed", "failed", timeout=30)
    assert (done["status"], done["result_data"], done["retry_count"]) == ("completed", {"attempts": 3}, 2)
    history = platform.history(flaky)
    assert [h["to_status"] for h in history] == [
        "pending",
        "running",
        "retrying",
        "running",
        "retrying",
        "running",
        "completed",
    ]
    # every retry waited at least the delay core recorded for it (held in core's database)
    for retrying, next_run in zip(history, history[1:], strict=False):
        if retrying["to_status"] != "retrying":
            continue
        stated = re.search(r"retry in ([\d.]+)s", retrying["reason"])
        assert stated, retrying["reason"]
        delay = float(stated.group(1))
        waited = (
            datetime.fromisoformat(next_run["at"]) - datetime.fromisoformat(retrying["at"])
        ).total_seconds()
        assert waited >= delay - 0.1, (delay, waited)
    failures = platform.wait_events("task.failed", flaky, count=2)
    assert [f.data["will_retry"] for f in failures] == [True, True]
    assert all(0 <= f.data["retry_delay_seconds"] <= 2 ** f.data["metrics"]["retry_count"] for f in failures)


def test_handler_error_and_dead_child_fail_without_killing_the_worker(served):
    platform = served
    failing = platform.create("example.fail", context_data={"message": "it broke"}, max_retries=0)
    crash = platform.create("test.crash", max_retries=0)
    failed = platform.wait_status(failing, "failed")
    assert failed["error_message"] == "RuntimeError: it broke"
    crashed = platform.wait_status(crash, "failed")
    assert "process died (exit code 3)" in crashed["error_message"]
    after = platform.create("example.noop")  # the worker lives on with a fresh child
    platform.wait_status(after, "completed")


def test_a_timeout_stops_the_attempt_for_real_and_the_retry_runs(served):
    platform = served
    task = platform.create("test.timeout_once", timeout_minutes=1, max_retries=2)  # 1.2 s in tests
    done = platform.wait_status(task, "completed", "failed", timeout=30)
    assert done["status"] == "completed", done
    assert done["result_data"]["retry_count"] == 1
    (failure,) = platform.wait_events("task.failed", task)
    assert failure.data["error_message"].startswith("Timed out")
    assert failure.data["will_retry"] is True
    assert 1000 <= failure.data["metrics"]["execution_time_ms"] < 5000  # killed, not waited for
    assert done["error_message"].startswith("Timed out")


def test_cancel_stops_a_running_task_within_5_seconds_and_it_stays_cancelled(served):
    platform = served
    polite = platform.create("example.sleep", context_data={"seconds": 30, "steps": 30})
    stubborn = platform.create("test.stubborn", context_data={"seconds": 30})
    for task in (polite, stubborn):
        platform.wait_status(task, "running")
    cancelled_at = time.monotonic()
    for task in (polite, stubborn):
        response = platform.client.post(f"/tasks/{task['id']}/cancel/", headers=platform.auth.headers())
        assert response.status_code == 200, response.json

    def still_running():
        beats = platform.heartbeats("w-main")
        return beats and not ({polite["task_id"], stubborn["task_id"]} & set(beats[-1]["active_task_ids"]))

    wait_until(still_running, timeout=6, message="both attempts stopped")
    assert time.monotonic() - cancelled_at < 5.5  # heartbeat period included
    after = platform.create("example.noop")  # the slots are free again
    platform.wait_status(after, "completed")
    for task in (polite, stubborn):
        final = platform.get(task)
        assert final["status"] == "cancelled"
        assert not platform.events_of("task.completed", task)
