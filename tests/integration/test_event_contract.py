"""The AsyncAPI document and its JSON Schemas (docs/asyncapi.yaml, docs/events/), and every event
the `make up` topology published during the test run checked against them."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter

import pytest
import yaml
from jsonschema import Draft202012Validator

from shared.config import REPO_ROOT
from shared.testing.fixtures import wait_until

from .conftest import Topology
from .event_schemas import event_types, schema_files, validator

ASYNCAPI = REPO_ROOT / "docs" / "asyncapi.yaml"
EVENTS_DOC = REPO_ROOT / "docs" / "events.md"


def test_the_asyncapi_document_references_a_valid_schema_for_every_documented_event() -> None:
    document = yaml.safe_load(ASYNCAPI.read_text())
    assert document["asyncapi"].startswith("2.6")
    referenced = {m["payload"]["$ref"] for m in document["components"]["messages"].values()}
    assert referenced == {
        f"events/{path.name}" for name, path in schema_files().items() if name != "envelope"
    }
    for path in schema_files().values():
        Draft202012Validator.check_schema(yaml.safe_load(path.read_text()))
    # every event type docs/events.md lists has its schema (`job.created`, `job.updated` share a row)
    documented = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", EVENTS_DOC.read_text().split("Work messages")[0]))
    assert documented <= event_types(), documented - event_types()
    assert set(document["channels"]) >= event_types()


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
    errors = []
    for event in events:
        body, key = event["body"], event["routing_key"]
        check = validator(key)
        if body.get("event_type") != key:
            errors.append(f"{key}: routing key and event_type {body.get('event_type')!r} differ")
        elif check is None:
            errors.append(f"{key}: no schema in docs/events/ (add it and to docs/asyncapi.yaml)")
        else:
            errors += [f"{key} {list(e.absolute_path)}: {e.message}" for e in check.iter_errors(body)]
    counts = Counter(e["routing_key"] for e in events)
    assert not errors, "\n".join(sorted(set(errors))[:30])
    # the run exercised (and so checked) the events of every part that is deployed
    expected = {"task.created"}
    if topology.has_worker:
        expected |= {"task.started", "task.progress", "task.completed", "worker.heartbeat"}
    # (metrics.recorded is not expected: worker-reported figures reach core with the attempt's
    # report, and monitoring announces only records created or edited through its API)
    if topology.has_worker and topology.has("persistence"):
        expected |= {"checkpoint.saved", "job.paused", "job.resumed"}
    if topology.has_scheduler:
        expected |= {"schedule.fired"}
    assert expected <= set(counts), (expected - set(counts), counts)


@pytest.mark.integration
def test_the_outside_consumer_example_prints_completions(topology: Topology) -> None:
    if not topology.has_worker:
        pytest.skip("the worker is not built yet: nothing completes")
    queue = topology.prefix + "example.task-completions"
    env = {**topology.env, "QUEUE": queue, "PYTHONUNBUFFERED": "1"}
    example = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "docs" / "examples" / "outside_consumer.py")],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(example.stdout), daemon=True)
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
