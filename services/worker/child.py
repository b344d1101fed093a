"""The code that runs in a worker's child process: one attempt at a time, for as long as the worker
lives. It imports the handler modules once, then loops: receive an attempt, run its handler,
send back the outcome. Everything it says goes through its pipe as (kind, payload) tuples:

- ("progress", {"progress_percentage", "step"})
- ("outcome", {"kind": "completed" | "failed" | "paused" | "cancelled", ...})

The worker kills this process to stop a handler for real (timeout, forced cancel); a second pipe,
the lifeline, makes the child exit when the worker process itself dies (even by SIGKILL)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import logging
import os
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import psutil

from .context import NonRetryableError, TaskCancelled, TaskContext, TaskPaused, TaskStopped
from .persistence_client import PersistenceClient
from .sdk import Registry, registry

log = logging.getLogger(__name__)

DEFAULT_MODULES = ("services.worker.examples",)


def load_handlers(modules: tuple[str, ...] | list[str]) -> Registry:
    for name in (*DEFAULT_MODULES, *modules):
        importlib.import_module(name)
    return registry


def serve(conn: Connection, lifeline: Connection, stop: Any, modules: list[str]) -> None:
    """The child's main loop (the target of the worker's child processes)."""
    threading.Thread(target=_die_with_parent, args=(lifeline,), daemon=True).start()
    handlers = load_handlers(modules)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(("outcome", run_attempt(job, handlers, conn, stop)))


def _die_with_parent(lifeline: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv()  # the worker never writes: this returns only when its end closes
    os._exit(1)


class _Memory:
    """Peak RSS of this attempt. Linux can reset the process's high-water mark (clear_refs 5), so
    VmHWM is this attempt's peak; elsewhere we keep the highest psutil sample we took."""

    def __init__(self) -> None:
        self.process = _this_process()
        self.peak = 0
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.hwm = True
        except OSError:
            self.hwm = False
        self.sample()

    def sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)

    def peak_mb(self) -> float:
        self.sample()
        if self.hwm:
            try:
                with open("/proc/self/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.peak = max(self.peak, int(line.split()[1]) * 1024)
            except OSError:
                pass
        return round(self.peak / (1024 * 1024), 2)


def run_attempt(job: dict[str, Any], handlers: Registry, conn: Connection, stop: Any) -> dict[str, Any]:
    message = job["message"]
    memory = _Memory()
    cpu_before, wall_before = os.times(), time.monotonic()

    def report(kind: str, payload: dict[str, Any]) -> None:
        memory.sample()
        conn.send((kind, payload))

    client: PersistenceClient | None = None
    ctx: TaskContext | None = None
    try:
        spec = handlers.get(message["task_type"])
        if spec is None:
            raise NonRetryableError(f"no handler for task type {message['task_type']!r}")
        job_id, resume = None, None
        if spec.persistent:
            client = _persistence(job, message)
            job_id, resume = _open_job(client, message, int(job["persistence"].get("delivery", 1)))
        ctx = TaskContext(
            message,
            report,
            stop,
            worker_name=job["worker_name"],
            job_id=job_id,
            store=client,
            resume_checkpoint=resume,
        )
        arguments = _bind(spec.fn, ctx, ctx.context_data)
        result = spec.fn(*arguments.args, **arguments.kwargs)
        outcome: dict[str, Any] = {"kind": "completed", "result": _jsonable_result(result)}
    except TaskPaused as stopped:
        outcome = {"kind": "paused", "reason": str(stopped)}
    except TaskStopped as stopped:
        outcome = {"kind": "cancelled", "reason": str(stopped)}
    except Exception as error:  # noqa: BLE001 - any handler error is an outcome to report
        spec = handlers.get(message["task_type"])
        retryable = spec.retry.retryable(error) if spec else False
        outcome = {
            "kind": "failed",
            "error": f"{type(error).__name__}: {error}"[:10000],
            "traceback": traceback.format_exc()[-20000:],
            "retryable": retryable,
        }
    finally:
        if client is not None:
            client.close()
    cpu_after = os.times()
    elapsed = max(time.monotonic() - wall_before, 1e-6)
    busy = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    outcome["metrics"] = {
        "memory_usage_mb": memory.peak_mb(),
        "cpu_usage_percent": round(100 * busy / elapsed, 2),
        **(ctx.counters() if ctx else {"tokens_used": 0, "cost_usd": 0.0, "api_calls_count": 0}),
    }
    return outcome


@functools.cache
def _this_process() -> psutil.Process:
    return psutil.Process()


@functools.lru_cache(maxsize=256)
def _signature(fn: Any) -> inspect.Signature:
    return inspect.signature(fn)


def _bind(fn: Any, ctx: TaskContext, context_data: dict[str, Any]) -> inspect.BoundArguments:
    """context_data that the handler cannot take is the caller's mistake: retrying cannot fix it."""
    try:
        return _signature(fn).bind(ctx, **context_data)
    except TypeError as error:
        raise NonRetryableError(f"context_data does not fit {fn.__name__}: {error}") from None


def _jsonable_result(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if not isinstance(result, dict):
        result = {"result": result}
    try:
        return json.loads(json.dumps(result))
    except (TypeError, ValueError) as error:
        raise NonRetryableError(f"the handler's result is not JSON: {error}") from None


def _persistence(job: dict[str, Any], message: dict[str, Any]) -> PersistenceClient:
    settings = job["persistence"]
    if not settings.get("token"):
        raise NonRetryableError(
            "persistent task but its message carries no credentials (core holds no machine signing key)"
        )
    return PersistenceClient(
        settings["url"],
        settings["token"],
        int(message["brand_id"]),
        retry_seconds=float(settings.get("retry_seconds", 30)),
    )


def _open_job(
    client: PersistenceClient, message: dict[str, Any], delivery: int
) -> tuple[int, dict[str, Any] | None]:
    answer = client.open_job(
        {
            "base_task": message["id"],
            "task_id": message["task_id"],
            "task_type": message["task_type"],
            "priority": message["priority"],
            "attempt": message.get("attempt"),
            "delivery": delivery,
            "resume": message.get("resume"),
        }
    )
    control = answer.get("control", "run")
    if control == "pause":
        raise TaskPaused("the job is paused")
    if control == "cancel":
        raise TaskCancelled("the job is cancelled")
    return int(answer["job_id"]), answer.get("resume_from")
