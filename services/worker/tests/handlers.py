"""Test-only task types, loaded by the tests' workers through TASKHUB_HANDLER_MODULES (the same
way users register their own handler modules)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil

from services.worker.sdk import RetryPolicy, TaskContext, task


@task("test.stubborn", max_retries=0)
def stubborn(ctx: TaskContext, seconds: float = 60, **_: Any) -> dict[str, Any]:
    """Ignores every stop request: only killing its process stops it."""
    time.sleep(float(seconds))
    return {"slept": seconds}


@task("test.timeout_once", retry=RetryPolicy(base=0.2, cap=0.5))
def timeout_once(ctx: TaskContext, seconds: float = 60, **_: Any) -> dict[str, Any]:
    """Hangs (deaf to stop requests) on its first attempt, succeeds on the retry."""
    if ctx.retry_count == 0:
        time.sleep(float(seconds))
    return {"attempt": ctx.attempt, "retry_count": ctx.retry_count}


@task("test.poison", priority="low")
def poison(ctx: TaskContext, **_: Any) -> dict[str, Any]:
    """Kills the worker process that runs it, every time (a poison message)."""
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "services.worker" in cmdline and ctx.worker_name in cmdline:
            os.kill(process.pid, signal.SIGKILL)
    time.sleep(30)
    return {}


@task("test.crash")
def crash(ctx: TaskContext, **_: Any) -> dict[str, Any]:
    """Its own process dies (a segfault, an OOM kill): the worker reports it and lives on."""
    os._exit(3)


@task("test.metered")
def metered(ctx: TaskContext, **_: Any) -> dict[str, Any]:
    ctx.add_tokens(120)
    ctx.add_cost(0.25)
    ctx.add_api_calls(3)
    return {"ok": True}
