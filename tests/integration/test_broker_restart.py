"""RabbitMQ restarted while tasks are being created: every write succeeds and no event is lost
(the outbox holds them until the broker is back). It stops the shared broker, so it runs only in
CI or when asked (TASKHUB_TEST_BROKER_RESTART=1), after every other test of the topology."""

from __future__ import annotations

import subprocess
import threading
import time

import requests

from shared.testing.fixtures import wait_until

from .conftest import Topology, rabbitmqctl, restarts_shared

pytestmark = restarts_shared("restarts the shared RabbitMQ", "TASKHUB_TEST_BROKER_RESTART", order=2)


def control(*args: str) -> None:
    subprocess.run(rabbitmqctl(*args), check=True, capture_output=True, timeout=120)


def test_rabbitmq_restarted_during_writes_loses_no_event(topology: Topology) -> None:
    created: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def write() -> None:
        session = requests.Session()
        while not stop.is_set():
            response = session.post(
                topology.gateway + "/tasks/",
                json={"task_type": "example.noop", "description": "during a broker restart"},
                headers=topology.headers(),
                timeout=15,
            )
            if response.status_code == 201:
                created.append(response.json()["task_id"])
            else:
                failures.append(f"{response.status_code} {response.text[:200]}")
            time.sleep(0.1)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_until(lambda: len(created) >= 5, 20, 0.1, "writes before the restart")
        control("stop_app")
        during = len(created)
        wait_until(lambda: len(created) >= during + 5, 20, 0.1, "writes while the broker is down")
        control("start_app")
        control("await_startup")
        after = len(created)
        wait_until(lambda: len(created) >= after + 5, 20, 0.1, "writes after the restart")
    finally:
        stop.set()
        writer.join(20)
        subprocess.run(rabbitmqctl("start_app"), capture_output=True, timeout=120)  # never leave it down
    assert not failures, failures[:5]

    def missing() -> set[str]:
        announced = {e["data"]["task_id"] for e in topology.events_of("task.created")}
        return set(created) - announced

    wait_until(lambda: not missing(), 90, 0.5, "every created task announced on the bus")

    # the read side catches up too: every task ran
    def unfinished() -> list[dict]:
        page = topology.get("/tasks/?search=broker%20restart&page_size=100&status=active").json()
        return page["results"]

    wait_until(lambda: not unfinished(), 90, 0.5, "every task created around the restart completed")
