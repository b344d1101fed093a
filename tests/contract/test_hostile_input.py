"""What schemathesis found, pinned one case at a time: hostile input gets a clear 400/404/415 JSON
error, never a 500, through HTTP against the whole platform, on SQLite (`make run`) and on
PostgreSQL. Each case failed before the shared layer refused it (docs/limits.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import requests

from shared.auth import mint_token
from shared.routes import SERVICES
from shared.testing.fixtures import fresh_postgres_database

from .schemathesis_run import SECRET, running_platform

pytestmark = pytest.mark.integration


class Caller:
    def __init__(self, base: str) -> None:
        self.base = base
        token = mint_token(SECRET, brands=[{"id": 9, "name": "Humari", "role": "admin"}])
        self.headers = {"Authorization": f"Bearer {token}", "X-Brand-ID": "9"}

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def raw(
        self, method: str, path: str, body: str, content_type: str = "application/json"
    ) -> requests.Response:
        return self(method, path, data=body.encode("utf-8"), headers={"Content-Type": content_type})


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def call(request: pytest.FixtureRequest) -> Iterator[Caller]:
    with ExitStack() as stack:
        urls = None
        if request.param == "postgres":
            urls = {name: stack.enter_context(fresh_postgres_database()) for name in SERVICES}
        yield Caller(stack.enter_context(running_platform(urls)))


def refused(response: requests.Response, status: int = 400, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["detail"] and body["error_code"]
    if code:
        assert body["error_code"] == code, body
    return body


@pytest.mark.parametrize("brand", ["--9", "²", "9" * 30, "9 9", "0x9"])
def test_brand_header_that_is_not_an_ascii_bigint(call: Caller, brand: str) -> None:
    headers = {"X-Brand-ID": brand.encode("utf-8").decode("latin-1")}
    refused(call("GET", "/tasks/", headers=headers), 400, "BRAND_REQUIRED")


@pytest.mark.parametrize(
    "path",
    [
        "/tasks/18446744073709551616/",
        "/tasks/monitoring/metrics/9223372036854775808/",
        "/tasks/persistent-jobs/persistent-jobs/99999999999999999999999/",
        "/tasks/scheduled/periodic-tasks/9223372036854775808/",
    ],
)
def test_ids_beyond_64_bits_are_not_found(call: Caller, path: str) -> None:
    refused(call("GET", path), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "query",
    [
        "page=100000000000000000000",
        "retry_count__gte=470516741792888527421998968921391104",
        "created_after=9999-12-31T23:59:59Z",
        "search=a%00b",
    ],
)
def test_filters_out_of_range(call: Caller, query: str) -> None:
    refused(call("GET", f"/tasks/?{query}"), 400, "VALIDATION_ERROR")


def test_persistence_id_lists_take_ascii_digits_only(call: Caller) -> None:
    refused(call("GET", "/tasks/persistent-jobs/checkpoints/?persistent_job=²"), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "body, reason",
    [
        ('{"task_type": "x", "context_data": {"a": NaN}}', "NaN"),
        ('{"task_type": "x", "context_data": {"a": -Infinity}}', "Infinity"),
        ('{"task_type": "x", "context_data": {"a": 1e400}}', "too large"),
        ('{"task_type": "x", "context_data": {"a": 100000000000000000000}}', "64-bit"),
        ('{"task_type": "x", "description": "\\ud800"}', "surrogate"),
        ('{"task_type": "x", "context_data": {"k\\udfff": 1}}', "surrogate"),
        ('{"task_type": "x", "description": "a\\u0000b"}', "NUL"),
        ("[" * 50_000 + "]" * 50_000, "deeper"),
        ('{"task_type": "x", "context_data": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", "deeper"),
        ("{nope", "not valid JSON"),
    ],
)
def test_bodies_that_cannot_be_stored_as_json(call: Caller, body: str, reason: str) -> None:
    error = refused(call.raw("POST", "/tasks/", body), 400, "MALFORMED_JSON")
    assert reason in error["detail"]


def test_what_is_allowed_still_passes(call: Caller) -> None:
    nested = '{"a": ' * 20 + '"\\ud83d\\ude00"' + "}" * 20
    body = '{"task_type": "example.noop", "description": "caf\\u00e9 \\ud83d\\ude00", "context_data": %s}'
    created = call.raw("POST", "/tasks/", body % nested)
    assert created.status_code == 201, created.text
    assert created.json()["description"] == "café 😀"


@pytest.mark.parametrize(
    "field, value",
    [
        ("scheduled_for", "9999-12-31T23:59:59Z"),
        ("scheduled_for", "0001-01-01T00:00:00Z"),
    ],
)
def test_body_fields_out_of_range(call: Caller, field: str, value: Any) -> None:
    body = json.dumps({"task_type": "example.noop", field: value})
    refused(call.raw("POST", "/tasks/", body), 400, "VALIDATION_ERROR")


def test_wrong_content_type(call: Caller) -> None:
    refused(call.raw("POST", "/tasks/", "task_type=x", "application/x-www-form-urlencoded"), 415)


def test_date_arithmetic_past_the_calendar_is_a_400(call: Caller) -> None:
    refused(
        call.raw("POST", "/tasks/persistent-jobs/persistent-jobs/cleanup-old/", '{"days_old": 3465293}'),
        400,
        "VALIDATION_ERROR",
    )


def test_a_value_over_its_column_is_a_400_not_a_500(call: Caller) -> None:
    """Idempotency-Key is a VARCHAR(200): PostgreSQL refuses a longer one (a "data exception")."""
    response = call(
        "POST", "/tasks/", json={"task_type": "example.noop"}, headers={"Idempotency-Key": "k" * 5000}
    )
    assert response.status_code in (201, 400, 422), response.text  # SQLite has no VARCHAR limit
    assert response.headers["Content-Type"].startswith("application/json")
