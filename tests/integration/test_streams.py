"""The task streams through the nginx gateway of the `make up` topology: a stream sees a task go
from pending to completed as it happens (nginx does not buffer it), a one-task stream ends at the
final status, a stream resumes from Last-Event-ID, and the client and `taskhub events tail` use them."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from taskhub import Client
from taskhub.cli import root

from .conftest import Topology

pytestmark = pytest.mark.integration


def read_events(response: requests.Response, until: Any, timeout: float = 60) -> list[dict[str, Any]]:
    """`task` events (with `id` and arrival time) until `until(events)` holds or the deadline."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    block: dict[str, str] = {}
    for line in response.iter_lines(chunk_size=1, decode_unicode=True):  # each line as it comes
        if time.monotonic() > deadline:
            break
        if line:
            if not line.startswith(":"):
                field, _, value = line.partition(": ")
                block[field] = value
            continue
        if block.get("event") == "task":
            events.append({**json.loads(block["data"]), "event_id": block["id"], "at": time.monotonic()})
            if until(events):
                break
        block = {}
    return events


def open_stream(topology: Topology, path: str, **headers: str) -> requests.Response:
    response = requests.get(
        topology.gateway + path,
        headers=topology.headers(Accept="text/event-stream", **headers),
        stream=True,
        timeout=(5, 30),
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


def test_a_stream_through_the_gateway_sees_a_task_go_pending_to_completed(topology: Topology) -> None:
    stream = open_stream(topology, "/tasks/stream/?task_type=example.sleep")
    created: dict[str, Any] = {}

    def create_soon() -> None:
        time.sleep(0.5)  # the stream is open and at its head before the task exists
        # due in a few seconds: pending for longer than reads are ever apart
        due = (datetime.now(UTC) + timedelta(seconds=3)).isoformat().replace("+00:00", "Z")
        body = {
            "task_type": "example.sleep",
            "context_data": {"seconds": 2, "steps": 2},
            "scheduled_for": due,
        }
        created.update(topology.post("/tasks/", body).json())

    threading.Thread(target=create_soon).start()
    try:
        events = read_events(
            stream,
            lambda seen: any(
                e["event_id"] and e.get("task_id") == created.get("task_id") and e["status"] == "completed"
                for e in seen
            ),
        )
    finally:
        stream.close()
    print(
        "EVENTS",
        [(e["status"], e["updated_at"]) for e in events],
        created.get("scheduled_for"),
        created.get("updated_at"),
    )
    mine = [e for e in events if e["task_id"] == created["task_id"]]
    statuses = [e["status"] for e in mine]
    assert statuses[0] == "pending" and statuses[-1] == "completed", statuses
    assert "running" in statuses
    # each change arrived as it happened, not in one buffered lump at the end
    assert mine[-1]["at"] - mine[0]["at"] > 1.0
    progress = [e["progress_percentage"] for e in mine]
    assert progress == sorted(progress) and progress[-1] == 100


def test_one_task_stream_ends_at_its_final_status_and_resumes(topology: Topology) -> None:
    task = topology.post(
        "/tasks/", {"task_type": "example.sleep", "context_data": {"seconds": 1, "steps": 2}}
    ).json()
    stream = open_stream(topology, f"/tasks/{task['id']}/stream/")
    events = read_events(stream, lambda seen: False)  # until the server ends the stream
    stream.close()
    assert events[0]["status"] in ("pending", "running") and events[-1]["status"] == "completed"

    resumed = open_stream(
        topology, f"/tasks/{task['id']}/stream/", **{"Last-Event-ID": events[0]["event_id"]}
    )
    again = read_events(resumed, lambda seen: False, timeout=15)
    resumed.close()
    assert again and again[-1]["status"] == "completed"


def test_the_client_and_the_command_follow_streams(topology: Topology) -> None:
    token = topology.auth.token("operator")
    client = Client(topology.gateway, token, 9)
    handle = client.submit("example.sleep", context={"seconds": 1, "steps": 2})
    changes = list(client.stream_task(handle.id))
    assert changes[-1].data["status"] == "completed" and changes[-1].id

    env = {"TASKHUB_URL": topology.gateway, "TASKHUB_TOKEN": token, "TASKHUB_BRAND": "9"}
    tail = CliRunner().invoke(root, ["-o", "json", "events", "tail", "--task", str(handle.id)], env=env)
    assert tail.exit_code == 0, tail.output
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert lines[-1]["data"]["status"] == "completed" and lines[-1]["event"] == "task"
