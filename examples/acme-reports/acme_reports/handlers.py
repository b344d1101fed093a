"""`acme.report`: build a report of `rows` rows in pages, reporting progress, API calls and cost;
`acme.archive`: a persistent job that archives `files` files and resumes from its checkpoints."""

from __future__ import annotations

import hashlib
from typing import Any

from taskhub.sdk import NonRetryableError, RetryPolicy, TaskContext, task

PAGE = 100
COST_PER_PAGE_USD = 0.0004


@task(
    "acme.report",
    priority="high",
    timeout_minutes=30,
    max_retries=5,
    retry=RetryPolicy(base=2, factor=2, cap=120, non_retryable=(ValueError,)),
)
def report(ctx: TaskContext, rows: int = 1000, fmt: str = "csv", **_: Any) -> dict[str, Any]:
    if fmt not in ("csv", "json"):
        raise NonRetryableError(f"unknown format {fmt!r}")  # no retry can fix the input
    digest = hashlib.sha256()
    pages = max(1, -(-int(rows) // PAGE))
    for page in range(1, pages + 1):
        digest.update(f"{ctx.task_id}:{page}".encode())  # stands for fetching and writing a page
        ctx.add_api_calls(1)
        ctx.add_cost(COST_PER_PAGE_USD)
        ctx.progress(100 * page / pages, step=f"page {page}/{pages}")  # also a cancellation point
    return {"rows": int(rows), "format": fmt, "checksum": digest.hexdigest()[:16]}


@task("acme.archive", priority="low", persistent=True)
def archive(ctx: TaskContext, files: int = 50, batch: int = 10, **_: Any) -> dict[str, Any]:
    state = ctx.resume_from or {}
    done = int(state.get("done", 0))
    while done < int(files):
        done = min(int(files), done + int(batch))  # stands for archiving a batch of files
        ctx.checkpoint(f"archived {done}", {"done": done}, progress=100 * done / int(files))
    return {"archived": int(files), "resumed_from": int(state.get("done", 0))}
