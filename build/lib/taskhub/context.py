"""The `ctx` a handler receives, and the exceptions that end an attempt early.

It lives in the handler's child process: `progress()` goes to the worker process through a pipe,
`checkpoint()` goes to the persistence service over HTTP (durable before it returns), and the stop
signal is an event the worker process sets on cancel, revoke or timeout."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

PROGRESS_INTERVAL = 0.1  # seconds


class TaskStopped(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a handler by ctx calls when the attempt must end now (never retried)."""


class TaskCancelled(TaskStopped):
    """The task was cancelled (or this attempt revoked, or it timed out): stop now."""


class TaskPaused(TaskStopped):
    """The persistent job was paused by its owner: stop after the checkpoint just saved."""


class NonRetryableError(Exception):
    """Raise (or subclass) to fail the task at once, whatever retries it has left."""


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


class CheckpointStore(Protocol):
    """Where checkpoints of a persistent job go (the persistence service in production)."""

    def save_checkpoint(self, body: dict[str, Any]) -> dict[str, Any]: ...


class TaskContext:
    """What a handler knows about its attempt and how it talks back. One per attempt."""

    def __init__(
        self,
        message: dict[str, Any],
        report: Callable[[str, dict[str, Any]], None],
        stop: StopFlag,
        *,
        worker_name: str = "",
        job_id: int | None = None,
        store: CheckpointStore | None = None,
        resume_checkpoint: dict[str, Any] | None = None,
    ) -> None:
        self._message, self._report, self._stop = message, report, stop
        self._store, self.job_id = store, job_id
        self.worker_name = worker_name
        self.resume_checkpoint = resume_checkpoint
        self.tokens_used = 0
        self.cost_usd = 0.0
        self.api_calls_count = 0
        self.log = logging.getLogger(f"taskhub.task.{message.get('task_type')}")
        self._last_step: str | None = None
        self._last_report = float("-inf")

    # ---- what this attempt is

    @property
    def id(self) -> int:
        return int(self._message["id"])

    @property
    def task_id(self) -> str:
        return str(self._message["task_id"])

    @property
    def brand_id(self) -> int:
        return int(self._message["brand_id"])

    @property
    def task_type(self) -> str:
        return str(self._message["task_type"])

    @property
    def attempt(self) -> int:
        """Core's attempt number (1 for the first run; each dispatch adds one)."""
        return int(self._message.get("attempt") or 1)

    @property
    def retry_count(self) -> int:
        """How many retries (automatic or manual) came before this attempt."""
        return int(self._message.get("retry_count") or 0)

    @property
    def max_retries(self) -> int:
        return int(self._message.get("max_retries") or 0)

    @property
    def context_data(self) -> dict[str, Any]:
        return dict(self._message.get("context_data") or {})

    @property
    def resume_from(self) -> Any:
        """The data of the checkpoint to continue from, or None for a fresh start."""
        return None if self.resume_checkpoint is None else self.resume_checkpoint.get("checkpoint_data")

    # ---- stopping

    @property
    def should_stop(self) -> bool:
        """True once the task is cancelled, the attempt revoked or timed out: return soon."""
        return self._stop.is_set()

    def stop_requested(self) -> bool:
        return self.should_stop

    def _raise_if_stopped(self) -> None:
        if self._stop.is_set():
            raise TaskCancelled("stop requested")

    # ---- reporting

    def progress(self, percentage: float, step: str | None = None) -> None:
        """Report progress (0-100) and the current step; a cancellation point. Cheap to call
        often: reports of the same step closer than 0.1 s apart are skipped (the last one
        before a result does not matter: completion sets 100)."""
        self._raise_if_stopped()
        now = time.monotonic()
        if step == self._last_step and now - self._last_report < PROGRESS_INTERVAL:
            return
        self._last_step, self._last_report = step, now
        self._report("progress", {"progress_percentage": max(0, min(100, int(percentage))), "step": step})

    def checkpoint(
        self,
        step_name: str,
        data: dict[str, Any],
        is_recovery_point: bool = True,
        progress: float | None = None,
    ) -> dict[str, Any]:
        """Save a checkpoint of this persistent job; it is durable when this returns. A
        cancellation point, and where a pause takes effect (raises TaskPaused / TaskCancelled)."""
        self._raise_if_stopped()
        if self._store is None or self.job_id is None:
            raise RuntimeError(
                f"{self.task_type} is not persistent: declare it with @task(..., persistent=True)"
            )
        saved = self._store.save_checkpoint(
            {
                "persistent_job": self.job_id,
                "step_name": step_name,
                "checkpoint_data": data,
                "is_recovery_point": is_recovery_point,
                "progress_percentage": None if progress is None else max(0, min(100, int(progress))),
            }
        )
        if progress is not None:
            self._report("progress", {"progress_percentage": int(progress), "step": step_name})
        control = saved.get("control", "continue")
        if control == "pause":
            raise TaskPaused(f"paused after checkpoint {step_name!r}")
        if control == "cancel":
            raise TaskCancelled(f"cancelled after checkpoint {step_name!r}")
        return saved

    # ---- counters (reported in the attempt's metrics)

    def add_tokens(self, n: int) -> None:
        self.tokens_used += int(n)

    def add_cost(self, usd: float) -> None:
        self.cost_usd += float(usd)

    def add_api_calls(self, n: int = 1) -> None:
        self.api_calls_count += int(n)

    def counters(self) -> dict[str, Any]:
        return {
            "tokens_used": self.tokens_used,
            "cost_usd": round(self.cost_usd, 6),
            "api_calls_count": self.api_calls_count,
        }
