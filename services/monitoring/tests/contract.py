"""Events this service publishes, checked against the project's event contract (docs/events/)."""

from __future__ import annotations

from typing import Any

from tests.integration.event_schemas import validator


def assert_matches_contract(event: dict[str, Any]) -> None:
    check = validator(event["event_type"])
    assert check is not None, f"no schema for {event['event_type']} in docs/events/"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in check.iter_errors(event)]
    assert not errors, errors
