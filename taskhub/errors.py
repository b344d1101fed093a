"""What the client raises. Every error the platform answers has the shape of docs/api.md §0
(`{"detail", "error_code", "field_errors"?}`) and becomes the exception class of its `error_code`,
so callers catch `TaskNotFound` or `MaxRetriesExceeded` rather than compare strings. Each class
also derives from the class of its HTTP status family (`NotFound`, `Conflict`, ...), and every one
from `ApiError`."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer of the API: `status`, `error_code`, `detail`, `field_errors`, `body`."""

    status: int = 0
    default_code: str = "ERROR"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        error_code: str | None = None,
        field_errors: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status if status is not None else type(self).status
        self.error_code = error_code or type(self).default_code
        self.field_errors = field_errors or {}
        self.body = body or {}

    def __str__(self) -> str:
        text = f"{self.detail} ({self.status} {self.error_code})"
        if self.field_errors:
            fields = "; ".join(f"{name}: {', '.join(map(str, msgs))}" for name, msgs in self._fields())
            text += f" [{fields}]"
        return text

    def _fields(self) -> list[tuple[str, list[Any]]]:
        return [
            (name, messages if isinstance(messages, list) else [messages])
            for name, messages in sorted(self.field_errors.items())
        ]


# ---- families, by HTTP status


class BadRequest(ApiError):
    status, default_code = 400, "BAD_REQUEST"


class Unauthorized(ApiError):
    status, default_code = 401, "AUTHENTICATION_FAILED"


class Forbidden(ApiError):
    status, default_code = 403, "PERMISSION_DENIED"


class NotFound(ApiError):
    status, default_code = 404, "NOT_FOUND"


class Conflict(ApiError):
    status, default_code = 409, "CONFLICT"


class Unprocessable(ApiError):
    status, default_code = 422, "UNPROCESSABLE"


class TooManyRequests(ApiError):
    status, default_code = 429, "RATE_LIMITED"


class ServerError(ApiError):
    status, default_code = 500, "INTERNAL_ERROR"


# ---- one class per error_code of docs/api.md


class ValidationError(BadRequest):
    default_code = "VALIDATION_ERROR"


class BrandRequired(BadRequest):
    default_code = "BRAND_REQUIRED"


class ScheduleInPast(BadRequest):
    default_code = "SCHEDULE_IN_PAST"


class UnknownTaskType(BadRequest):
    default_code = "UNKNOWN_TASK_TYPE"


class MetricFieldInvalid(BadRequest):
    default_code = "METRIC_FIELD_INVALID"


class ThresholdOutOfRange(BadRequest):
    default_code = "THRESHOLD_OUT_OF_RANGE"


class InvalidCronExpression(BadRequest):
    default_code = "INVALID_CRON_EXPRESSION"


class FrequencyNotSupported(BadRequest):
    default_code = "FREQUENCY_NOT_SUPPORTED"


class TimezoneInvalid(BadRequest):
    default_code = "TIMEZONE_INVALID"


class AuthenticationFailed(Unauthorized):
    default_code = "AUTHENTICATION_FAILED"


class TokenExpired(Unauthorized):
    default_code = "TOKEN_EXPIRED"


class BrandAccessDenied(Forbidden):
    default_code = "BRAND_ACCESS_DENIED"


class PermissionDenied(Forbidden):
    default_code = "PERMISSION_DENIED"


class TaskNotFound(NotFound):
    default_code = "TASK_NOT_FOUND"


class InvalidStatusTransition(Conflict):
    default_code = "INVALID_STATUS_TRANSITION"


class MaxRetriesExceeded(Conflict):
    default_code = "MAX_RETRIES_EXCEEDED"


class TaskAlreadyCompleted(Conflict):
    default_code = "TASK_ALREADY_COMPLETED"


class AlertCooldownActive(Conflict):
    default_code = "ALERT_COOLDOWN_ACTIVE"


class JobNotResumable(Conflict):
    default_code = "JOB_NOT_RESUMABLE"


class CheckpointCorrupted(Conflict):
    default_code = "CHECKPOINT_CORRUPTED"


class InvalidJobState(Conflict):
    default_code = "INVALID_JOB_STATE"


class IdempotencyKeyReused(Unprocessable):
    default_code = "IDEMPOTENCY_KEY_REUSED"


class RateLimited(TooManyRequests):
    default_code = "RATE_LIMITED"


class ServiceUnavailable(ServerError):
    status, default_code = 503, "SERVICE_UNAVAILABLE"


class GatewayTimeout(ServerError):
    status, default_code = 504, "GATEWAY_TIMEOUT"


class PayloadTooLarge(ApiError):
    status, default_code = 413, "PAYLOAD_TOO_LARGE"


class TransportError(ApiError):
    """The platform could not be reached, or answered something that is not the JSON error shape
    (a proxy's HTML page, a dropped connection)."""

    status, default_code = 0, "TRANSPORT_ERROR"


_FAMILIES: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: TooManyRequests,
    503: ServiceUnavailable,
    504: GatewayTimeout,
}


def _codes(family: type[ApiError]) -> dict[str, type[ApiError]]:
    """Every error_code a class below `family` declares, the most specific class winning (a
    family shares its default code with one of its classes: AUTHENTICATION_FAILED)."""
    found: dict[str, type[ApiError]] = {}
    for cls in family.__subclasses__():
        found[cls.default_code] = cls
        found.update(_codes(cls))
    return found


# TRANSPORT_ERROR is this client's own: no answer of the platform carries it
ERRORS_BY_CODE: dict[str, type[ApiError]] = {
    code: cls for code, cls in _codes(ApiError).items() if cls is not TransportError
}


def error_from_response(status: int, body: Any) -> ApiError:
    """The exception for an error answer: by `error_code` first, else by status family."""
    if not isinstance(body, dict) or not isinstance(body.get("detail"), str):
        return TransportError(f"unexpected answer with status {status}", status=status)
    code = str(body.get("error_code") or "")
    cls = ERRORS_BY_CODE.get(code) or _FAMILIES.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(
        body["detail"],
        status=status,
        error_code=code or None,
        field_errors=body.get("field_errors") if isinstance(body.get("field_errors"), dict) else None,
        body=body,
    )


# ---- outcomes of waiting on a task (not HTTP errors)


class TaskOutcomeError(Exception):
    """A task ended in a way that has no result."""

    def __init__(self, task: dict[str, Any], message: str) -> None:
        super().__init__(message)
        self.task = task


class TaskFailedError(TaskOutcomeError):
    """The task failed: `task["error_message"]` says why."""


class TaskCancelledError(TaskOutcomeError):
    """The task was cancelled."""


class WaitTimeout(TimeoutError):
    """The task was not final within the time given to `wait()`."""

    def __init__(self, task: dict[str, Any], timeout: float) -> None:
        super().__init__(f"task {task.get('id')} is still {task.get('status')} after {timeout:g} s")
        self.task = task
