"""Every event the `make up` topology published during the test run (its processes publish from
their own processes, where the tests' publish check cannot see) checked against the event contract
(docs/events/, docs/asyncapi.yaml), and the outside consumer example at work."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter

import pytest

from shared.config import REPO_ROOT
from shared.events.bus import EVENTS_EXCHANGE
from shared.testing.event_contract import problems
from shared.testing.fixtures import wait_until

from .conftest import Topology


@pytest.mark.integration
@pytest.mark.run_last(3)
def test_every_event_published_during_the_run_matches_its_schema(topology: Topology) -> None:
    request_id = f"it-contract-{uuid.uuid4().hex[:8]}"
    task = topology.post(
        "/tasks/", {"task_type": "example.noop"}, headers={**topology.headers(), "X-Request-ID": request_id}
    ).json()

    def announced() -> list[dict]:
        return [e for e in topology.events_of("task.created") if e["data"]["task_id"] == task["task_id"]]

    # the X-Request-ID the client sent follows the work onto the bus
    assert wait_until(announced, 20, 0.2)[0]["correlation_id"] == request_id

    events = topology.drain_events()
    errors = [p for e in events for p in problems(EVENTS_EXCHANGE, e["routing_key"], e["body"], e["headers"])]
    counts = Counter(e["routing_key"] for e in events)
    assert not errors, "\n".join(sorted(set(errors))[:30])
    # the run exercised (and so checked) the events of every part of the platform
    expected = {"task.created", "attempt.completed", "task.completed", "worker.heartbeat"}
    expected |= {"checkpoint.saved", "job.paused", "job.resumed", "schedule.fired"}
    assert expected <= set(counts), (expected - set(counts), counts)


@pytest.mark.integration
def test_the_outside_consumer_example_prints_completions(topology: Topology) -> None:
    queue = topology.prefix + "example.task-completions"
    env = {**topology.env, "QUEUE": queue, "PYTHONUNBUFFERED": "1"}
    example = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "docs" / "examples" / "outside_consumer.py")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    output = example.stdout
    assert output is not None  # stdout=PIPE
    reader = threading.Thread(target=lambda: lines.extend(output), daemon=True)
    reader.start()
    try:
        wait_until(lambda: lines, 15, 0.1, "the example is consuming")
        task = topology.post("/tasks/", {"task_type": "example.noop"}).json()
        wait_until(lambda: any(f"completed {task['task_id']}" in line for line in lines), 30, 0.2)
    finally:
        example.send_signal(signal.SIGINT)
        example.wait(10)
        connection, channel = topology.amqp_channel()
        channel.queue_delete(queue)
        connection.close()
