"""A task's statuses, the moves between them and its priorities, written once for every service.

Core is the only writer of a task's status (every change goes through its `transition`); the
other services follow core's task events and use these names and sets to read them."""

from __future__ import annotations

PENDING, RUNNING, PAUSED, RETRYING = "pending", "running", "paused", "retrying"
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"

STATUSES = (PENDING, RUNNING, PAUSED, RETRYING, COMPLETED, FAILED, CANCELLED)
FINAL = frozenset({COMPLETED, FAILED, CANCELLED})
ACTIVE = tuple(s for s in STATUSES if s not in FINAL)

# from -> the statuses it may move to (anything else is 409 INVALID_STATUS_TRANSITION)
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({RUNNING, PAUSED, CANCELLED, FAILED}),
    # running -> pending: its worker was lost and the attempt is dispatched again
    RUNNING: frozenset({COMPLETED, FAILED, RETRYING, CANCELLED, PAUSED, PENDING}),
    RETRYING: frozenset({RUNNING, CANCELLED, FAILED, PENDING}),
    PAUSED: frozenset({PENDING, CANCELLED}),
    FAILED: frozenset({PENDING}),  # manual retry or a resumed job
    CANCELLED: frozenset({PENDING}),  # manual retry or a resumed job
    COMPLETED: frozenset(),
}

RETRYABLE_FROM = tuple(s for s, targets in TRANSITIONS.items() if PENDING in targets and s in FINAL)
CANCELLABLE_FROM = tuple(s for s, targets in TRANSITIONS.items() if CANCELLED in targets)

# a task type's name, as handlers register it and tasks, schedules and alert rules name it
TASK_TYPE_PATTERN = r"^[a-z0-9_.-]{1,100}$"
PRIORITIES = ("low", "normal", "high", "critical")  # lowest first: a priority's rank is its index
PRIORITY_RANK = {p: rank for rank, p in enumerate(PRIORITIES)}
HIGHEST_FIRST = tuple(reversed(PRIORITIES))


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS[current]
