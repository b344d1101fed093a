"""The event contract: docs/events/ and docs/asyncapi.yaml are what shared/events/catalog.py generates,
the official AsyncAPI parser accepts the document, and the check every test runs on what it
publishes tells a message that matches its class from one that drifted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.config import REPO_ROOT
from shared.events import catalog, contract
from shared.events.bus import EVENTS_EXCHANGE, WORK_EXCHANGE, OutgoingMessage
from shared.events.envelope import Envelope
from shared.events.inprocess_bus import InProcessBus
from shared.testing.event_contract import problems, published

PARSER = REPO_ROOT / "tools" / "asyncapi"


def test_the_committed_documents_are_what_the_generator_writes() -> None:
    drift = [str(path.relative_to(REPO_ROOT)) for path in contract.stale(contract.documents())]
    assert not drift, f"run `make contract` and commit: {drift}"


def test_the_document_says_who_sends_and_receives_from_the_code() -> None:
    operations = yaml.safe_load(contract.ASYNCAPI.read_text())["operations"]
    # core alone reads the workers' reports; the public task events come from core
    readers = {key.split(".receive.")[0] for key in operations if key.endswith(".receive.attempt.completed")}
    assert readers == {"core"}
    assert "core.send.task.completed" in operations
    assert {"worker.receive.task.attempt_revoked", "worker.receive.work.normal"} <= set(operations)


def test_the_official_asyncapi_parser_accepts_the_document_and_rejects_a_broken_one(tmp_path: Path) -> None:
    if shutil.which("node") is None or not (PARSER / "node_modules" / "@asyncapi" / "parser").exists():
        message = "the AsyncAPI parser is not installed: make asyncapi-parser"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    # a consumer filtering on headers (none may do so yet) still makes a valid document
    consumed = contract.receivers()
    consumed["task.completed"].append(contract.Receiver("outsider", "outsider.q", {"persistent": "1"}))
    (tmp_path / "filtered.yaml").write_text(yaml.safe_dump(contract.asyncapi_document(consumed)))
    broken = yaml.safe_load(contract.ASYNCAPI.read_text())
    broken["operations"]["core.send.task.completed"]["action"] = "publish"  # AsyncAPI 2's word
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    documents = [contract.ASYNCAPI, tmp_path / "filtered.yaml", tmp_path / "broken.yaml"]
    command = ["node", str(PARSER / "validate.mjs"), *map(str, documents)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    verdicts = [
        line.split(":")[0] for line in result.stdout.splitlines() if line.startswith(("ACCEPTED", "REJECTED"))
    ]
    expected = [f"ACCEPTED {documents[0]}", f"ACCEPTED {documents[1]}", f"REJECTED {documents[2]}"]
    assert verdicts == expected, result.stdout + result.stderr
    assert "Error asyncapi-document-resolved at operations.core.send.task.completed.action" in result.stdout


# ------------------------------------------------------------------ what the tests' check catches


def completed_event() -> dict[str, Any]:
    metrics = catalog.AttemptMetrics(execution_time_ms=3.5, worker_name="w-1")
    event = catalog.TaskCompleted(
        id=7,
        task_id="task_abc",
        attempt=1,
        worker_name="w-1",
        task_type="example.noop",
        priority="normal",
        retry_count=0,
        max_retries=3,
        created_at="2026-01-02T03:04:05.000Z",
        metrics=metrics,
        result_data={"ok": True},
    )
    return json.loads(Envelope.of(event, 9, "req-1").to_json())


def test_a_message_that_drifts_from_its_class_breaks_the_contract() -> None:
    good = completed_event()
    assert problems(EVENTS_EXCHANGE, "task.completed", good, {"persistent": "1"}) == []

    def drifted(change: Any, headers: dict[str, str] | None = None, key: str = "task.completed") -> list[str]:
        body = json.loads(json.dumps(good))
        change(body)
        return problems(EVENTS_EXCHANGE, key, body, headers or {})

    assert drifted(lambda b: b["data"].pop("task_type"))  # a field its class requires
    assert drifted(lambda b: b["data"].update(colour="red"))  # a field its class does not declare
    assert drifted(lambda b: b["data"]["metrics"].update(gpu_seconds=1))  # ... nor a nested class
    assert drifted(lambda b: b["data"].update(attempt="1"))  # a wrong type
    assert drifted(lambda b: b.pop("occurred_at"))  # an envelope field
    assert drifted(lambda b: b.update(producer="worker"))  # not its producer
    assert drifted(lambda b: None, {"persistent": "yes"})  # a header value filters cannot match
    assert drifted(lambda b: None, {"tenant": "9"})  # a header the contract does not have
    assert drifted(lambda b: None, key="task.failed")  # routed as another event
    assert drifted(lambda b: None, key="task.finished")  # an event type the catalog lacks
    # free JSON objects stay free
    assert not drifted(lambda b: b["data"]["result_data"].update(anything={"nested": [1]}))


def test_a_work_order_is_checked_with_its_headers() -> None:
    order = catalog.WorkOrder(
        id=1,
        task_id="task_abc",
        brand_id=9,
        task_type="example.noop",
        priority="high",
        context_data={},
        attempt=1,
        retry_count=0,
        max_retries=3,
        timeout_minutes=30,
    )
    body = catalog.work_body(order)
    assert problems(WORK_EXCHANGE, "high", body, {"correlation_id": "req-1"}) == []
    assert problems(WORK_EXCHANGE, "high", body, {})  # correlation_id is always sent
    assert problems(WORK_EXCHANGE, "urgent", body, {"correlation_id": ""})  # no such queue


def test_what_the_code_publishes_is_seen_by_the_check() -> None:
    bus = InProcessBus(prefix="t.")
    body = completed_event()
    body["data"].pop("result_data")
    bus.publish([OutgoingMessage(EVENTS_EXCHANGE, "task.completed", json.dumps(body).encode(), "m-1")])
    found = published.problems()  # taken here, so that this test's own check has nothing left
    assert found and "result_data" in found[0]
