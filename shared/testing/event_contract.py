"""The event contract as the tests apply it, and a pytest plugin (loaded by the root conftest.py)
that checks every message the code publishes in the test process against it.

The contract is what `make contract` generated from shared/events/catalog.py: docs/events/<type>.json
for the bodies, docs/asyncapi.yaml for the AMQP headers. A published message must match its class
exactly: besides the schema (which, being public, lets consumers ignore fields they do not know), no
field its class does not declare, so a message built outside its class cannot drift from it
unnoticed. Each test fails (at teardown) if a message published while it ran does not
match; a test that publishes off-contract messages on purpose (the bus's own mechanics) says so
with `@pytest.mark.unchecked_events`.

Processes the tests start (workers, `make up`) are checked by the spies of their own tests
(services/worker/tests/conftest.py, tests/integration/test_event_contract.py) with `problems`."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker

from shared.events.bus import DEAD_WORK, EVENTS_EXCHANGE, PRIORITIES, WORK_EXCHANGE, OutgoingMessage
from shared.events.contract import ASYNCAPI, SCHEMAS, WORK_ORDER
from shared.events.inprocess_bus import InProcessBus
from shared.events.rabbitmq_bus import RabbitMQBus
from shared.events.rabbitmq_worker_link import RabbitWorkerLink

Json = dict[str, Any]


def schema_files() -> dict[str, Any]:
    """Schema name (event type, or `work.order`) -> its file in docs/events/."""
    return {path.name.removesuffix(".json"): path for path in sorted(SCHEMAS.glob("*.json"))}


def event_types() -> set[str]:
    return set(schema_files()) - {WORK_ORDER}


@cache
def validator(name: str) -> Draft202012Validator | None:
    """The public schema of an event type (or of `work.order`), as an outside consumer reads it;
    None if the contract lacks it."""
    path = schema_files().get(name)
    if path is None:
        return None
    return Draft202012Validator(json.loads(path.read_text()), format_checker=FormatChecker())


@cache
def strict_validator(name: str) -> Draft202012Validator | None:
    """The schema with no room for fields the message's classes do not declare."""
    public = validator(name)
    return (
        None
        if public is None
        else Draft202012Validator(closed(public.schema), format_checker=FormatChecker())
    )


def closed(schema: Any) -> Any:
    """A copy where every object schema listing its properties (a struct) allows no others; free
    objects (`context_data`, `result_data`: any JSON object) stay free."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


@cache
def header_validators() -> dict[str, Draft202012Validator]:
    """Message name (event type or `work.order`) -> validator of its AMQP headers (docs/asyncapi.yaml);
    a message without a headers schema carries no headers."""
    document = yaml.safe_load(ASYNCAPI.read_text())
    schemas = document["components"]["schemas"]
    found = {}
    for name, message in document["components"]["messages"].items():
        if "headers" in message:
            schema = schemas[message["headers"]["$ref"].rsplit("/", 1)[-1]]
            found[name] = Draft202012Validator(closed(schema))
    return found


def problems(
    exchange: str, routing_key: str, body: bytes | str | Json, headers: Mapping[str, Any]
) -> list[str]:
    """How a message published to `exchange` with `routing_key` breaks the contract (empty: it does not)."""
    where = f"{exchange}/{routing_key}"
    if exchange == EVENTS_EXCHANGE:
        name = routing_key
    elif exchange == WORK_EXCHANGE and routing_key in PRIORITIES:
        name = WORK_ORDER
    elif exchange == WORK_EXCHANGE and routing_key == DEAD_WORK:
        return []  # a parked task for operators to inspect, not a message of the catalog
    else:
        return [f"{where}: no such destination in the contract"]
    check = strict_validator(name)
    if check is None:
        return [
            f"{where}: no schema in docs/events/ (add a class to shared/events/catalog.py, run make contract)"
        ]
    try:
        message = body if isinstance(body, dict) else json.loads(body)
    except ValueError:
        return [f"{where}: the body is not JSON"]
    found = []
    if name != WORK_ORDER and isinstance(message, dict) and message.get("event_type") != routing_key:
        found.append(f"{where}: routing key and event_type {message.get('event_type')!r} differ")
    found += [f"{where} {_path(e.absolute_path)}: {e.message}" for e in check.iter_errors(message)]
    header_check = header_validators().get(name)
    if header_check is None:
        if headers:
            found.append(f"{where}: headers {dict(headers)} where the contract has none")
    else:
        found += [
            f"{where} headers {_path(e.absolute_path)}: {e.message}"
            for e in header_check.iter_errors(dict(headers))
        ]
    return found


def _path(parts: Sequence[Any]) -> str:
    return "/" + "/".join(str(part) for part in parts)


# ------------------------------------------------------------------------------ the pytest plugin


class PublishedMessages:
    """What the code under test published in this process since the last look."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[tuple[str, str, bytes, dict[str, str]]] = []

    def record(self, messages: Sequence[OutgoingMessage]) -> None:
        with self._lock:
            self._seen += [(m.exchange, m.routing_key, m.body, dict(m.headers)) for m in messages]

    def take(self) -> list[tuple[str, str, bytes, dict[str, str]]]:
        with self._lock:
            seen, self._seen = self._seen, []
        return seen

    def problems(self) -> list[str]:
        found: list[str] = []
        for exchange, routing_key, body, headers in self.take():
            found += problems(exchange, routing_key, body, headers)
        return sorted(set(found))


published = PublishedMessages()


def _spied(publish: Any) -> Any:
    def spied_publish(self: Any, messages: Sequence[OutgoingMessage]) -> None:
        published.record(messages)
        publish(self, messages)

    return spied_publish


@pytest.fixture(scope="session", autouse=True)
def _spy_on_publishers() -> Iterator[None]:
    # every way a message leaves this process (the in-process link publishes through its bus)
    with pytest.MonkeyPatch.context() as patch:
        for publisher in (InProcessBus, RabbitMQBus, RabbitWorkerLink):
            patch.setattr(publisher, "publish", _spied(publisher.publish))
        yield
    leftovers = published.problems()  # published by background threads after the last test
    if leftovers:
        pytest.fail("messages off the event contract:\n" + "\n".join(leftovers[:30]), pytrace=False)


@pytest.fixture(autouse=True)
def _published_messages_match_the_contract(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.node.get_closest_marker("unchecked_events"):
        published.take()
        return
    found = published.problems()
    if found:
        pytest.fail(
            f"{len(found)} problem(s) with messages published during the test, against docs/events/ and "
            "docs/asyncapi.yaml (shared/events/catalog.py; `make contract` regenerates them):\n"
            + "\n".join(found[:30]),
            pytrace=False,
        )
