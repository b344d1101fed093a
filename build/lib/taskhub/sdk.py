"""The handler SDK: what a handler author imports. Small on purpose (Celery-sized).

    from taskhub.sdk import task, RetryPolicy

    @task("reports.export", priority="high", timeout_minutes=30, max_retries=5,
          retry=RetryPolicy(base=2, cap=600, non_retryable=(ValueError,)))
    def export(ctx, report_id, fmt="csv"):
        for i, chunk in enumerate(chunks(report_id)):
            ctx.progress(100 * i // n, step=f"chunk {i}")   # also a cancellation point
            ctx.add_api_calls(1)
        return {"url": "..."}

A handler is a plain function `handler(ctx, **context_data) -> dict` that runs in a worker's child
process. `ctx` is a `TaskContext`. Modules of handlers are loaded by
the worker from `TASKHUB_HANDLER_MODULES` (comma-separated); the examples are always loaded.

This module ships in the `taskhub` distribution (`pip install .` at the repository's root) with
the client and the command, without the services: a handler package depends on it alone. `services.worker.sdk` re-exports it for the worker and older imports.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .context import NonRetryableError, TaskCancelled, TaskContext, TaskPaused, TaskStopped

__all__ = [
    "NonRetryableError",
    "RetryPolicy",
    "TaskCancelled",
    "TaskContext",
    "TaskPaused",
    "TaskStopped",
    "registry",
    "task",
]

PRIORITIES = ("critical", "high", "normal", "low")
TYPE_NAME = re.compile(r"[a-z0-9_.-]{1,100}")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
    Jitter"): the n-th retry waits uniform(0, min(cap, base * factor**n)) seconds."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: bool = True
    non_retryable: tuple[type[BaseException], ...] = ()

    def delay(self, retry_count: int) -> float:
        ceiling = min(self.cap, self.base * self.factor ** max(0, retry_count))
        return random.uniform(0, ceiling) if self.jitter else ceiling

    def retryable(self, error: BaseException) -> bool:
        return not isinstance(error, (NonRetryableError, *self.non_retryable))


@dataclass(frozen=True)
class TaskSpec:
    name: str
    fn: Callable[..., Any]
    priority: str = "normal"
    timeout_minutes: int | None = None  # None: the task's own (core's default, 60)
    max_retries: int | None = None  # None: the task's own (core's default, 3)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    persistent: bool = False

    def describe(self) -> dict[str, Any]:
        """The type as workers announce it in heartbeats (core's GET /tasks/types/)."""
        return {
            "name": self.name,
            "queue": self.priority,
            "priority": self.priority,
            "timeout_minutes": self.timeout_minutes,
            "max_retries": self.max_retries,
            "persistent": self.persistent,
        }


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, TaskSpec] = {}

    def add(self, spec: TaskSpec) -> None:
        existing = self._specs.get(spec.name)
        if existing is not None and existing.fn is not spec.fn:
            # two handlers for one type would make behaviour depend on import order
            qualname = f"{existing.fn.__module__}.{existing.fn.__qualname__}"
            raise ValueError(f"task type {spec.name!r} is already registered by {qualname}")
        self._specs[spec.name] = spec

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)

    def specs(self) -> list[TaskSpec]:
        return sorted(self._specs.values(), key=lambda s: s.name)


# The process-wide registry the decorator fills (one per process, like Celery's default app).
registry = Registry()


def task(
    name: str,
    *,
    priority: str = "normal",
    timeout_minutes: int | None = None,
    max_retries: int | None = None,
    retry: RetryPolicy | None = None,
    persistent: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `handler(ctx, **context_data) -> dict` for the task type `name`.

    `priority` is the type's default queue, `timeout_minutes` and `max_retries` its defaults (a
    task may set its own), `retry` its backoff and non-retryable exceptions, `persistent` makes
    every task of the type a persistent job (checkpoints, pause, resume)."""
    if not TYPE_NAME.fullmatch(name):
        raise ValueError(f"task type {name!r} must match {TYPE_NAME.pattern}")
    if priority not in PRIORITIES:
        raise ValueError(f"priority must be one of {PRIORITIES}")
    if timeout_minutes is not None and not 1 <= timeout_minutes <= 10080:
        raise ValueError("timeout_minutes must be within 1..10080")
    if max_retries is not None and not 0 <= max_retries <= 20:
        raise ValueError("max_retries must be within 0..20")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        registry.add(
            TaskSpec(name, fn, priority, timeout_minutes, max_retries, retry or RetryPolicy(), persistent)
        )
        return fn

    return register
