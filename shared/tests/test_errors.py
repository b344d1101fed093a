"""The one error handler: what the domain refuses (shared.domain_errors) leaves as the platform's
error body with the status of its class (shared.errors.STATUS_OF), and nothing else decides it."""

from __future__ import annotations

import inspect
from typing import Any, NoReturn

import pytest
from flask import Flask

from shared import domain_errors
from shared.domain_errors import (
    Conflict,
    DomainError,
    Forbidden,
    IdempotencyKeyReused,
    InvalidField,
    InvalidTransition,
    NotFound,
    QuotaExceeded,
    Unavailable,
    ValidationFailed,
)
from shared.errors import STATUS_OF, ApiError, register_error_handlers, status_of, validation_error

DOMAIN_CLASSES = [
    cls
    for _, cls in inspect.getmembers(domain_errors, inspect.isclass)
    if issubclass(cls, DomainError) and cls.__module__ == domain_errors.__name__
]


def _answer(error: Exception) -> Any:
    app = Flask(__name__)
    register_error_handlers(app)

    @app.get("/")
    def refuse() -> NoReturn:
        raise error

    return app.test_client().get("/")


@pytest.mark.parametrize("cls", [c for c in DOMAIN_CLASSES if c is not DomainError], ids=lambda c: c.__name__)
def test_every_refusal_has_its_own_status(cls):
    """A class answers through its own row or a specific ancestor's (InvalidTransition: Conflict's),
    never only through the catch-all of the base class."""
    mapped = next(ancestor for ancestor in cls.__mro__ if ancestor in STATUS_OF)
    assert mapped is not DomainError


@pytest.mark.parametrize(
    ("error", "status", "body", "headers"),
    [
        (
            NotFound("Task", "TASK_NOT_FOUND"),
            404,
            {"detail": "Task not found or access denied", "error_code": "TASK_NOT_FOUND"},
            {},
        ),
        (NotFound("Page"), 404, {"detail": "Page not found or access denied", "error_code": "NOT_FOUND"}, {}),
        (
            InvalidField("scheduled_for", "scheduled_for must be in the future.", "SCHEDULE_IN_PAST"),
            400,
            {
                "detail": "scheduled_for must be in the future.",
                "error_code": "SCHEDULE_IN_PAST",
                "field_errors": {"scheduled_for": ["scheduled_for must be in the future."]},
            },
            {},
        ),
        (
            InvalidField("Last-Event-ID", "Expected a position.", detail="Not a position this stream gave."),
            400,
            {
                "detail": "Not a position this stream gave.",
                "error_code": "VALIDATION_ERROR",
                "field_errors": {"Last-Event-ID": ["Expected a position."]},
            },
            {},
        ),
        (
            ValidationFailed({"tasks.1.task_type": ["No worker serves 'x'."]}),
            400,
            {
                "detail": "Validation failed.",
                "error_code": "VALIDATION_ERROR",
                "field_errors": {"tasks.1.task_type": ["No worker serves 'x'."]},
            },
            {},
        ),
        (
            Forbidden("This worker is shared infrastructure."),
            403,
            {"detail": "This worker is shared infrastructure.", "error_code": "PERMISSION_DENIED"},
            {},
        ),
        (
            Conflict(
                "JOB_NOT_RESUMABLE",
                "A running job cannot be resumed.",
                current_status="running",
                can_resume=True,
            ),
            409,
            {
                "detail": "A running job cannot be resumed.",
                "error_code": "JOB_NOT_RESUMABLE",
                "current_status": "running",
                "can_resume": True,
            },
            {},
        ),
        (
            InvalidTransition("A completed task cannot become pending.", "completed", ["pending"]),
            409,
            {
                "detail": "A completed task cannot become pending.",
                "error_code": "INVALID_STATUS_TRANSITION",
                "current_status": "completed",
                "allowed_statuses": ["pending"],
            },
            {},
        ),
        (
            InvalidTransition("A running task cannot be deleted.", "running"),
            409,
            {
                "detail": "A running task cannot be deleted.",
                "error_code": "INVALID_STATUS_TRANSITION",
                "current_status": "running",
            },
            {},
        ),
        (
            IdempotencyKeyReused({"idempotency_key": ["Used for a different request."]}),
            422,
            {
                "detail": "An Idempotency-Key was reused with a different request body.",
                "error_code": "IDEMPOTENCY_KEY_REUSED",
                "field_errors": {"idempotency_key": ["Used for a different request."]},
            },
            {},
        ),
        (
            QuotaExceeded("This brand already has 5 unfinished tasks.", retry_after=30, active_tasks_limit=5),
            429,
            {
                "detail": "This brand already has 5 unfinished tasks.",
                "error_code": "RATE_LIMITED",
                "active_tasks_limit": 5,
            },
            {"Retry-After": "30"},
        ),
        (
            Unavailable("core is unavailable; try again shortly."),
            503,
            {"detail": "core is unavailable; try again shortly.", "error_code": "SERVICE_UNAVAILABLE"},
            {},
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, DomainError) else None,
)
def test_a_refusal_leaves_as_the_error_body(error, status, body, headers):
    response = _answer(error)
    assert response.status_code == status == status_of(error)
    assert response.get_json() == body
    for name, value in headers.items():
        assert response.headers[name] == value
    if not headers:
        assert "Retry-After" not in response.headers


def test_a_service_refusal_is_the_same_as_the_http_layers():
    """The HTTP layer's own ApiError and a domain refusal of the same meaning answer alike."""
    domain = _answer(NotFound("Task", "TASK_NOT_FOUND"))
    http = _answer(ApiError(404, "TASK_NOT_FOUND", "Task not found or access denied"))
    assert (domain.status_code, domain.data) == (http.status_code, http.data)


def test_nested_marshmallow_messages_are_flattened():
    error = validation_error(
        {"context_data": {"depth": ["Not a valid integer."]}, "tasks": {0: {"x": ["bad"]}}}
    )
    assert isinstance(error, ValidationFailed)
    assert error.field_errors == {"context_data.depth": ["Not a valid integer."], "tasks.0.x": ["bad"]}


def test_a_refusal_of_an_unmapped_subclass_is_a_client_error():
    class Refused(DomainError):
        pass

    response = _answer(Refused("No.", "SOMETHING_REFUSED"))
    assert response.status_code == 400
    assert response.get_json() == {"detail": "No.", "error_code": "SOMETHING_REFUSED"}
