"""The handler SDK now lives in the installable `taskhub` distribution (`taskhub.sdk`), so that a
handler package needs no checkout of the services; this name stays for the worker and for
handlers written against it. One registry: both names are the same objects."""

from taskhub.sdk import (
    PRIORITIES,
    TYPE_NAME,
    NonRetryableError,
    Registry,
    RetryPolicy,
    TaskCancelled,
    TaskContext,
    TaskPaused,
    TaskSpec,
    TaskStopped,
    registry,
    task,
)

__all__ = [
    "PRIORITIES",
    "TYPE_NAME",
    "NonRetryableError",
    "Registry",
    "RetryPolicy",
    "TaskCancelled",
    "TaskContext",
    "TaskPaused",
    "TaskSpec",
    "TaskStopped",
    "registry",
    "task",
]
