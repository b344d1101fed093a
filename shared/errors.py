"""The one error format of the platform: {"detail", "error_code", "field_errors"?, ...}.

Every error leaves through `error_response`: what the domain refuses (shared.domain_errors, given
its HTTP status here, in `STATUS_OF`), the HTTP layer's own ApiErrors (authentication, brand,
body format), the framework's 404/405/413/415, webargs validation errors and unexpected
exceptions (logged with the request id, answered as a 500 without internals).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, jsonify
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from .domain_errors import (
    Conflict,
    DomainError,
    Forbidden,
    IdempotencyKeyReused,
    InvalidField,
    NotFound,
    QuotaExceeded,
    Unavailable,
    ValidationFailed,
)

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "AUTHENTICATION_FAILED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
    504: "GATEWAY_TIMEOUT",
}


# What the domain refuses -> the status a client reads; a subclass answers as its nearest mapped
# ancestor (InvalidTransition is a Conflict). The service layers never see these numbers.
STATUS_OF: dict[type[DomainError], int] = {
    DomainError: 400,  # a refusal of no narrower class is still the request's fault
    InvalidField: 400,
    ValidationFailed: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    IdempotencyKeyReused: 422,
    QuotaExceeded: 429,
    Unavailable: 503,
}


class ApiError(Exception):
    """An error of the HTTP layer itself (a token, a brand header, a body's format), with its
    status. `extra` keys join the body (current_status, allowed_statuses...)."""

    def __init__(
        self,
        status: int,
        error_code: str,
        detail: str,
        field_errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.error_code, self.detail = status, error_code, detail
        self.field_errors, self.headers, self.extra = field_errors, headers or {}, extra

    def body(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"detail": self.detail, "error_code": self.error_code}
        if self.field_errors is not None:
            payload["field_errors"] = self.field_errors
        payload.update(self.extra)
        return payload


def validation_error(field_errors: dict[str, Any]) -> ValidationFailed:
    """marshmallow's or webargs' messages, as the domain's refusal of several fields."""
    return ValidationFailed(flatten_messages(field_errors))


def status_of(error: DomainError) -> int:
    return next(STATUS_OF[cls] for cls in type(error).__mro__ if cls in STATUS_OF)


def from_domain(error: DomainError) -> ApiError:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return ApiError(
        status_of(error),
        error.error_code,
        error.detail,
        field_errors=error.field_errors,
        headers=headers,
        **error.extra,
    )


def flatten_messages(messages: Any) -> dict[str, list[str]]:
    """marshmallow's nested messages -> {"field": ["message", ...]} (nested keys dotted)."""
    out: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out.setdefault(prefix or "_schema", []).extend(value)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(f"{prefix}.{index}", inner)
        else:
            out.setdefault(prefix or "_schema", []).append(str(value))

    walk("", messages)
    return out


def error_response(error: ApiError) -> Any:
    response = jsonify(error.body())
    response.status_code = error.status
    for key, value in error.headers.items():
        response.headers[key] = value
    return response


def from_http_exception(error: HTTPException) -> ApiError:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    if status == 422 or (status == 400 and "messages" in data):
        # webargs: {"json": {"priority": [...]}, "query": {...}} -> field names only
        messages = data.get("messages", {})
        merged: dict[str, Any] = {}
        for location_errors in messages.values():
            if isinstance(location_errors, dict):
                merged.update(location_errors)
        return from_domain(validation_error(merged))
    detail = {
        404: "The requested URL was not found.",
        405: "Method not allowed on this URL.",
        413: "Request body too large.",
        415: "Content-Type must be application/json.",
    }.get(status, error.description or error.name)
    headers = {}
    if status == 405 and hasattr(error, "valid_methods") and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    return ApiError(status, HTTP_CODES.get(status, "ERROR"), str(detail), headers=headers)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(DomainError, lambda e: error_response(from_domain(e)))
    app.register_error_handler(HTTPException, lambda e: error_response(from_http_exception(e)))
    app.register_error_handler(OverflowError, _out_of_range)
    app.register_error_handler(DataError, _out_of_range)
    app.register_error_handler(Exception, _unexpected)


def _out_of_range(error: Exception) -> Any:
    """A value the schemas let through but that does not fit: date arithmetic past year 9999, a
    number over an INTEGER column, a string over a VARCHAR (the database's "data exception"
    class). The client's input caused it, so it is a 400; the database's words never leave."""
    log.warning(
        "value out of range: %s", type(error).__name__, extra={"request_id": getattr(g, "request_id", None)}
    )
    return error_response(
        ApiError(400, "VALIDATION_ERROR", "A value in the request is out of range for its field.")
    )


def _unexpected(error: Exception) -> Any:
    if isinstance(error, HTTPException):
        return error_response(from_http_exception(error))
    from .db import unreachable

    if unreachable(error):
        # the service's database is away (restarting, failing over): nothing was written, retry
        log.warning("database unreachable", extra={"request_id": getattr(g, "request_id", None)})
        return error_response(
            ApiError(
                503,
                "SERVICE_UNAVAILABLE",
                "The service cannot reach its database; retry shortly.",
                headers={"Retry-After": "2"},
            )
        )
    log.exception("unhandled error", extra={"request_id": getattr(g, "request_id", None)})
    return error_response(ApiError(500, "INTERNAL_ERROR", "An unexpected error occurred; it was logged."))
