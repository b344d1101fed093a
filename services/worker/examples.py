"""The example task types of docs/api.md §0, registered in every worker: a fresh install does real work
and every behaviour (progress, failure, retries, checkpoints, pause, resume) can be tried by hand."""

from __future__ import annotations

import time
from typing import Any

from .sdk import TaskCancelled, TaskContext, task


def _nap(ctx: TaskContext, seconds: float) -> None:
    """Sleep, but wake up for a cancel (a well-behaved handler never makes the worker kill it)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if ctx.should_stop:
            raise TaskCancelled("stop requested")
        time.sleep(min(left, 0.05))


@task("example.noop")
def noop(ctx: TaskContext, **_: Any) -> dict[str, Any]:
    return {}


@task("example.sleep")
def sleep(ctx: TaskContext, seconds: float = 1.0, steps: int = 1, **_: Any) -> dict[str, Any]:
    steps = max(1, int(steps))
    for step in range(1, steps + 1):
        _nap(ctx, float(seconds) / steps)
        ctx.progress(100 * step / steps, step=f"step {step}/{steps}")
    return {"slept": seconds}


@task("example.fail", max_retries=0)
def fail(ctx: TaskContext, message: str = "example.fail always fails", **_: Any) -> dict[str, Any]:
    raise RuntimeError(message)


@task("example.flaky")
def flaky(ctx: TaskContext, fail_times: int = 1, **_: Any) -> dict[str, Any]:
    attempts = ctx.retry_count + 1  # retries, not deliveries: a lost worker is not a failure
    if attempts <= int(fail_times):
        raise RuntimeError(f"example.flaky: failing attempt {attempts} of {fail_times}")
    return {"attempts": attempts}


@task("example.batch", persistent=True)
def batch(
    ctx: TaskContext, items: int = 100, batch_size: int = 10, delay: float = 0.1, **_: Any
) -> dict[str, Any]:
    """Processes `items` items in batches of `batch_size`, `delay` seconds per batch, with a
    checkpoint after every batch. Resumes after the newest checkpoint. `processed_twice` counts
    items done again at an index the resumed checkpoint had already passed (its high-water mark)."""
    items, batch_size = int(items), max(1, int(batch_size))
    state = ctx.resume_from or {}
    next_item = int(state.get("next_item", 0))
    high_water = int(state.get("high_water", next_item))
    processed_twice = int(state.get("processed_twice", 0))
    number = int(state.get("batches", 0))
    while next_item < items:
        end = min(items, next_item + batch_size)
        processed_twice += max(0, min(end, high_water) - next_item)
        _nap(ctx, float(delay))
        next_item, number = end, number + 1
        high_water = max(high_water, next_item)
        ctx.checkpoint(
            f"batch {number}",
            {
                "next_item": next_item,
                "high_water": high_water,
                "processed_twice": processed_twice,
                "batches": number,
                "processed_range": [0, next_item],
            },
            progress=100 * next_item / items if items else 100,
        )
    return {"processed": items, "processed_twice": processed_twice}
