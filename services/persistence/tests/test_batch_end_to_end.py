"""example.batch end to end on real RabbitMQ and PostgreSQL: core and persistence in this process
(persistence served over real HTTP), real worker processes. A paused and resumed job, and a job
whose worker is killed with SIGKILL mid-run, both finish with `processed_twice` 0 and exactly one
checkpoint per batch: no batch was ever done again."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from werkzeug.serving import make_server

from services.core.app import create_app as create_core
from services.core.container import bootstrap as bootstrap_core
from services.persistence.app import create_app as create_persistence
from services.persistence.container import bootstrap as bootstrap_persistence
from shared.background import start_loops
from shared.events.bus import EVENTS_EXCHANGE, PRIORITIES, WORK_EXCHANGE
from shared.events.envelope import Envelope
from shared.events.rabbitmq_bus import DEAD_EXCHANGE, RabbitMQBus
from shared.testing.fixtures import (
    fresh_postgres_database,
    make_settings,
    wait_until,
)
from shared.testing.responses import json_body
from shared.testing.worker_process import kill_worker_processes, start_worker_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
JOBS = "/tasks/persistent-jobs/persistent-jobs"
ITEMS, BATCH = 40, 2  # 20 batches, 20 checkpoints when no batch is done twice


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    """persistence's own database (core has `postgres_url`): one database per service."""
    with fresh_postgres_database() as url:
        yield url


class Platform:
    def __init__(self, core_db: str, persistence_db: str, amqp_url: str, prefix: str, auth: Any, logs: Path):
        self.amqp_url, self.prefix, self.auth, self.logs = amqp_url, prefix, auth, logs
        self.core = bootstrap_core(
            make_settings("core", core_db, amqp_url, prefix, TASKHUB_LEASE_SECONDS="3")
        )
        self.persistence = bootstrap_persistence(
            make_settings("persistence", persistence_db, amqp_url, prefix, TASKHUB_AUTO_RESUME_SECONDS="0")
        )
        self.core_client = create_core(container=self.core).test_client()
        self.client = create_persistence(container=self.persistence).test_client()
        self.server = make_server(
            "127.0.0.1", 0, create_persistence(container=self.persistence), threaded=True
        )
        self.stop = threading.Event()
        self.events: list[Envelope] = []
        self.spy_bus = RabbitMQBus(amqp_url, prefix=prefix)
        spy = self.spy_bus.subscription("test-spy", ["job.*", "checkpoint.saved"], self._record)
        self.threads = start_loops(
            self.core.background_loops() + self.persistence.background_loops(), self.stop
        )
        for target in (self.server.serve_forever, lambda: spy.run(self.stop)):
            self.threads.append(threading.Thread(target=target, daemon=True))
            self.threads[-1].start()
        self.workers: list[subprocess.Popen[bytes]] = []

    def _record(self, delivery: Any) -> None:
        self.events.append(Envelope.from_json(delivery.body))

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        process = start_worker_process(
            name,
            self.amqp_url,
            self.prefix,
            self.logs / f"worker-{name}.log",
            ["--concurrency", "2"],
            TASKHUB_PERSISTENCE_URL=f"http://127.0.0.1:{self.server.server_port}",
        )
        self.workers.append(process)
        # core learns from heartbeats that example.batch is persistent (task.created says so)
        wait_until(
            lambda: json_body(self.core_client.get("/tasks/types/", headers=self.auth.headers()))["count"], 20
        )
        return process

    def create_batch(self, delay: float) -> dict[str, Any]:
        body = {
            "task_type": "example.batch",
            "context_data": {"items": ITEMS, "batch_size": BATCH, "delay": delay},
        }
        response = self.core_client.post("/tasks/", json=body, headers=self.auth.headers())
        assert response.status_code == 201, response.json
        return json_body(response)

    def task(self, task: dict[str, Any]) -> dict[str, Any]:
        return json_body(self.core_client.get(f"/tasks/{task['id']}/", headers=self.auth.headers()))

    def job(self, task: dict[str, Any]) -> dict[str, Any] | None:
        found = json_body(self.client.get(f"{JOBS}/?base_task={task['id']}", headers=self.auth.headers()))
        if not found["results"]:
            return None
        return json_body(self.client.get(f"{JOBS}/{found['results'][0]['id']}/", headers=self.auth.headers()))

    def wait_task(self, task: dict[str, Any], status: str, timeout: float = 40) -> dict[str, Any]:
        return wait_until(
            lambda: (lambda t: t if t["status"] == status else None)(self.task(task)),
            timeout,
            message=f"task {status}",
        )

    def wait_job(self, task: dict[str, Any], predicate: Any, timeout: float = 30) -> dict[str, Any]:
        return wait_until(lambda: (lambda j: j if j and predicate(j) else None)(self.job(task)), timeout)

    def close(self) -> None:
        kill_worker_processes(self.workers)
        self.stop.set()
        self.server.shutdown()
        for thread in self.threads:
            thread.join(5)
        queues = set(self.spy_bus.declared_queues())
        for bus in (self.core.bus, self.persistence.bus):
            assert isinstance(bus, RabbitMQBus)
            queues |= bus.declared_queues()
        queues |= {self.spy_bus.work_queue_name(p) for p in PRIORITIES}
        self.spy_bus.close()
        for container in (self.core, self.persistence):
            container.bus.close()
            container.ctx.dispose()
        try:
            connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        except pika.exceptions.AMQPError:
            return  # the shared broker is down (another suite's outage test): nothing to tidy now
        channel = connection.channel()
        for queue in sorted(queues):
            channel.queue_delete(queue)
            channel.queue_delete(queue + ".dead")
        for exchange in (EVENTS_EXCHANGE, WORK_EXCHANGE, DEAD_EXCHANGE):
            channel.exchange_delete(self.prefix + exchange)
        connection.close()


@pytest.fixture
def platform(postgres_url, second_postgres_url, amqp_url, bus_prefix, auth, tmp_path) -> Iterator[Platform]:
    built = Platform(postgres_url, second_postgres_url, amqp_url, bus_prefix, auth, tmp_path)
    yield built
    built.close()


def test_paused_and_resumed_batch_finishes_without_doing_a_batch_twice(platform, auth):
    platform.start_worker("w-pause")
    task = platform.create_batch(delay=0.15)
    job = platform.wait_job(task, lambda j: j["status"] == "running" and j["checkpoints_count"] >= 3)

    paused = platform.client.post(f"{JOBS}/{job['id']}/pause/", headers=auth.headers())
    assert paused.status_code == 200, paused.json
    platform.wait_task(task, "paused")
    held = platform.wait_job(task, lambda j: j["status"] == "paused")
    assert 0 < held["checkpoints_count"] < ITEMS // BATCH
    assert wait_until(lambda: [e for e in platform.events if e.event_type == "job.paused"], 10)

    resumed = platform.client.post(f"{JOBS}/{job['id']}/resume/", json={}, headers=auth.headers())
    assert resumed.status_code == 200, resumed.json
    assert resumed.json["resumed_from"]["checkpoint_id"] == held["newest_checkpoints"][0]["id"]
    done = platform.wait_task(task, "completed")
    assert done["result_data"] == {"processed": ITEMS, "processed_twice": 0}
    final = platform.wait_job(task, lambda j: j["status"] == "completed")
    assert final["checkpoints_count"] == ITEMS // BATCH  # no batch checkpointed twice
    assert final["resume_count"] == 1
    assert [e.data["job_id"] for e in platform.events if e.event_type == "job.resumed"] == [job["id"]]


def test_a_batch_whose_worker_is_killed_continues_from_its_newest_checkpoint(platform, auth):
    victim = platform.start_worker("w-victim")
    task = platform.create_batch(delay=0.15)
    platform.wait_job(task, lambda j: j["checkpoints_count"] >= 4)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    before = platform.job(task)
    assert before["checkpoints_count"] < ITEMS // BATCH

    platform.start_worker("w-rescuer")  # core's lease reaper re-dispatches the task to it
    done = platform.wait_task(task, "completed", timeout=60)
    assert done["result_data"] == {"processed": ITEMS, "processed_twice": 0}
    final = platform.wait_job(task, lambda j: j["status"] == "completed")
    assert final["checkpoints_count"] == ITEMS // BATCH  # continued after the newest checkpoint
    assert final["interruptions_count"] >= 1 and "interrupted" in final["interruption_reason"]
