"""What a use case refuses, in the domain's words (Cosmic Python's domain exceptions).

Service layers, event handlers and the rules they call raise these and know nothing of HTTP.
Each carries what a client reads: the public `error_code`, the sentence (`detail`) and the
fields that join the error body (`field_errors`, and `extra` such as `current_status`). The HTTP
status of each class is decided in one place, `shared.errors.STATUS_OF`, by the one JSON error
handler; an event handler that catches one logs its detail instead.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """The base of every refusal; `default_code` is the error_code of the class."""

    default_code = "ERROR"

    def __init__(
        self,
        detail: str,
        error_code: str | None = None,
        *,
        field_errors: dict[str, list[str]] | None = None,
        retry_after: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.error_code = error_code or self.default_code
        self.field_errors = field_errors
        self.retry_after = retry_after  # seconds after which the same request may succeed
        self.extra = extra


class NotFound(DomainError):
    """No such object in the caller's brand. Another brand's object is refused in exactly the
    same words as a missing one: existence must not leak."""

    default_code = "NOT_FOUND"

    def __init__(self, what: str = "Object", error_code: str | None = None) -> None:
        super().__init__(f"{what} not found or access denied", error_code)


class InvalidField(DomainError):
    """One field of the request breaks a rule its schema cannot check (a name already taken, a
    date in the past, a cron expression that never fires)."""

    default_code = "VALIDATION_ERROR"

    def __init__(
        self, field: str, message: str, error_code: str | None = None, *, detail: str | None = None
    ) -> None:
        # `detail`: the error's sentence, when it says more than the field's message
        super().__init__(detail or message, error_code, field_errors={field: [message]})
        self.field, self.message = field, message


class ValidationFailed(DomainError):
    """Several fields at once (a bulk create names each element's), as {"field": [messages]}."""

    default_code = "VALIDATION_ERROR"

    def __init__(self, field_errors: dict[str, list[str]], error_code: str | None = None) -> None:
        super().__init__("Validation failed.", error_code, field_errors=field_errors)


class Conflict(DomainError):
    """The request is valid but the object's state refuses it now (a running job cannot be
    deleted, a checkpoint is corrupted); `extra` says the state (current_status...)."""

    def __init__(self, error_code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, error_code, **extra)


class InvalidTransition(Conflict):
    """A task's status does not allow the change (the status table, shared/task_states.py)."""

    def __init__(self, detail: str, current_status: str, allowed_statuses: list[str] | None = None) -> None:
        extra: dict[str, Any] = {"current_status": current_status}
        if allowed_statuses is not None:
            extra["allowed_statuses"] = allowed_statuses
        super().__init__("INVALID_STATUS_TRANSITION", detail, **extra)


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key used within its lifetime for another request body."""

    default_code = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self, field_errors: dict[str, list[str]]) -> None:
        super().__init__(
            "An Idempotency-Key was reused with a different request body.", field_errors=field_errors
        )


class Forbidden(DomainError):
    """The caller may use this endpoint, but not on this object (a shared worker's record)."""

    default_code = "PERMISSION_DENIED"


class QuotaExceeded(DomainError):
    """The brand used up an allowance; the same request may succeed after `retry_after` s."""

    default_code = "RATE_LIMITED"

    def __init__(self, detail: str, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)


class Unavailable(DomainError):
    """Another service the use case needs did not answer; nothing was changed, retry."""

    default_code = "SERVICE_UNAVAILABLE"
