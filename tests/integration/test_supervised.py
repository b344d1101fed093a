"""`make up` under supervisord: a worker killed outright comes back by itself and runs tasks, and
the processes without a web app (the worker, the scheduler) answer Prometheus on their own port."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import requests

from deploy.local.supervision import processes
from shared.testing.fixtures import wait_until
from shared.testing.scraped_metrics import sample

from .conftest import Topology

pytestmark = pytest.mark.integration

POLL = 0.2  # below the test gateway's rate limit


def scrape(port: int) -> str:
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return response.text


def restarted(topology: Topology, name: str, old_pid: int) -> dict[str, Any] | None:
    info = processes(topology.run_dir)[name]
    return info if info["statename"] == "RUNNING" and info["pid"] not in (0, old_pid) else None


def test_a_worker_killed_with_sigkill_comes_back_and_runs_a_task(topology: Topology) -> None:
    if not topology.has_worker:
        pytest.skip("no worker in this tree")
    before = processes(topology.run_dir)["worker-1"]
    assert before["statename"] == "RUNNING"
    os.kill(before["pid"], signal.SIGKILL)  # what the OOM killer does: no chance to clean up
    after = wait_until(lambda: restarted(topology, "worker-1", before["pid"]), 60, POLL, "worker-1 restarted")
    task = topology.post("/tasks/", {"task_type": "example.noop", "description": "after a SIGKILL"}).json()
    done = wait_until(
        lambda: (
            (t := topology.get(f"/tasks/{task['id']}/").json())["status"] in ("completed", "failed") and t
        ),
        60,
        POLL,
        "the task finished",
    )
    assert done["status"] == "completed", done
    # the new process ran it: its own counter (a fresh process starts from zero) says so
    port = topology.state["metrics_ports"]["worker-1"]
    ran = wait_until(lambda: sample(scrape(port), "taskhub_worker_attempts_total", outcome="completed"), 10)
    assert ran >= 1 and processes(topology.run_dir)["worker-1"]["pid"] == after["pid"]
    supervisor_log = (topology.run_dir / "logs" / "supervisord.log").read_text()
    assert "exited: worker-1 (terminated by SIGKILL; not expected)" in supervisor_log


def test_the_worker_and_the_scheduler_serve_their_metrics(topology: Topology) -> None:
    ports = topology.state["metrics_ports"]
    if topology.has_worker:
        worker = scrape(ports["worker-1"])
        assert sample(worker, "taskhub_worker_busy_slots") is not None
        assert "# TYPE taskhub_worker_attempts_total counter" in worker
    if topology.has_scheduler:
        scheduler = scrape(ports["scheduler"])
        assert "# TYPE taskhub_scheduler_fire_delay_seconds histogram" in scheduler
        assert "# TYPE taskhub_db_statements_total counter" in scheduler
    if not (topology.has_worker or topology.has_scheduler):
        pytest.skip("neither a worker nor a scheduler in this tree")


def test_core_exports_queue_worker_and_dead_letter_figures(topology: Topology) -> None:
    """core's web process reads them when scraped (no timer loop), once per scrape whichever
    gunicorn worker answers (`sample` fails on a second copy of a figure)."""
    core = topology.state["ports"]["core"]

    def refreshed() -> str | None:
        text = scrape(core)
        return text if "taskhub_dead_letters{" in text and "taskhub_workers_live " in text else None

    text = wait_until(refreshed, 45, 0.5, "core's read figures on core's /metrics")
    assert sample(text, "taskhub_dead_letters", queue="core.reports", service="core") == 0
    for queue in ("low", "normal", "high", "critical"):
        assert sample(text, "taskhub_work_queue_ready_messages", queue=queue) is not None
        assert sample(text, "taskhub_tasks_awaiting_dispatch", queue=queue) is not None
    if topology.has_worker:
        assert wait_until(lambda: sample(scrape(core), "taskhub_workers_live"), 45, 0.5) >= 1
        worker = scrape(topology.state["metrics_ports"]["worker-1"])
        heartbeat = sample(worker, "taskhub_worker_last_heartbeat_timestamp_seconds")
        assert heartbeat is not None and heartbeat > 0
